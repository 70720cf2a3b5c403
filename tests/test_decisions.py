from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_images

from catdog.cli import main
from catdog.config import load_config
from catdog.decisions import read
from catdog.evaluation import evaluate
from catdog.splits import prepare_folder
from catdog.training import load_data

SMALL = ["--set", "data.image_size=8"]


def _csv(path: Path, *rows: str) -> Path:
    path.write_text("path,decision,label,reason\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def _prepare(data: Path, decisions: Path, *sets: str):
    return CliRunner().invoke(main, ["prepare", "--data", str(data), *SMALL, "--set", f"data.decisions={decisions}",
                                     *[a for s in sets for a in ("--set", s)]])


def _files(prepared) -> dict[str, str]:
    return {f: prepared.classes[i] for f, i in zip(prepared.files, prepared.labels, strict=True)}


def test_csv_and_yaml_read_the_same_rows(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_bytes("\ufeff# written by catdog review\npath,decision,label,reason,score\n"
                    "cats/img_000.jpg,exclude,,blurry,0.91\n\n# a note\n"
                    "./cats/img_001.jpg,Relabel,dogs,\"a beagle, clearly\",0.8\n"
                    "dogs/img_002.jpg,keep,,,0.1\n".encode())
    yml = tmp_path / "d.yaml"
    yml.write_text("# written by hand\n- {path: cats/img_000.jpg, decision: exclude, reason: blurry}\n"
                   "- path: ./cats/img_001.jpg\n  decision: relabel\n  label: dogs\n  reason: a beagle, clearly\n"
                   "  score: 0.8\n- {path: dogs/img_002.jpg, decision: keep}\n", encoding="utf-8")
    for path, lines in ((csv, [3, 6, 7]), (yml, [2, 3, 8])):
        rows = read(path).rows
        assert [(r.path, r.decision, r.label, r.reason) for r in rows] == [
            ("cats/img_000.jpg", "exclude", "", "blurry"), ("cats/img_001.jpg", "relabel", "dogs", "a beagle, clearly"),
            ("dogs/img_002.jpg", "keep", "", "")]
        assert [r.line for r in rows] == lines


BAD = [
    # (file name, content, the error line after "Error: <file>")
    ("d.csv", "path,decision,label,reason\ncats/img_000.jpg,delete,,\n",
     " line 2: decision must be one of exclude, relabel, keep; got 'delete'"),
    ("d.csv", "path,decision,label,reason\n# fine\ncats/img_000.jpg,relabel,,\n",
     " line 3: relabel needs a label (the class to file cats/img_000.jpg under)"),
    ("d.csv", "path,decision,label,reason\ncats/img_000.jpg,relabel,birds,\n",
     " line 2: relabel cats/img_000.jpg to 'birds', which is not a class of {data} (classes: cats, dogs)"),
    ("d.csv", "path,decision,label,reason\ncats/img_000.jpg,exclude,,a, b\n",
     " line 2: 5 fields, but the header names 4; quote a path or reason that holds a comma"),
    ("d.csv", "path,decision,label,reason\n,exclude,,\n",
     " line 2: no path; expected a photo's path relative to the photo folder (e.g. cats/cat.12.jpg) or an absolute "
     "path"),
    ("d.csv", "file,verdict\ncats/img_000.jpg,exclude\n",
     " line 1: the header has no path or decision column; expected the header path,decision,label,reason"),
    ("d.csv", "",
     ": no header row; expected path,decision,label,reason as the first line"),
    ("d.csv", "path,decision,label,reason\ncats/img_000.jpg,exclude,,\ncats/img_000.jpg,relabel,dogs,\n",
     " line 3: cats/img_000.jpg is decided twice, differently (line 2 says exclude); keep one row"),
    ("d.csv", "path,decision,label,reason\n" + "".join(f"dogs/img_{i:03d}.jpg,exclude,,\n" for i in range(3)),
     ": the decisions leave class 'dogs' of {data} without a photo (all 3 excluded or relabelled); a classifier "
     "needs photos of every class it answers with"),
    ("d.yaml", "path: cats/img_000.jpg\n",
     ": expected a list of mappings with the keys path, decision, label, reason; got a dict"),
    ("d.yaml", "- {path: cats/img_000.jpg, decision: exclude}\n- cats/img_001.jpg\n",
     " line 2: expected a mapping with the keys path, decision, label, reason; got 'cats/img_001.jpg'"),
    ("d.yaml", "- {path: cats/img_000.jpg, decision: [exclude]}\n",
     " line 1: decision must be text; got ['exclude']"),
    ("d.yaml", "- {path: cats/img_000.jpg\n",
     " line 2: not YAML (expected ',' or '}', but got '<stream end>')"),
]


@pytest.mark.parametrize(("name", "content", "error"), BAD, ids=[f"{n}-{e[:30]}" for n, _c, e in BAD])
def test_a_bad_decisions_file_is_one_line_naming_file_and_line(tmp_path, name, content, error):
    data = tmp_path / "photos"
    write_images(data / "cats", 3, seed=1)
    write_images(data / "dogs", 3, seed=2, bright=True)
    decisions = tmp_path / name
    decisions.write_text(content, encoding="utf-8")
    result = _prepare(data, decisions)
    assert result.exit_code == 1
    assert result.output == f"Error: {decisions}{error.replace('{data}', str(data))}\n"


def test_a_missing_or_unreadable_decisions_file_is_one_line(tmp_path, tiny_data):
    missing = tmp_path / "nowhere.csv"
    result = _prepare(tiny_data, missing)
    assert (result.exit_code, result.output) == (1, f"Error: data.decisions: file not found: {missing} (expected a "
                                                    f"CSV file with the header path,decision,label,reason, or a YAML "
                                                    f"list of those keys)\n")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("path,decision,label,reason\ncats/img_000.jpg,exclude,,café\n".encode("latin-1"))
    result = _prepare(tiny_data, latin)
    assert (result.exit_code, result.output) == (1, f"Error: {latin}: not UTF-8 text (byte 56); save the decisions "
                                                    f"file as UTF-8\n")


def test_train_refuses_a_bad_decisions_file_before_it_writes_a_run(tmp_path, tiny_data):
    decisions = _csv(tmp_path / "d.csv", "cats/img_000.jpg,relabel,birds,")
    result = CliRunner().invoke(main, ["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), *SMALL,
                                       "--set", f"data.decisions={decisions}"])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "Traceback" not in result.output
    assert result.output.startswith(f"Error: {decisions} line 2: relabel cats/img_000.jpg to 'birds'")
    assert not (tmp_path / "run").exists()


def test_prepare_applies_the_decisions_and_says_so_in_one_line(tmp_path, tiny_data):
    decisions = tmp_path / "d.yaml"
    decisions.write_text(f"- {{path: cats/img_000.jpg, decision: exclude, reason: blurry}}\n"
                         f"- {{path: {tiny_data / 'cats' / 'img_001.jpg'}, decision: relabel, label: dogs}}\n"
                         f"- {{path: cats/img_002.jpg, decision: keep}}\n"
                         + "".join(f"- {{path: birds/b{i}.jpg, decision: exclude}}\n" for i in range(5)),
                         encoding="utf-8")
    result = _prepare(tiny_data, decisions)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:5] == [f"{tiny_data}: 48 files (class folders): 47 images, 1 skipped; 47 decoded now, 0 from cache, "
                         "1 not opened", "  cats: 22", "  dogs: 25",
                         lines[3], "  cats/img_000.jpg: excluded by decisions file: blurry"]
    assert lines[-2:] == [f"decisions {decisions}: 1 excluded, 1 relabelled (5 paths matched no photo)",
                          f"warning: 5 of the 8 paths in {decisions} name no photo in {tiny_data}, e.g. birds/b0.jpg, "
                          f"birds/b1.jpg, birds/b2.jpg; check them for typos (paths are relative to the photo "
                          f"folder), unless they belong to another folder"]


def test_an_edited_decisions_file_never_meets_stale_labels_in_the_cache(tmp_path, tiny_data):
    decisions = _csv(tmp_path / "d.csv", "cats/img_001.jpg,relabel,dogs,a beagle", "cats/img_002.jpg,exclude,,")
    assert _prepare(tiny_data, decisions).exit_code == 0
    _csv(decisions, "cats/img_002.jpg,relabel,dogs,", "dogs/img_003.jpg,exclude,,")
    config = load_config(None, ["data.image_size=8", f"data.decisions={decisions}", "data.validation_split=0"])
    train = load_data(config, tiny_data).train
    labels = _files(train)
    assert (labels["cats/img_001.jpg"], labels["cats/img_002.jpg"], "dogs/img_003.jpg" in labels) == (
        "cats", "dogs", False)
    assert train.class_counts() == {"cats": 23, "dogs": 24}
    assert (train.decoded, train.from_cache) == (1, 46)  # only the photo no longer excluded was decoded
    # Without the file, every photo counts again under its folder's class.
    plain = prepare_folder(load_config(None, ["data.image_size=8"]), tiny_data)
    assert plain.class_counts() == {"cats": 24, "dogs": 24} and plain.skipped == []


@pytest.mark.parametrize("kind", ["csv", "yaml"])
def test_train_leaves_out_and_relabels_records_the_file_and_lists_them(tmp_path, kind):
    write_images(tmp_path / "photos" / "cats", 10, seed=1)
    write_images(tmp_path / "photos" / "dogs", 10, seed=2, bright=True)
    write_images(tmp_path / "val" / "cats", 4, seed=3)
    write_images(tmp_path / "val" / "dogs", 4, seed=4, bright=True)
    rows = [("cats/img_000.jpg", "exclude", "", "blurry"),  # in both folders: one row covers both
            ("cats/img_005.jpg", "relabel", "dogs", "a beagle"), ("dogs/img_009.jpg", "exclude", "", ""),
            (str(tmp_path / "val" / "dogs" / "img_001.jpg"), "relabel", "cats", "a cat")]
    if kind == "csv":
        decisions = _csv(tmp_path / "d.csv", *(",".join(r) for r in rows))
    else:
        decisions = tmp_path / "d.yaml"
        decisions.write_text("".join(f"- {{path: '{p}', decision: {d}, label: '{lb}', reason: '{r}'}}\n"
                                     for p, d, lb, r in rows), encoding="utf-8")
    written = decisions.read_bytes()
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "photos"), "--out", str(run), "--quiet",
                                       *SMALL, "--set", "train.epochs=1", "--set", "train.batch_size=8",
                                       "--set", f"data.validation_dir={tmp_path / 'val'}",
                                       "--set", f"data.decisions={decisions}"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"decisions {decisions}: 3 excluded, 2 relabelled (0 paths matched no photo)\n" in result.output
    assert "data: 18 train, 7 validation, 0 test images; classes cats, dogs; 2 skipped" in result.output
    split = json.loads((run / "split.json").read_text())
    assert "cats/img_000.jpg" not in split["train"] + split["validation"] and "dogs/img_001.jpg" in split["validation"]
    assert (run / "skipped.txt").read_text() == (
        "cats/img_000.jpg: excluded by decisions file: blurry\n"
        "cats/img_005.jpg: relabelled cats -> dogs by decisions file: a beagle\n"
        "dogs/img_009.jpg: excluded by decisions file\n"
        "val/cats/img_000.jpg: excluded by decisions file: blurry\n"
        "val/dogs/img_001.jpg: relabelled dogs -> cats by decisions file: a cat\n")
    assert f"decisions: {decisions}\n" in (run / "config.yaml").read_text()
    assert (run / f"decisions.{kind}").read_bytes() == written


def test_evaluate_applies_the_runs_own_copy_of_the_decisions(tmp_path, tiny_data):
    decisions = _csv(tmp_path / "d.csv", "cats/img_000.jpg,exclude,,blurry", "cats/img_001.jpg,relabel,dogs,")
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--data", str(tiny_data), "--out", str(run), "--quiet", *SMALL,
                                       "--set", "train.epochs=1", "--set", "train.batch_size=8",
                                       "--set", f"data.decisions={decisions}"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    _csv(decisions, "dogs/img_000.jpg,exclude,,edited after training")  # the run keeps what it trained with

    report = evaluate(run, tiny_data)
    assert report.count == 47 and {c: m["support"] for c, m in report.per_class.items()} == {"cats": 22, "dogs": 25}
    assert report.skipped == [("cats/img_000.jpg", "excluded by decisions file: blurry")]
    assert f"decisions {run / 'decisions.csv'}: 1 excluded, 1 relabelled (0 paths matched no photo)" in report.table()
    saved = json.loads((report.out_dir / "report.json").read_text())["decisions"]
    assert saved["relabelled"] == [{"path": "cats/img_001.jpg", "from": "cats", "to": "dogs", "reason": ""}]

    held_out = evaluate(run)  # the run's validation split, labelled as it trained
    photos = json.loads((run / "split.json").read_text())["validation"]
    expected = {"cats": sum(p.startswith("cats/") for p in photos) - ("cats/img_001.jpg" in photos)}
    assert held_out.per_class["cats"]["support"] == expected["cats"]

    (run / "decisions.csv").unlink()
    result = CliRunner().invoke(main, ["evaluate", "--run", str(run), "--data", str(tiny_data)])
    assert (result.exit_code, result.output) == (1, f"Error: {run / 'config.yaml'} names the decisions file "
                                                    f"{decisions}, but the run folder holds no copy of it "
                                                    f"(decisions.csv or decisions.yaml); restore it from a copy of "
                                                    f"the run\n")


def test_resume_applies_the_runs_copy_not_the_edited_file(tmp_path, tiny_data):
    import keras

    from catdog.errors import TrainingInterrupted
    from catdog.training import resume, train

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    decisions = _csv(tmp_path / "d.csv", "cats/img_000.jpg,exclude,,", "cats/img_001.jpg,relabel,dogs,")
    config = load_config(None, ["data.image_size=8", "train.epochs=2", "train.batch_size=8",
                                f"data.decisions={decisions}"])
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train(config, tiny_data, run, callbacks=[StopAfterFirstEpoch()])
    # Edited after the interruption: had resume read it, its photos would differ from split.json.
    _csv(decisions, "dogs/img_000.jpg,exclude,,")
    said: list[str] = []
    result = resume(run, report=said.append)
    assert result.epochs == 2
    assert f"decisions {run / 'decisions.csv'}: 1 excluded, 1 relabelled (0 paths matched no photo)" in said
