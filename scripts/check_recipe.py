#!/usr/bin/env python
"""Does the plain-Python recipe in docs/serving.md give `catdog predict`'s answers? (docs/serving.md)

The recipe is taken from docs/serving.md as written (the ```python block that defines
`preprocess`), its RUN placeholder replaced by the run folder, and executed; then every photo is
answered by its `probabilities` and by `catdog.prediction.predict` on the same run, and the script
prints the largest absolute difference of a probability, how many labels agree, and how many
photos the two turned into the very same pixels. `--naive` adds the recipe the docs gave before
(Pillow open, convert("RGB"), resize) for comparison.

    python scripts/check_recipe.py --make-set /tmp/recipe-photos data/cats_and_dogs_filtered/validation
    python scripts/check_recipe.py runs/RUN /tmp/recipe-photos --naive

`--make-set` writes 200 photos from a folder of JPEGs: 140 as they are, and 15 each of EXIF-rotated
(orientation 6, 8 and 3, the pixels turned so that the tag makes them upright), CMYK JPEGs, PNGs
(RGBA with a transparent border, RGB, palette) and large JPEGs (upscaled to 4000x3000 or 3000x4000).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

DOC = Path(__file__).resolve().parents[1] / "docs" / "serving.md"
EXIF_ORIENTATION = 0x0112


def recipe_source(doc: Path = DOC) -> str:
    """The recipe's code: the one ```python block of `doc` that defines `preprocess`."""
    blocks = [b for b in re.findall(r"```python\n(.*?)```", doc.read_text(), re.S) if "def preprocess(" in b]
    if len(blocks) != 1:
        sys.exit(f"{doc}: expected one ```python block defining preprocess, found {len(blocks)}")
    return blocks[0]


def load_recipe(run: Path, photo: Path, artifact: str = "model.onnx", doc: Path = DOC) -> dict:
    """The recipe's namespace after running it as written, on `run`'s `artifact` and `photo`."""
    source = recipe_source(doc).replace('"RUN/model.onnx"', repr(f"RUN/{artifact}"))
    source = source.replace("RUN", str(run)).replace('"photo.jpg"', repr(str(photo)))
    namespace: dict = {"__name__": "recipe"}
    exec(compile(source, f"{doc} (recipe)", "exec"), namespace)  # noqa: S102 - the documented code itself
    return namespace


def photos_in(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        files += sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    return files


def make_set(out: Path, source: Path, seed: int = 0) -> None:
    """200 photos in `out` from the JPEGs under `source` (see the module docstring)."""
    from PIL import Image

    jpegs = sorted(source.rglob("*.jpg"))
    if len(jpegs) < 200:
        sys.exit(f"{source}: needs at least 200 JPEGs, found {len(jpegs)}")
    picked = [jpegs[i] for i in np.random.default_rng(seed).permutation(len(jpegs))[:200]]
    out.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(picked):
        name = f"{i:03d}-{path.parent.name}-{path.stem}"
        kind, k = divmod(i - 140, 15) if i >= 140 else (-1, 0)
        if kind == -1:
            (out / f"{name}.jpg").write_bytes(path.read_bytes())
            continue
        with Image.open(path) as im:
            rgb = im.convert("RGB")
        if kind == 0:  # stored turned so that the tag makes it upright again
            orientation = (6, 8, 3)[k % 3]
            stored = rgb.transpose({6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270,
                                    3: Image.Transpose.ROTATE_180}[orientation])
            exif = Image.Exif()
            exif[EXIF_ORIENTATION] = orientation
            stored.save(out / f"{name}-exif{orientation}.jpg", quality=92, exif=exif)
        elif kind == 1:
            rgb.convert("CMYK").save(out / f"{name}-cmyk.jpg", quality=92)
        elif kind == 2:
            if k % 3 == 0:  # transparent border around the photo
                rgba = rgb.convert("RGBA")
                alpha = np.zeros((rgb.height, rgb.width), np.uint8)
                alpha[rgb.height // 8 : -rgb.height // 8, rgb.width // 8 : -rgb.width // 8] = 255
                rgba.putalpha(Image.fromarray(alpha))
                rgba.save(out / f"{name}-rgba.png")
            elif k % 3 == 1:
                rgb.save(out / f"{name}.png")
            else:
                rgb.convert("P", palette=Image.Palette.ADAPTIVE).save(out / f"{name}-palette.png")
        else:
            size = (4000, 3000) if rgb.width >= rgb.height else (3000, 4000)
            rgb.resize(size, Image.Resampling.BICUBIC).save(out / f"{name}-large.jpg", quality=90)
    print(f"wrote 200 photos to {out}: 140 JPEGs, 15 each EXIF-rotated, CMYK, PNG, large")


def naive(path: Path, height: int, width: int) -> np.ndarray:
    """The recipe docs/serving.md gave before: Pillow's decode, convert and (bicubic) resize."""
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB").resize((width, height)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, nargs="?", help="a run folder holding the artifact")
    ap.add_argument("photos", type=Path, nargs="*", help="photo files or folders")
    ap.add_argument("--artifact", default="model.onnx",
                    help="the artifact in the run folder: model.onnx, savedmodel or model.tflite")
    ap.add_argument("--naive", action="store_true", help="also score the recipe the docs gave before")
    ap.add_argument("--make-set", nargs=2, type=Path, metavar=("OUT", "SOURCE"),
                    help="write the 200-photo set to OUT from the JPEGs under SOURCE, then stop")
    args = ap.parse_args()
    if args.make_set:
        return make_set(*args.make_set)
    if args.run is None or not args.photos:
        ap.error("give a run folder and photos (or --make-set OUT SOURCE)")

    from catdog.images import load_image
    from catdog.prediction import predict

    files = photos_in(args.photos)
    recipe = load_recipe(args.run, files[0], args.artifact)
    height, width, resize = recipe["HEIGHT"], recipe["WIDTH"], recipe["meta"]["resize"]
    catdog = {p.path: p for p in predict(files, args.run)}
    rows = {"recipe": [], "naive": []}
    same_pixels = 0
    for path in files:
        answer = catdog[path]
        if answer.error:
            print(f"{path}: catdog skips it ({answer.error})")
            continue
        expected = np.array([answer.probabilities[c] for c in recipe["meta"]["classes"]])
        same_pixels += bool((recipe["preprocess"](path) == load_image(path, (height, width), resize)).all())
        got = {"recipe": recipe["probabilities"](path)}
        if args.naive:
            x = naive(path, height, width).astype(np.float32)[None]
            out = recipe["model"](x)[0]
            got["naive"] = out if recipe["meta"]["output"] == "softmax" else np.array([1 - out[0], out[0]])
        for name, probs in got.items():
            rows[name].append((float(np.abs(probs - expected).max()), int(probs.argmax()) == int(expected.argmax()),
                               path.name))
    n = len(rows["recipe"])
    print(f"{n} photos, run {args.run} ({args.artifact}, {height}x{width}, resize {resize})")
    print(f"same pixels as catdog's load_image: {same_pixels}/{n}")
    for name, scored in rows.items():
        if scored:
            diffs = [d for d, _, _ in scored]
            worst = max(scored, key=lambda row: row[0])
            print(f"{name}: max |diff| {max(diffs):.2e} ({worst[2]}), mean {np.mean(diffs):.2e}, "
                  f"labels agree {sum(a for _, a, _ in scored)}/{n}")


if __name__ == "__main__":
    main()
