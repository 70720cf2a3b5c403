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


def test_scores_of_a_small_case_worked_by_hand():
    # cats: 1 of 2 found; dogs: 1 of 1 found, 2 answers; birds: never a photo nor an answer.
    probs = np.array([[0.9, 0.1, 0.0], [0.3, 0.7, 0.0], [0.2, 0.8, 0.0]])
    s = scores(np.array([0, 0, 1]), probs, ["cats", "dogs", "birds"])
    assert s["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert all(type(v) is int for row in s["confusion"] for v in row)
    assert s["per_class"] == {
        "cats": {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2},
        "dogs": {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1},
        "birds": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},
    }
    assert s["accuracy"] == pytest.approx(2 / 3) and s["balanced_accuracy"] == pytest.approx(0.75)
    assert s["macro_f1"] == pytest.approx(2 / 3)
    assert s["log_loss"] == pytest.approx(-(np.log(0.9) + np.log(0.3) + np.log(0.8)) / 3)


def test_a_class_never_answered_has_precision_zero():
    s = scores(np.array([0, 1]), one_hot([0, 0]), ["cats", "dogs"])
    assert s["per_class"]["dogs"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert s["per_class"]["cats"]["precision"] == 0.5


def test_log_loss_is_clipped_both_ways_and_positive():
    certain = np.array([[1.0, 0.0], [0.0, 1.0]])
    right = scores(np.array([0, 1]), certain, ["cats", "dogs"])["log_loss"]
    assert 0 < right < 1e-14  # -log(1 - 1e-15), not 0
    wrong = scores(np.array([1, 0]), certain, ["cats", "dogs"])["log_loss"]
    assert wrong == pytest.approx(-np.log(1e-15))  # finite: one sure mistake costs 34.5, not infinity


def test_mistakes_most_confident_first_ties_in_file_order():
    probs = np.array([[0.4, 0.6], [0.1, 0.9], [0.8, 0.2]] + [[0.3, 0.7]] * 20)
    files = [f"p/{i:02d}.jpg" for i in range(23)]
    s = scores(np.zeros(23, int), probs, ["cats", "dogs"])
    report = EvalReport(Path("run"), "x", ["cats", "dogs"], s["accuracy"], s["balanced_accuracy"], s["macro_f1"],
                        s["log_loss"], s["per_class"], s["confusion"], 23, [], [Path(f) for f in files],
                        np.zeros(23, int), probs)
    assert [str(p) for p, _ in mistakes(report)] == ["p/01.jpg", *files[3:], "p/00.jpg"]


def test_long_class_names_are_cut_at_40_characters_in_titles():
    name = "c" * 41
    probs = one_hot([1])
    report = EvalReport(Path("run"), "x", [name, "dogs"], 0.0, 0.0, 0.0, 0.0, {}, [], 1, [], [Path("a.jpg")],
                        np.array([0]), probs)
    assert mistakes(report) == [(Path("a.jpg"), f"a.jpg\ntrue: {'c' * 40}... / pred: dogs (0.90)")]
    report.classes = ["dogs", name]
    report.labels = np.array([0])
    assert mistakes(report)[0][1] == f"a.jpg\ntrue: dogs / pred: {'c' * 40}... (0.90)"


def test_names_up_to_the_longest_file_name_keep_their_end():
    assert shown_name("b" * 30) == "b" * 30
    assert shown_name("b" * 31) == "b" * 15 + "…" + "b" * 14
    name = "a" * 246 + "_end.jpg"  # 254 characters: a file name can hold 255 bytes
    assert shown_name(name) == "a" * 15 + "…" + "a" * 6 + "_end.jpg"


def test_report_table_json_and_csv_agree_on_the_numbers(tmp_path):
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8]])
    labels = np.array([0, 0, 1])
    s = scores(labels, probs, ["cats", "dogs"])
    report = EvalReport(Path("run"), "photos", ["cats", "dogs"], s["accuracy"], s["balanced_accuracy"],
                        s["macro_f1"], s["log_loss"], s["per_class"], s["confusion"], 3, [("bad.jpg", "not an image")],
                        [Path("a.jpg"), Path("b.jpg"), Path("c.jpg")], labels, probs, out_dir=tmp_path)
    assert report.table() == "\n".join([
        "3 images from photos",
        "accuracy           0.6667",
        "balanced accuracy  0.7500",
        "macro F1           0.6667",
        "log loss           0.5108",
        "",
        "class      precision  recall     f1  support",
        "cats          1.0000  0.5000  0.6667        2",
        "dogs          0.5000  1.0000  0.6667        1",
        "",
        "confusion matrix (rows: true, columns: predicted)",
        "                cats       dogs",
        "cats               1          1",
        "dogs               0          1",
        "",
        "skipped 1 files:",
        "  bad.jpg: not an image",
    ])
    assert report.to_dict() == {
        "run": "run", "report_dir": str(tmp_path), "source": "photos", "images": 3,
        "accuracy": s["accuracy"], "balanced_accuracy": 0.75, "macro_f1": s["macro_f1"], "log_loss": s["log_loss"],
        "classes": ["cats", "dogs"], "photos_csv": str(tmp_path / "photos.csv"), "per_class": s["per_class"],
        "confusion_matrix": [[1, 1], [0, 1]], "skipped": [{"file": "bad.jpg", "reason": "not an image"}],
        "leaky": False, "leaks": None, "decisions": None,
    }
    report.out_dir = None
    assert report.to_dict()["photos_csv"] is None
    from catdog.evaluation import write_photos_csv
    assert write_photos_csv(report, tmp_path / "p.csv") == tmp_path / "p.csv"
    with open(tmp_path / "p.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows == [["path", "true_label", "predicted_label", "probability"],
                    [str(Path("a.jpg").absolute()), "cats", "cats", "0.900000"],
                    [str(Path("b.jpg").absolute()), "cats", "dogs", "0.700000"],
                    [str(Path("c.jpg").absolute()), "dogs", "dogs", "0.800000"]]


def test_long_class_names_are_cut_in_the_table_and_odd_file_names_kept_in_the_csv(tmp_path):
    name = "c" * 41
    odd = os.fsdecode(b"caf\xe9.jpg")  # not UTF-8: written back as its bytes
    probs = one_hot([0, 1])
    s = scores(np.array([0, 1]), probs, [name, "dogs"])
    report = EvalReport(Path("run"), "x", [name, "dogs"], s["accuracy"], s["balanced_accuracy"], s["macro_f1"],
                        s["log_loss"], s["per_class"], s["confusion"], 2, [], [Path(odd), Path("b.jpg")],
                        np.array([0, 1]), probs)
    table = report.table()
    assert f"\n{'c' * 40}...  " in table and "c" * 41 not in table
    from catdog.evaluation import write_photos_csv
    write_photos_csv(report, tmp_path / "p.csv")
    assert os.fsencode(str(Path(odd).absolute())) in (tmp_path / "p.csv").read_bytes()


def test_a_report_whose_parts_disagree_in_length_is_refused_not_cut_short(tmp_path):
    from catdog.evaluation import write_photos_csv
    report = report_of(["a.jpg", "b.jpg"], [0, 1], [0, 1])
    report.files = report.files[:1]  # one photo fewer than its labels
    with pytest.raises(ValueError):
        write_photos_csv(report, tmp_path / "p.csv")
    report = report_of(["a.jpg", "b.jpg"], [0, 1], [0, 1])
    report.confusion = report.confusion[:1]  # a class without its row
    with pytest.raises(ValueError):
        report.table()
