"""The plain-Python recipe in docs/serving.md, run as written, against catdog's own decoding and
answers; and the contract beside each artifact that names the recipe's steps."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

from catdog.export import LITERT_KERAS, export, read_contract  # noqa: E402
from catdog.images import RESIZE_MODES, load_image  # noqa: E402
from catdog.keras_private import keras_version  # noqa: E402
from catdog.prediction import predict  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "serving.md"
STEPS = {"order", "exif_orientation", "decode_scale", "jpeg_decode", "color", "alpha", "resize", "fit",
         "interpolation", "rounding", "dtype_range", "recipe"}


def recipe(run: Path, photo: Path, artifact: str = "model.onnx") -> dict:
    """The namespace of docs/serving.md's recipe after running it as written on `run` and `photo`."""
    blocks = [b for b in re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S) if "def preprocess(" in b]
    assert len(blocks) == 1, "docs/serving.md holds one recipe"
    source = blocks[0].replace('"RUN/model.onnx"', repr(f"RUN/{artifact}"))
    source = source.replace("RUN", str(run)).replace('"photo.jpg"', repr(str(photo)))
    namespace: dict = {"__name__": "recipe"}
    exec(compile(source, "docs/serving.md (recipe)", "exec"), namespace)
    return namespace


def photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """Gradients, a diagonal wave and noise, with a bright corner: no two orientations look alike."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    pixels = np.stack([x * 255 / width, y * 255 / height, 128 + 100 * np.sin((x + 2 * y) / 7)], axis=-1)
    pixels = pixels + rng.normal(0, 10, (height, width, 3))
    pixels[: height // 5, : width // 5] = 250
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def exif(orientation: int) -> Image.Exif:
    tags = Image.Exif()
    tags[0x0112] = orientation
    return tags


def write_photos(folder: Path) -> list[Path]:
    """Every kind of file the recipe has a step for, at sizes that need every JPEG decode scale."""
    folder.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []

    def save(name: str, im: Image.Image, **options: object) -> None:
        im.save(folder / name, **options)
        made.append(folder / name)

    for width, height in ((500, 375), (333, 250), (97, 61), (64, 64)):
        im = photo_like(width, height)
        save(f"plain{width}.jpg", im, quality=90)
        save(f"s444_{width}.jpg", im, quality=90, subsampling=0)
        save(f"progressive{width}.jpg", im, quality=85, progressive=True)
        save(f"gray{width}.jpg", im.convert("L"), quality=90)
        save(f"cmyk{width}.jpg", im.convert("CMYK"), quality=90)
        for orientation in range(2, 9):
            save(f"exif{orientation}_{width}.jpg", im, quality=90, exif=exif(orientation))
        rgba = im.convert("RGBA")
        rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))))
        save(f"rgba{width}.png", rgba)
        save(f"palette{width}.png", im.convert("P", palette=Image.Palette.ADAPTIVE), transparency=0)
        save(f"la{width}.png", im.convert("LA"))
        save(f"gray16_{width}.png", Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257))
        save(f"exif6_{width}.png", im, exif=exif(6))
    save("large.jpg", photo_like(2400, 1800, seed=1), quality=90)
    save("large_exif8.jpg", photo_like(1800, 2400, seed=2), quality=90, exif=exif(8))
    save("tiny.jpg", photo_like(5, 6), quality=90)
    return made


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    return write_photos(tmp_path_factory.mktemp("recipe-photos"))


@pytest.fixture(scope="module")
def run_dir(trained) -> Path:
    run, _ = trained
    if not (run / "model.onnx").is_file():
        pytest.skip("training wrote no model.onnx (the ONNX export needs the TensorFlow backend)")
    return run


@pytest.fixture(scope="module")
def steps(run_dir, photos) -> dict:
    return recipe(run_dir, photos[0])


@pytest.mark.parametrize("resize", RESIZE_MODES)
@pytest.mark.parametrize("size", [(24, 24), (160, 160), (224, 224), (48, 100)], ids=str)
def test_recipe_makes_catdogs_very_pixels(steps, photos, resize, size):
    for path in photos:
        expected = load_image(path, size, resize)
        got = steps["preprocess"](path, resize, *size)
        assert got.dtype == np.uint8 and got.shape == expected.shape, path.name
        assert (got == expected).all(), f"{path.name}: {np.abs(got.astype(int) - expected).max()} levels apart"


def test_recipe_answers_as_catdog_predict(run_dir, steps, photos):
    classes = read_contract(run_dir / "model.onnx")["classes"]
    for answer in predict(photos, run_dir):
        assert answer.error is None, answer
        got = steps["probabilities"](answer.path)
        expected = np.array([answer.probabilities[c] for c in classes])
        assert classes[int(got.argmax())] == answer.label
        assert np.abs(got - expected).max() <= 1e-5, answer.path.name


def test_contract_and_onnx_metadata_name_every_step(run_dir):
    import onnx

    contract = read_contract(run_dir / "model.onnx")
    assert set(contract["preprocessing"]) == STEPS
    assert contract["preprocessing"]["resize"] == contract["resize"] == "squash"
    assert contract["input"]["shape"] == [None, *contract["input_size"], 3] and contract["input"]["batch"] == "any"
    meta = {p.key: p.value for p in onnx.load(str(run_dir / "model.onnx")).metadata_props}
    assert json.loads(meta["preprocessing"]) == contract["preprocessing"]


# Without ai-edge-litert the recipe falls back on TensorFlow's interpreter, which warns that it is deprecated.
@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
@pytest.mark.parametrize("fmt", ["savedmodel", pytest.param("litert", marks=pytest.mark.skipif(
    keras_version() < LITERT_KERAS, reason="Model.export writes LiteRT from Keras 3.13"))])
def test_recipe_runs_savedmodel_and_litert_as_written(run_dir, photos, fmt, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    name = {"savedmodel": "savedmodel", "litert": "model.tflite"}[fmt]
    result = export(run_dir, fmt, run / name)
    contract = read_contract(run / name)
    height, width = contract["input_size"]
    if fmt == "litert":  # the contract says what the graph takes: one image a call
        import tensorflow as tf

        interpreter = tf.lite.Interpreter(model_path=str(run / name))
        assert list(interpreter.get_input_details()[0]["shape"]) == contract["input"]["shape"] == [1, height, width, 3]
        assert contract["input"]["batch"] == 1
    steps = recipe(run, photos[0], name)
    classes = contract["classes"]
    some = photos[::7]
    for answer in predict(some, run_dir):
        got = steps["probabilities"](answer.path)
        assert np.abs(got - [answer.probabilities[c] for c in classes]).max() <= 1e-4, (fmt, answer.path.name)
    assert result.parity is not None
