"""catdog export and the fast predict path: parity of every format with Keras, the contract that
travels with each artifact, a mixed-precision run, and predict without TensorFlow."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

from conftest import write_images  # noqa: E402

from catdog.cli import main  # noqa: E402
from catdog.config import load_config  # noqa: E402
from catdog.export import (  # noqa: E402
    LITERT_KERAS,
    ExportError,
    check_keras_writes,
    export,
    inference_model,
    parity_images,
    put_in_place,
    read_contract,
)
from catdog.keras_private import keras_version  # noqa: E402
from catdog.prediction import predict  # noqa: E402
from catdog.runs import load_run  # noqa: E402
from catdog.training import train  # noqa: E402

# The article model, and a ResNet trained in mixed precision with every augmentation layer.
CONFIGS = {
    "article": ["data.image_size=20", "train.batch_size=8", "train.epochs=1", "model.flip=true",
                "model.contrast=0.1"],
    "resnet": ["data.image_size=32", "train.batch_size=8", "train.epochs=1", "model.name=resnet",
               "model.stem_pool=true", "model.flip=true", "model.rotation=0.05", "model.zoom=0.1",
               "model.translation=0.1", "train.precision=mixed_bfloat16"],
}
# The tests of how export treats files and processes need one model only.
article_only = pytest.mark.parametrize("run_dir", ["article"], indirect=True)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export-photos")
    write_images(root / "cats", 12, size=40, seed=1)
    write_images(root / "dogs", 12, size=40, seed=2, bright=True)
    return root


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def run_dir(request, photos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export-runs") / request.param
    config = load_config(None, [*CONFIGS[request.param], f"data.cache_dir={out.parent / 'cache'}"])
    train(config, photos, out)
    return out


def test_training_writes_model_onnx_with_its_contract(run_dir):
    contract = read_contract(run_dir / "model.onnx")
    run = load_run(run_dir)
    assert contract["classes"] == run.classes == ["cats", "dogs"]
    assert contract["input_size"] == list(run.config.data.image_size)
    assert contract["input"]["pixel_range"] == [0, 255] and contract["input"]["color"] == "RGB"
    assert contract["resize"] == "squash" and contract["run"] == run_dir.name
    assert contract["parity"]["max_abs_diff"] <= 1e-4 and contract["parity"]["labels_agree"]
    # What `serve --no-explain` reports as the model's size, without loading Keras.
    assert contract["parameters"] == run.model.count_params()


def test_the_onnx_graph_flattens_without_turning_the_map_back_to_nhwc(run_dir):
    import onnx

    graph = onnx.load(str(run_dir / "model.onnx")).graph
    producer = {out: node for node in graph.node for out in node.output}
    heads = {i for node in graph.node if node.op_type in ("MatMul", "Gemm") for i in node.input}
    # The flatten is the Reshape feeding the dense head; a ResNet's body has other Reshapes, fed by
    # layout Transposes that tf2onnx places differently from one conversion to the next.
    before_reshape = [producer.get(n.input[0]) for n in graph.node
                      if n.op_type == "Reshape" and heads & set(n.output)]
    # catdog.onnx_graph dropped tf2onnx's Transpose before the flatten (the article's head);
    # the parity check of every export test holds the rows' new order to Keras's answers.
    assert not [n for n in before_reshape if n is not None and n.op_type == "Transpose"]


def test_onnx_metadata_float32_graph_and_no_augmentation(run_dir):
    import onnx

    proto = onnx.load(str(run_dir / "model.onnx"))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["classes"]) == ["cats", "dogs"]
    assert json.loads(meta["input_size"]) == list(load_run(run_dir).config.data.image_size)
    assert meta["resize"] == "squash" and "catdog_version" in meta
    float32, low = onnx.TensorProto.FLOAT, {onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
    assert proto.graph.input[0].type.tensor_type.elem_type == float32
    assert not [t.name for t in proto.graph.initializer if t.data_type in low]
    ops = {n.op_type for n in proto.graph.node}
    # RandomGeometry's warp, RandomFlip's and RandomContrast's random draws are training-only.
    assert not ops & {"RandomUniform", "RandomUniformLike", "RandomNormal", "Multinomial"}
    assert not [n.name for n in proto.graph.node if "geometry" in n.name or "contrast" in n.name
                or "flip" in n.name]


@pytest.mark.parametrize("fmt", ["onnx", "savedmodel", pytest.param("litert", marks=pytest.mark.skipif(
    keras_version() < LITERT_KERAS, reason="Model.export writes LiteRT from Keras 3.13"))])
def test_every_format_matches_keras(run_dir, fmt, photos, tmp_path):
    out = tmp_path / {"onnx": "m.onnx", "savedmodel": "sm", "litert": "m.tflite"}[fmt]
    result = export(run_dir, fmt, out)
    assert out.exists() and (tmp_path / (out.name + ".json")).is_file()
    assert result.parity is not None
    assert result.parity.max_abs_diff <= 1e-4 and result.parity.labels_agree
    assert read_contract(out)["format"] == fmt
    # The export's own parity check is not trusted: the artifact is loaded here, with the format's
    # own runtime, and its answers on the photos compared with the run's model.keras.
    import keras

    import catdog.layers  # noqa: F401  (the custom layers model.keras names)

    height, width = load_run(run_dir).config.data.image_size
    x = np.stack([np.asarray(Image.open(p).convert("RGB").resize((width, height)), dtype="float32")
                  for p in sorted(photos.rglob("*.jpg"))])
    expected = np.asarray(keras.models.load_model(run_dir / "model.keras").predict_on_batch(x), dtype="float64")
    got = np.asarray(ARTIFACT_RUNNERS[fmt](out, x), dtype="float64")
    assert got.shape == expected.shape == (24, 2)
    # The mixed-precision run's Keras model computes in bfloat16, every export in float32: 1.2e-3
    # apart on the ResNet's photos here, while its answers lie 0.04 or more from a tie.
    tol = 1e-2 if load_run(run_dir).config.train.precision.startswith("mixed") else 1e-4
    assert np.abs(got - expected).max() <= tol
    clear = np.abs(expected[:, 1] - expected[:, 0]) > 2 * tol
    assert clear.any() and (got.argmax(1) == expected.argmax(1))[clear].all()


def run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def run_savedmodel(path: Path, x: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))  # held: its functions need its variables alive
    return loaded.serve(tf.constant(x)).numpy()


def run_litert(path: Path, x: np.ndarray) -> np.ndarray:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    rows = []
    for image in x:  # the converted graph takes one image a call
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        rows.append(interpreter.get_tensor(out["index"])[0].copy())
    return np.stack(rows)


ARTIFACT_RUNNERS = {"onnx": run_onnx, "savedmodel": run_savedmodel, "litert": run_litert}


def test_inference_model_is_float32_without_augmentation_and_same_answers(run_dir):
    run = load_run(run_dir)
    clean = inference_model(run)
    assert {layer.dtype_policy.name for layer in clean.layers} == {"float32"}
    names = {layer.name for layer in clean.layers}
    assert not names & {"geometry", "flip", "contrast"}
    x = parity_images(run.config.data.image_size)
    expected = np.asarray(run.model.predict_on_batch(x), dtype="float32")
    # Same weights; only the mixed-precision run may differ, by bfloat16 rounding.
    tol = 5e-2 if run.config.train.precision.startswith("mixed") else 1e-5
    assert np.abs(np.asarray(clean.predict_on_batch(x)) - expected).max() <= tol


def test_fast_predict_agrees_with_keras(run_dir, photos):
    files = sorted(photos.rglob("*.jpg"))
    fast = list(predict(files, run_dir))
    # The Keras path: the same run with model.onnx moved aside.
    onnx, moved = run_dir / "model.onnx", run_dir / "model.onnx.aside"
    onnx.rename(moved)
    try:
        keras_answers = list(predict(files, run_dir, write_onnx=False))
    finally:
        moved.rename(onnx)
    assert [p.label for p in fast] == [p.label for p in keras_answers]
    # The mixed-precision run's Keras model computes in bfloat16; its export in float32.
    tol = 5e-2 if load_run(run_dir).config.train.precision.startswith("mixed") else 1e-4
    for a, b in zip(fast, keras_answers, strict=True):
        assert max(abs(a.probabilities[c] - b.probabilities[c]) for c in a.probabilities) <= tol


def test_predict_with_model_onnx_imports_no_tensorflow(run_dir, photos):
    code = ("import sys; from catdog.prediction import predict; "
            f"p = list(predict([{str(next(photos.rglob('*.jpg')))!r}], {str(run_dir)!r})); "
            "assert p[0].label in ('cats', 'dogs'), p; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "CATDOG_CACHE": str(run_dir.parent / "cache")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_export_is_tied_to_the_model_keras_it_came_from(run_dir):
    import onnx

    contract = read_contract(run_dir / "model.onnx")
    keras_file = run_dir / "model.keras"
    assert contract["keras_sha256"] == hashlib.sha256(keras_file.read_bytes()).hexdigest()
    assert contract["keras_size"] == keras_file.stat().st_size
    assert contract["keras_mtime_ns"] == keras_file.stat().st_mtime_ns
    assert contract["onnx_size"] == (run_dir / "model.onnx").stat().st_size
    meta = {p.key: p.value for p in onnx.load(str(run_dir / "model.onnx")).metadata_props}
    assert meta["keras_sha256"] == contract["keras_sha256"]


def test_export_after_train_says_model_onnx_is_current(run_dir):
    onnx = run_dir / "model.onnx"
    before = (onnx.read_bytes(), onnx.stat().st_mtime_ns, (run_dir / "model.onnx.json").read_bytes())
    result = CliRunner().invoke(main, ["export", "--run", str(run_dir), "--format", "onnx"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{onnx} is already this run's current export; --out PATH writes another copy\n"
    assert (onnx.read_bytes(), onnx.stat().st_mtime_ns, (run_dir / "model.onnx.json").read_bytes()) == before


@article_only
def test_stale_model_onnx_is_never_replaced_without_force(run_dir, tmp_path):
    run = Path(shutil.copytree(run_dir, tmp_path / "run"))
    onnx, beside = run / "model.onnx", run / "model.onnx.json"
    contract = json.loads(beside.read_text())
    beside.write_text(json.dumps({**contract, "keras_sha256": "0" * 64, "keras_mtime_ns": 0}))
    stale = (onnx.read_bytes(), beside.read_bytes())
    result = CliRunner().invoke(main, ["export", "--run", str(run)])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {onnx} was exported from another model.keras (a stale export, or one copied "
                             f"from another run); pass --force to replace it, or --out NEW_PATH to write another "
                             f"copy\n")
    assert (onnx.read_bytes(), beside.read_bytes()) == stale
    result = CliRunner().invoke(main, ["export", "--run", str(run), "--force"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {onnx} (onnx) and model.onnx.json; parity on 8 images")
    assert read_contract(onnx)["keras_sha256"] == contract["keras_sha256"]
    assert CliRunner().invoke(main, ["export", "--run", str(run)]).stdout.startswith(f"{onnx} is already")
    assert not list(run.glob(".catdog-export-*"))


@article_only
def test_existing_out_is_never_replaced_without_force(run_dir, tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"the user's file")
    result = CliRunner().invoke(main, ["export", "--run", str(run_dir), "--out", str(out)])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {out} already exists; remove it, pass --force to replace it, or pass "
                             f"--out NEW_PATH\n")
    assert out.read_bytes() == b"the user's file" and sorted(tmp_path.iterdir()) == [out]
    result = CliRunner().invoke(main, ["export", "--run", str(run_dir), "--out", str(out), "--force"])
    assert result.exit_code == 0, result.output
    assert read_contract(out)["onnx_size"] == out.stat().st_size
    # --force replaces a file with a file only: a folder in the way is the user's.
    folder = tmp_path / "folder.onnx"
    (folder / "inside").mkdir(parents=True)
    result = CliRunner().invoke(main, ["export", "--run", str(run_dir), "--out", str(folder), "--force"])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: --force replaces a file only, and {folder} is not one; remove it or pass "
                             f"--out NEW_PATH\n")
    assert [p.name for p in folder.iterdir()] == ["inside"] and not (tmp_path / "folder.onnx.json").exists()


def test_a_target_that_appears_meanwhile_is_left_alone(tmp_path):
    scratch = tmp_path / "scratch"
    (scratch / "sm").mkdir(parents=True)
    (scratch / "sm" / "saved_model.pb").write_bytes(b"ours")
    (scratch / "m.onnx").write_bytes(b"ours")
    for name in ("m.onnx", "sm"):
        theirs = tmp_path / name
        if name == "sm":
            theirs.mkdir()
            (theirs / "saved_model.pb").write_bytes(b"theirs")
        else:
            theirs.write_bytes(b"theirs")
        with pytest.raises(ExportError, match=rf"^{tmp_path}/{name} appeared while exporting \(another export"):
            put_in_place(scratch / name, theirs, scratch)
        assert (theirs / "saved_model.pb" if name == "sm" else theirs).read_bytes() == b"theirs"
        # With force, the same kind is replaced; a replaced folder goes to the scratch folder.
        put_in_place(scratch / name, theirs, scratch, force=True)
        assert (theirs / "saved_model.pb" if name == "sm" else theirs).read_bytes() == b"ours"
    with pytest.raises(ExportError, match="is a folder; --force replaces only a file"):
        (scratch / "m2.onnx").write_bytes(b"ours")
        put_in_place(scratch / "m2.onnx", tmp_path / "sm", scratch, force=True)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from catdog.cli import main; main()", *args]


@article_only
def test_two_exports_to_one_path_at_once_one_succeeds(run_dir, tmp_path):
    out = tmp_path / "m.onnx"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = [subprocess.Popen(cli("export", "--run", str(run_dir), "--out", str(out)), env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    done = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    assert sorted(code for code, _, _ in done) == [0, 1], done
    lost = next(err for code, _, err in done if code == 1).strip().splitlines()[-1]
    # Usually both pass the check at the start (each takes seconds to get to the end), and the loser
    # finds the winner's files when it moves its own into place (test_a_target_that_appears_meanwhile_...);
    # on a busy machine the loser may start only after the winner finished.
    assert lost in (f"Error: {out}.json appeared while exporting (another export to the same path?); it was "
                    f"left as it is and nothing of this export was kept",
                    f"Error: {out} already exists; remove it, pass --force to replace it, or pass --out NEW_PATH"), done
    assert read_contract(out)["onnx_size"] == out.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.json"]


@article_only
def test_sigterm_during_export_leaves_no_scratch_folder_or_process(run_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(cli("export", "--run", str(run_dir), "--out", str(out / "m.onnx")),
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(out.glob(".catdog-export-*")):
        assert proc.poll() is None, ("the export ended before its scratch folder was seen", proc.communicate())
        assert time.monotonic() < deadline, "no scratch folder within 120 s"
        time.sleep(0.005)
    kids = children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == "export stopped by SIGTERM; what it had half written was removed"
    assert list(out.iterdir()) == []
    assert not [k for k in {proc.pid, *kids} if Path(f"/proc/{k}").exists()]


@article_only
def test_a_sigterm_the_converter_swallows_still_stops_the_export(run_dir, tmp_path, monkeypatch):
    # tf2onnx has bare `except:` clauses: a SIGTERM raised inside one is lost, and the export went on
    # to exit 0 with its files in place (seen in a minimum-versions run).
    import keras

    real = keras.Model.export

    def swallowing(self, *args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except:  # noqa: E722 - what the converter does
            pass
        return real(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "export", swallowing)
    out = tmp_path / "out"
    out.mkdir()
    result = CliRunner().invoke(main, ["export", "--run", str(run_dir), "--out", str(out / "m.onnx")])
    assert result.exit_code == 128 + signal.SIGTERM, result.output
    assert result.stderr.strip().splitlines()[-1] == "export stopped by SIGTERM; what it had half written was removed"
    assert list(out.iterdir()) == []


def children(pid: int) -> set[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
        except OSError:
            continue
    return found


def test_missing_converter_names_the_packages(run_dir, tmp_path):
    with pytest.raises(ExportError, match=r"^exporting onnx needs tf2onnx, onnx: pip install tf2onnx onnx$"):
        export(run_dir, "onnx", tmp_path / "m.onnx", find=lambda name: None)
    assert not list(tmp_path.iterdir())


def test_failed_parity_writes_nothing(run_dir, tmp_path):
    with pytest.raises(ExportError, match="does not match the Keras model"):
        export(run_dir, "onnx", tmp_path / "m.onnx", tolerance=-1.0)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("fmt", "version"), [("litert", "3.13.0"), ("onnx", "3.8.0"), ("savedmodel", "3.8.0")])
def test_keras_that_writes_the_format_passes(fmt, version):
    check_keras_writes(fmt, version)


def test_litert_on_an_older_keras_is_one_line():
    with pytest.raises(ExportError) as info:
        check_keras_writes("litert", "3.12.1")
    assert str(info.value) == ("exporting litert needs Keras 3.13 or newer (on Python 3.11 or newer); "
                               "this is Keras 3.12.1: pip install -U keras")


def test_litert_path_must_end_in_tflite(run_dir, tmp_path):
    result = CliRunner().invoke(main, ["export", "--run", str(run_dir), "--format", "litert",
                                       "--out", str(tmp_path / "m.lite")])
    assert result.exit_code == 1
    assert "must end in .tflite" in result.stderr


@pytest.mark.parametrize("run_dir", ["resnet"], indirect=True)
def test_bench_predicts_plain_keras_script_loads_a_resnet_run(run_dir, photos):
    # scripts/bench_predict.py times it against catdog predict; a ResNet holds catdog's RandomGeometry.
    spec = importlib.util.spec_from_file_location("bench_predict", Path(__file__).parents[1] / "scripts" /
                                                  "bench_predict.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = subprocess.run([sys.executable, "-c", bench.PLAIN_KERAS, str(run_dir / "model.keras"),
                          str(next(photos.rglob("*.jpg")))], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().startswith("[[")


# --- a run trained without the converter: the first predict writes model.onnx ------------------------


def run_without_model_onnx(run_dir: Path, where: Path, keep_contract: bool = False) -> Path:
    """A copy of `run_dir` as a run trained where the ONNX converter was missing (times kept)."""
    return Path(shutil.copytree(run_dir, where, ignore=shutil.ignore_patterns(
        "model.onnx" if keep_contract else "model.onnx*")))


@article_only
def test_first_predict_writes_model_onnx_and_the_next_needs_no_tensorflow(run_dir, photos, tmp_path):
    run = run_without_model_onnx(run_dir, tmp_path / "run")
    photo = next(photos.rglob("*.jpg"))
    first = CliRunner().invoke(main, ["predict", "--run", str(run), "--json", str(photo)])
    assert first.exit_code == 0, first.output
    assert first.stderr == (f"wrote {run}/model.onnx (once, from its model.keras): later predicts answer through "
                            f"ONNX Runtime without loading TensorFlow\n")
    contract = read_contract(run / "model.onnx")
    assert contract["keras_sha256"] == hashlib.sha256((run / "model.keras").read_bytes()).hexdigest()
    assert contract["parity"]["labels_agree"] and contract["parity"]["max_abs_diff"] <= 1e-4
    (own,) = predict([photo], run_dir)  # the export train wrote answers the same
    answered = json.loads(first.stdout)
    assert answered["label"] == own.label and abs(answered["probability"] - own.probability) <= 1e-5
    # The next predict, in a new process as a user runs it: ONNX Runtime, no TensorFlow, nothing said.
    code = ("import sys\nfrom catdog.cli import main\ntry:\n    main(sys.argv[1:])\nfinally:\n"
            "    print('loaded', sorted(m for m in ('tensorflow', 'keras') if m in sys.modules), file=sys.stderr)")
    second = subprocess.run([sys.executable, "-c", code, "predict", "--run", str(run), "--json", str(photo)],
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert second.stderr == "loaded []\n"
    assert json.loads(second.stdout) == answered


@article_only
def test_predict_that_cannot_write_model_onnx_answers_through_keras_with_one_warning(run_dir, photos, tmp_path):
    # model.onnx deleted, its contract left behind: export never replaces a file without --force.
    run = run_without_model_onnx(run_dir, tmp_path / "run", keep_contract=True)
    stray = (run / "model.onnx.json").read_bytes()
    photo = next(photos.rglob("*.jpg"))
    result = CliRunner().invoke(main, ["predict", "--run", str(run), "--json", str(photo)])
    assert result.exit_code == 0, result.output
    assert result.stderr == (f"warning: {run}/model.onnx could not be written for fast predicts ({run}/model.onnx.json "
                             f"already exists; remove it, pass --force to replace it, or pass --out NEW_PATH); Keras "
                             f"answers instead\n")
    assert not (run / "model.onnx").exists() and (run / "model.onnx.json").read_bytes() == stray
    (keras,) = predict([photo], run, write_onnx=False)
    assert json.loads(result.stdout) == keras.to_dict()
    assert not list(run.glob(".catdog-export-*"))


@article_only
def test_predict_in_a_read_only_run_folder_answers_through_keras_with_one_warning(run_dir, photos, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a read-only tmpfs")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        run = run_without_model_onnx(run_dir, disk / "run")
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        photo = next(photos.rglob("*.jpg"))
        result = CliRunner().invoke(main, ["predict", "--run", str(run), str(photo)])
        assert result.exit_code == 0, result.output
        assert result.stderr == (f"warning: {run}/model.onnx could not be written for fast predicts ({run} is "
                                 f"read-only); Keras answers instead\n")
        assert result.stdout.startswith(f"{photo}: ") and not (run / "model.onnx").exists()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
