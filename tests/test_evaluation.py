"""Evaluation a user can act on: balanced scores, one CSV row per photo, named mistakes."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import png_size, train_tiny_run
from picture_reading import matrix_cells, percent_index, read_rgb, runs

from catdog.cli import main
from catdog.evaluation import EvalReport, mistakes, scores, shown_name


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def one_hot(pred: list[int], n: int = 2) -> np.ndarray:
    return np.eye(n)[pred] * 0.8 + 0.2 / n


def test_always_the_larger_class_scores_high_accuracy_but_half_balanced_accuracy():
    labels = np.array([0] * 9 + [1])
    s = scores(labels, one_hot([0] * 10), ["cats", "dogs"])
    assert s["accuracy"] == pytest.approx(0.9)
    assert s["balanced_accuracy"] == pytest.approx(0.5)  # recall 1 for cats, 0 for dogs
    assert s["macro_f1"] == pytest.approx((2 * 0.9 / 1.9 + 0.0) / 2)


def test_balanced_scores_skip_classes_without_photos_as_scikit_learn_does():
    # Three classes, no "birds" among the photos; one dog predicted as a bird.
    labels = np.array([0, 0, 1, 1])
    s = scores(labels, one_hot([0, 0, 1, 2], 3), ["cats", "dogs", "birds"])
    assert s["balanced_accuracy"] == pytest.approx((1.0 + 0.5) / 2)  # birds have no photos: left out
    f1_dogs = 2 * 1.0 * 0.5 / 1.5
    assert s["macro_f1"] == pytest.approx((1.0 + f1_dogs + 0.0) / 3)  # birds were predicted: counted
    s = scores(labels, one_hot([0, 0, 1, 1], 3), ["cats", "dogs", "birds"])
    assert s["macro_f1"] == pytest.approx(1.0)  # birds neither present nor predicted


def report_of(files: list[str], labels: list[int], pred: list[int]) -> EvalReport:
    probs = one_hot(pred)
    s = scores(np.array(labels), probs, ["cats", "dogs"])
    return EvalReport(Path("run"), "x", ["cats", "dogs"], s["accuracy"], s["balanced_accuracy"], s["macro_f1"],
                      s["log_loss"], s["per_class"], s["confusion"], len(files), [], [Path(f) for f in files],
                      np.array(labels), probs)


def test_top_mistakes_are_titled_with_their_file_names():
    report = report_of(["photos/cats/a.jpg", "photos/cats/b.jpg", "photos/dogs/c.jpg"], [0, 0, 1], [1, 0, 0])
    assert mistakes(report) == [
        (Path("photos/cats/a.jpg"), "a.jpg\ntrue: cats / pred: dogs (0.90)"),
        (Path("photos/dogs/c.jpg"), "c.jpg\ntrue: dogs / pred: cats (0.90)"),
    ]


def test_shown_names_are_printable_and_short():
    assert shown_name(os.fsdecode(b"caf\xe9.jpg")) == "caf\\xe9.jpg"
    assert shown_name("a\nb.jpg") == "a\\nb.jpg"
    long = "a" * 20 + "_middle_" + "z" * 20 + ".jpg"
    assert shown_name(long) == "a" * 15 + "…" + "z" * 10 + ".jpg" and len(shown_name(long)) == 30
    assert shown_name("chat.jpg") == "chat.jpg"


# Names the CSV must carry back unchanged: a comma, quotes, a line break, and bytes that are not UTF-8.
ODD_NAMES = ["one, two.jpg", 'say "cheese".jpg', "two\nlines.jpg", os.fsdecode(b"caf\xe9.jpg")]


@pytest.fixture(scope="module")
def run_and_photos(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("evaluation")
    run, _photos = train_tiny_run(root, "train.epochs=1", "data.image_size=16", "train.batch_size=8")
    scored = root / "scored"
    for i, name in enumerate(ODD_NAMES):
        cls = "cats" if i % 2 == 0 else "dogs"
        (scored / cls).mkdir(parents=True, exist_ok=True)
        (scored / cls / name).write_bytes((root / "photos" / cls / f"img_00{i}.jpg").read_bytes())
    return run, scored


def test_evaluate_writes_one_csv_row_per_photo_that_opens_it(run_and_photos):
    run, scored = run_and_photos
    result = invoke("evaluate", "--run", run, "--data", scored)
    assert result.exit_code == 0, result.output
    report = json.loads(next((run / "evaluation").glob("scored-*/report.json")).read_text())
    folder = Path(report["report_dir"])
    assert f"per-photo results: {folder / 'photos.csv'}" in result.output
    assert report["photos_csv"] == str(folder / "photos.csv")
    assert report["images"] == 4 and 0 <= report["balanced_accuracy"] <= 1 and 0 <= report["macro_f1"] <= 1
    with open(folder / "photos.csv", newline="", encoding="utf-8", errors="surrogateescape") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "true_label", "predicted_label", "probability"]
    assert len(rows) == 5
    by_name = {Path(r[0]).name: r for r in rows[1:]}
    assert set(by_name) == set(ODD_NAMES)
    for i, name in enumerate(ODD_NAMES):
        path, true, pred, prob = by_name[name]
        assert Path(path).is_absolute() and Path(path).is_file()
        assert Path(path).samefile(scored / true / name)
        assert true == ("cats" if i % 2 == 0 else "dogs")
        assert pred in ("cats", "dogs") and 0.5 <= float(prob) <= 1.0
    confusion = np.zeros((2, 2), int)
    for _, true, pred, _ in rows[1:]:
        confusion[["cats", "dogs"].index(true), ["cats", "dogs"].index(pred)] += 1
    assert confusion.tolist() == report["confusion_matrix"]


def test_evaluate_table_and_json_give_balanced_accuracy_and_macro_f1(run_and_photos):
    run, scored = run_and_photos
    table = invoke("evaluate", "--run", run, "--data", scored).output
    data = json.loads(invoke("evaluate", "--run", run, "--data", scored, "--json").stdout)
    assert f"accuracy           {data['accuracy']:.4f}\n" in table
    assert f"balanced accuracy  {data['balanced_accuracy']:.4f}\n" in table
    assert f"macro F1           {data['macro_f1']:.4f}\n" in table
    recalls = [data["per_class"][c]["recall"] for c in ("cats", "dogs")]
    assert data["balanced_accuracy"] == pytest.approx(np.mean(recalls))


def test_evaluate_draws_confusion_matrix_and_top_mistakes(trained):
    run, _ = trained
    result = invoke("evaluate", "--run", run)
    assert result.exit_code == 0, result.output
    folder = run / "evaluation" / "held-out"
    assert f"picture: {folder / 'confusion_matrix.png'}" in result.output
    assert f"picture: {folder / 'top_mistakes.png'}" in result.output
    assert png_size(folder / "confusion_matrix.png") == (600, 500)
    assert png_size(folder / "top_mistakes.png")[0] > 0
    # The pictures show this evaluation's numbers: each cell coloured by its row percentage, and
    # one photo per mistake (at most 12).
    report = json.loads((folder / "report.json").read_text())
    confusion = np.array(report["confusion_matrix"])
    totals = confusion.sum(axis=1, keepdims=True)
    percent = np.divide(100.0 * confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)
    np.testing.assert_allclose(matrix_cells(folder / "confusion_matrix.png", 2), percent_index(percent), atol=1)
    rgb = read_rgb(folder / "top_mistakes.png")
    drawn = (rgb < 245).any(axis=-1)
    photo_columns = runs(drawn.sum(axis=0) > 100, min_length=100)
    photo_rows = runs(drawn.sum(axis=1) > 100, min_length=100)
    photos = sum(drawn[top:bottom, left:right].mean() > 0.9
                 for top, bottom in photo_rows for left, right in photo_columns)
    assert photos == min(12, confusion.sum() - np.trace(confusion)) > 0


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `folder`, with its size and modification time."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_evaluate_out_writes_the_report_elsewhere_for_a_read_only_run(trained, tmp_path):
    import shutil

    source, _ = trained
    run = tmp_path / "run"
    shutil.copytree(source, run)
    before = snapshot(run)
    modes = {p: p.stat().st_mode for p in [run, *run.rglob("*")]}
    for p in modes:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        if os.geteuid() != 0:  # root writes through chmod: there the snapshot below is the check
            refused = invoke("evaluate", "--run", run)
            assert refused.exit_code == 1 and "Permission denied" in refused.output
        out = tmp_path / "reports" / "held-out"
        result = invoke("evaluate", "--run", run, "--out", out)
        assert result.exit_code == 0, result.output
        assert f"report: {out / 'report.json'}" in result.output
        assert sorted(p.name for p in out.iterdir()) == ["confusion_matrix.png", "photos.csv", "report.json",
                                                         "top_mistakes.png"]
        assert json.loads((out / "report.json").read_text())["report_dir"] == str(out)
        assert snapshot(run) == before  # nothing written into the run folder
        # A second report into the same folder would replace the first: refused, the first kept.
        report = (out / "report.json").read_bytes()
        again = invoke("evaluate", "--run", run, "--out", out)
        assert again.exit_code == 1
        assert again.output == (f"Error: --out {out} already holds report.json, photos.csv, confusion_matrix.png, "
                                f"top_mistakes.png; pick another folder\n")
        assert (out / "report.json").read_bytes() == report
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
