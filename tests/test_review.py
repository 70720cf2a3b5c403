from __future__ import annotations

import csv
import hashlib
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from catdog.cli import main
from catdog.config import load_config
from catdog.review import find_copies, fold_numbers, gather, review
from catdog.review_files import DECISIONS_FILE, ISSUES_FILE

# Tiny and quick: two folds of a few epochs on 32x32 photos.
SETS = ["data.image_size=32", "train.epochs=4", "train.batch_size=16", "train.learning_rate=0.01",
        "data.validation_split=0.1", "data.test_split=0"]


def smooth_photo(rng: np.random.Generator, tint: int, size: int = 64) -> Image.Image:
    """A photo-like picture: a random 8x8 colour grid blown up smoothly (so a perceptual hash sees
    shapes, not noise), with one colour channel raised: red (tint 0) or blue (tint 2) photos."""
    grid = rng.integers(0, 140, (8, 8, 3), dtype=np.uint8)
    grid[..., tint] = rng.integers(170, 256, (8, 8), dtype=np.uint8)
    return Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC)


def write_classes(root: Path, count: int = 30, seed: int = 0) -> dict[str, list[Path]]:
    """`count` red 'cats' and blue 'dogs'."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[Path]] = {}
    for name, tint in (("cats", 0), ("dogs", 2)):
        (root / name).mkdir(parents=True, exist_ok=True)
        out[name] = []
        for i in range(count):
            path = root / name / f"{name[:-1]}.{i}.jpg"
            smooth_photo(rng, tint).save(path, quality=95)
            out[name].append(path)
    return out


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def fingerprint(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_flipped_labels_are_ranked_first_and_suggested_back(tmp_path):
    photos = tmp_path / "photos"
    made = write_classes(photos)
    flipped = []
    for src, dest in ((made["cats"][3], "dogs"), (made["cats"][17], "dogs"), (made["dogs"][8], "cats")):
        moved = photos / dest / src.name
        src.rename(moved)
        flipped.append(f"{dest}/{src.name}")
    before = fingerprint(photos)
    rv = review(load_config(None, SETS), photos, folds=2)
    ranked = [rv.photos[f.index].path for f in rv.of("mislabel")]
    assert sorted(ranked[:3]) == sorted(flipped), ranked
    issues = rows(rv.out_dir / ISSUES_FILE)
    assert {r["path"]: r["suggested_label"] for r in issues if r["issue"] == "mislabel"}["dogs/cat.3.jpg"] == "cats"
    decisions = rows(rv.out_dir / DECISIONS_FILE)
    assert list(decisions[0])[:4] == ["path", "decision", "label", "reason"]
    suggested = {r["path"]: (r["decision"], r["label"]) for r in decisions}
    assert suggested["cats/dog.8.jpg"] == ("relabel", "dogs")
    assert rv.out_dir == tmp_path / "photos-review"
    assert (rv.out_dir / "mislabels.png").read_bytes()[:4] == b"\x89PNG"
    assert fingerprint(photos) == before  # nothing moved, renamed, deleted or added


def _plant(photos: Path, validation: Path) -> dict[str, str]:
    """Copies of four cats: exact (as PNG), half size, JPEG quality 60, cropped by 5%; the
    exact copy filed as a dog, the crop in the validation folder."""
    cats = sorted((photos / "cats").glob("*.jpg"))
    im = [Image.open(p).convert("RGB") for p in cats[:4]]
    im[0].save(photos / "dogs" / "copy-exact.png")
    im[1].resize((32, 32), Image.Resampling.LANCZOS).save(photos / "cats" / "copy-half.jpg", quality=90)
    im[2].save(photos / "cats" / "copy-q60.jpg", quality=60)
    im[3].crop((3, 3, 64, 64)).save(validation / "cats" / "copy-crop.jpg", quality=90)
    return {"dogs/copy-exact.png": cats[0].name, "cats/copy-half.jpg": cats[1].name,
            "cats/copy-q60.jpg": cats[2].name, "copy-crop.jpg": cats[3].name}


def test_planted_copies_are_found_and_the_worst_flagged(tmp_path):
    photos, validation = tmp_path / "photos", tmp_path / "validation"
    write_classes(photos, seed=1)
    write_classes(validation, count=5, seed=2)
    planted = _plant(photos, validation)
    config = load_config(None, [*SETS, "data.image_size=64", f"data.validation_dir={validation}"])
    rv = gather(config, photos)
    find_copies(rv)
    pairs = {}
    for f in rv.findings:
        a, b = rv.photos[f.index].path, rv.photos[f.other].path
        pairs[a.rsplit("/", 1)[-1] if a.startswith("/") else a] = (b.rsplit("/", 1)[-1], f.kind, f.note)
    assert {k: v[0] for k, v in pairs.items()} == planted
    assert pairs["dogs/copy-exact.png"][1:] == ("duplicate", "different classes (cats, dogs)")
    assert pairs["cats/copy-q60.jpg"][1] == "near_duplicate"
    assert pairs["copy-crop.jpg"][1:] == ("near_duplicate", "different splits (train, validation)")


def test_a_clean_folder_has_nothing_to_find(tmp_path):
    photos = tmp_path / "photos"
    write_classes(photos, seed=3)
    rv = review(load_config(None, SETS), photos, tmp_path / "out", folds=2)
    assert rv.findings == []
    assert rows(rv.out_dir / ISSUES_FILE) == []
    assert rows(rv.out_dir / DECISIONS_FILE) == []
    for sheet in ("mislabels.png", "copies.png", "outliers.png"):
        assert (rv.out_dir / sheet).is_file()


def test_ctrl_c_stops_a_review_between_batches(tmp_path):
    """Raised where the signal lands, Ctrl-C can crash TensorFlow's C++ (catdog.callbacks.ctrl_c_between_batches)."""
    photos = tmp_path / "photos"
    write_classes(photos, count=12)
    calls: list[str] = []

    def batch_progress(done: int, total: int) -> None:
        if not calls:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # Python's own handler raises KeyboardInterrupt here
        calls.append(f"{done}/{total}")

    with pytest.raises(KeyboardInterrupt):
        review(load_config(None, SETS), photos, tmp_path / "out", folds=2, batch_progress=batch_progress)
    assert calls == ["1/1"]  # one batch an epoch here: taken as the next epoch begins, before its progress


def run(*args: str):
    return CliRunner().invoke(main, ["review", *[a for s in SETS for a in ("--set", s)], "--folds", "2", *args])


def test_cli_reviews_lists_a_corrupt_photo_as_skipped_and_keeps_an_earlier_review(tmp_path):
    photos = tmp_path / "photos"
    write_classes(photos, count=20, seed=4)
    (photos / "cats" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    result = run("--data", str(photos))
    assert result.exit_code == 0, result.output
    out = tmp_path / "photos-review"
    assert "skipped: 1 unreadable files" in result.output
    assert "cats/broken.jpg" in (out / "skipped.txt").read_text()
    assert f"--set data.decisions={out / DECISIONS_FILE}" in result.output
    (out / DECISIONS_FILE).write_text("path,decision,label,reason\ncats/cat.1.jpg,exclude,,mine\n")
    again = run("--data", str(photos))
    assert again.exit_code == 1
    assert again.output.strip().splitlines()[-1] == (
        f"Error: {out} already holds files (an earlier review?); pass --force to replace the review's files "
        f"there, or --out another folder")
    assert "mine" in (out / DECISIONS_FILE).read_text()


@pytest.mark.parametrize("case", ["missing", "one class", "inside", "extra", "folds"])
def test_cli_bad_inputs_get_one_line(tmp_path, monkeypatch, case):
    photos = tmp_path / "photos"
    args = ["--data", str(photos)]
    if case == "missing":
        expected = f"data folder not found: {photos}"
    elif case == "one class":
        write_classes(photos, count=4)
        for p in (photos / "dogs").iterdir():
            p.unlink()
        (photos / "dogs").rmdir()
        expected = "only one class"
    elif case == "inside":
        write_classes(photos, count=4)
        args += ["--out", str(photos / "review")]
        expected = "is inside the photo folder"
    elif case == "folds":
        write_classes(photos, count=4)
        args += ["--folds", "5"]
        expected = ("Error: class cats has 4 usable photos: too few for --folds 5 (each fold holds out some of "
                    "every class)")
    else:
        write_classes(photos, count=4)
        monkeypatch.setitem(sys.modules, "cleanlab", None)  # as if catdog[review] were not installed
        expected = "catdog review needs cleanlab and imagehash: pip install 'catdog[review]'"
    result = run(*args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert expected in lines[-1] and "Traceback" not in result.output, result.output
    assert not (tmp_path / "photos-review").exists()


def test_each_photo_is_held_out_by_exactly_one_fold_with_its_share_of_every_class():
    labels = np.array([0] * 13 + [1] * 7)
    folds = fold_numbers(labels, 3, seed=5)
    assert sorted(set(folds.tolist())) == [1, 2, 3]
    for k in (1, 2, 3):
        assert sorted(np.bincount(labels[folds == k], minlength=2).tolist()) != [0, 0]
        assert abs(int(np.sum(labels[folds == k] == 0)) - 13 / 3) < 1
    assert np.array_equal(folds, fold_numbers(labels, 3, seed=5))
