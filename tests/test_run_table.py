"""catdog.run_table: `catdog runs` and `catdog compare` on run folders written by hand (no training),
and once on a real tiny run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import png_size

from catdog.cli import main
from catdog.config import load_config, save_config
from catdog.run_table import compare_runs, list_runs

REPO = Path(__file__).resolve().parents[1]


def fake_run(root: Path, name: str, *overrides: str, history: dict | None = None, seconds: float | None = 12.0,
             evaluations: dict[str, dict] | None = None, finished: bool = True) -> Path:
    """A run folder as catdog train leaves it, without the training: config.yaml, history.json,
    training.json, an empty model.keras, and evaluation/<folder>/report.json + photos.csv."""
    run = root / name
    run.mkdir(parents=True)
    save_config(load_config("small", list(overrides)), run / "config.yaml")
    history = history if history is not None else {"loss": [0.9, 0.6, 0.5], "accuracy": [0.5, 0.7, 0.8],
                                                   "val_loss": [0.8, 0.7, 0.75], "val_accuracy": [0.5, 0.75, 0.6]}
    (run / "history.json").write_text(json.dumps(history))
    if finished:
        (run / "model.keras").write_bytes(b"")
        if seconds is not None:
            (run / "training.json").write_text(json.dumps({"seconds": seconds, "epochs_done": 3}))
    for i, (folder, report) in enumerate((evaluations or {}).items()):
        out = run / "evaluation" / folder
        out.mkdir(parents=True)
        photos = report.pop("photos", ["/p/a.jpg", "/p/b.jpg"])
        (out / "report.json").write_text(json.dumps({"source": folder, **report}))
        (out / "photos.csv").write_text("path,true_label,predicted_label,probability\n"
                                        + "".join(f"{p},cats,cats,0.9\n" for p in photos))
        os.utime(out / "report.json", (1_700_000_000 + i, 1_700_000_000 + i))
    return run


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_the_table_holds_each_runs_numbers(tmp_path):
    fake_run(tmp_path, "20250101-a", "train.epochs=5", evaluations={
        "old": {"accuracy": 0.1, "balanced_accuracy": 0.1}, "held-out": {"accuracy": 0.75, "balanced_accuracy": 0.7}})
    (row,) = list_runs(tmp_path)
    # small keeps the last epoch (train.keep_best off) by val_accuracy: epoch 3 of 5 planned.
    assert (row.config, row.model, row.epochs_done, row.epochs, row.state) == ("small", "resnet", 3, 5, "finished")
    assert (row.monitor, row.kept_epoch, row.kept_value) == ("val_accuracy", 3, 0.6)
    assert (row.evaluation, row.accuracy, row.balanced_accuracy, row.seconds) == ("held-out", 0.75, 0.7, 12.0)
    result = invoke("runs", str(tmp_path))
    assert result.exit_code == 0, result.output
    line = result.output.splitlines()[1].split()
    assert line[:2] == ["20250101-a", "small"] and "3/5" in line and "@3" in line
    assert line[-5:] == ["0.7500", "0.7000", "held-out", "0m12s", "finished"]


def test_keep_best_picks_the_best_epoch(tmp_path):
    fake_run(tmp_path, "r", "train.keep_best=true", "train.monitor=val_loss")
    (row,) = list_runs(tmp_path)
    assert (row.kept_epoch, row.kept_value) == (2, 0.7)


def test_states(tmp_path):
    fake_run(tmp_path, "done", seconds=None)
    stopped = fake_run(tmp_path, "stopped", finished=False)
    (stopped / "checkpoint").mkdir()
    (stopped / "checkpoint" / "state.json").write_text(json.dumps({"epochs_done": 2, "seconds": 4.5}))
    fake_run(tmp_path, "failed", finished=False)
    rows = {r.name: r for r in list_runs(tmp_path)}
    assert {n: r.state for n, r in rows.items()} == {"done": "finished", "stopped": "stopped", "failed": "failed"}
    assert rows["stopped"].seconds == 4.5 and rows["done"].seconds is None


def test_a_run_training_now(tmp_path):
    run = fake_run(tmp_path, "busy", finished=False)
    code = (f"import sys; from pathlib import Path; from catdog.runs import training_lock\n"
            f"with training_lock(Path({str(run)!r})):\n    print('held', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert list_runs(tmp_path)[0].state == "training now"
    finally:
        holder.communicate("")
    assert list_runs(tmp_path)[0].state == "failed"


def test_sort_and_filter(tmp_path):
    fake_run(tmp_path, "a", "train.learning_rate=0.01", seconds=30, evaluations={"e": {"accuracy": 0.6}})
    fake_run(tmp_path, "b", seconds=10, evaluations={"e": {"accuracy": 0.9}})
    fake_run(tmp_path, "c", seconds=20)
    other = fake_run(tmp_path, "d", seconds=5)
    (other / "config.yaml").write_text((other / "config.yaml").read_text().replace("name: small", "name: mine"))
    assert [r.name for r in list_runs(tmp_path, sort="time")] == ["d", "b", "c", "a"]
    # Runs never evaluated come last.
    assert [r.name for r in list_runs(tmp_path, sort="accuracy")] == ["a", "b", "c", "d"]
    assert [r.name for r in list_runs(tmp_path, config="mine")] == ["d"]
    result = invoke("runs", str(tmp_path), "--sort", "time", "--config", "small")
    assert [line.split()[0] for line in result.output.splitlines()[1:-1]] == ["b", "c", "a"]
    assert result.output.splitlines()[-1] == "3 runs"
    assert invoke("runs", str(tmp_path), "--sort", "colour").exit_code == 2


def test_json_is_one_object_per_run(tmp_path):
    fake_run(tmp_path, "a", evaluations={"e": {"accuracy": 0.6, "balanced_accuracy": 0.5}})
    result = invoke("runs", str(tmp_path), "--json")
    (row,) = [json.loads(line) for line in result.output.splitlines()]
    assert row["name"] == "a" and row["accuracy"] == 0.6 and row["epochs_done"] == 3 and row["problem"] is None


@pytest.mark.parametrize("damage, says", [
    (lambda run: (run / "config.yaml").write_text("model: [\n"), "config.yaml: not valid YAML"),
    (lambda run: (run / "config.yaml").write_text("model:\n  nmae: x\n"), "model.nmae"),
    (lambda run: (run / "history.json").unlink(), "history.json is missing"),
    (lambda run: (run / "history.json").write_text("{garbage"), "history.json is damaged"),
    (lambda run: (run / "history.json").write_text('{"loss": "x"}'), "history.json is damaged"),
    (lambda run: (run / "training.json").write_text("[1, 2"), "training.json is damaged"),
    (lambda run: (run / "evaluation" / "e" / "report.json").write_bytes(b"\xff\xfe"), "report.json is damaged"),
])
def test_a_damaged_run_is_a_row_that_says_so(tmp_path, damage, says):
    fake_run(tmp_path, "good")
    damage(fake_run(tmp_path, "bad", evaluations={"e": {"accuracy": 0.5}}))
    rows = {r.name: r for r in list_runs(tmp_path)}
    assert rows["good"].state == "finished"
    assert rows["bad"].state == "damaged" and says in str(rows["bad"].problem)
    result = invoke("runs", str(tmp_path))
    assert result.exit_code == 0 and result.exception is None
    assert "damaged: " in result.output and says in result.output


def test_a_missing_folder_is_one_line(tmp_path):
    result = invoke("runs", str(tmp_path / "nowhere"))
    assert result.exit_code == 1
    assert result.output == (f"Error: no runs folder at {tmp_path / 'nowhere'}; train one with catdog train, "
                             f"or name the folder\n")


def test_the_table_needs_no_tensorflow(tmp_path):
    fake_run(tmp_path, "a")
    code = ("import sys; from catdog.cli import main\n"
            "try: main(['runs', sys.argv[1]])\n"
            "except SystemExit: pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'jax', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
    assert out.splitlines()[-1] == "[]"


def test_a_hundred_runs_list_fast(tmp_path):
    for i in range(100):
        fake_run(tmp_path, f"run-{i:03d}", evaluations={"e": {"accuracy": 0.5}})
    start = time.perf_counter()
    assert len(list_runs(tmp_path)) == 100
    assert time.perf_counter() - start < 2  # ~0.2 s measured (docs/speed.md); slack for a busy machine


# --- compare -----------------------------------------------------------------------------------------


def test_compare_shows_only_the_keys_that_differ(tmp_path):
    a = fake_run(tmp_path, "a", "train.learning_rate=0.01", evaluations={"held-out": {"accuracy": 0.6}})
    b = fake_run(tmp_path, "b", "train.epochs=7", evaluations={"held-out": {"accuracy": 0.8}})
    c = compare_runs([a, b])
    assert c.differing == {"train.learning_rate": [0.01, 0.002], "train.epochs": [30, 7]}
    assert c.evaluation == ["held-out", "held-out"] and c.metrics["accuracy"] == [0.6, 0.8] and c.notes == []
    result = invoke("compare", str(a), str(b), "--out", str(tmp_path / "ab.png"))
    assert result.exit_code == 0, result.output
    keys = result.output.split("metrics")[0]
    assert "train.learning_rate" in keys and "train.epochs" in keys and "model.name" not in keys
    assert "note:" not in result.output
    assert png_size(tmp_path / "ab.png") == (1100, 420)


def test_compare_picks_the_evaluation_folder_in_common(tmp_path):
    a = fake_run(tmp_path, "a", evaluations={"shared": {"accuracy": 0.6}, "a-only": {"accuracy": 0.1}})
    b = fake_run(tmp_path, "b", evaluations={"shared": {"accuracy": 0.7}})
    c = compare_runs([a, b])
    assert c.evaluation == ["shared", "shared"] and c.metrics["accuracy"] == [0.6, 0.7] and c.notes == []


def test_compare_says_when_the_photos_differ(tmp_path):
    a = fake_run(tmp_path, "a", evaluations={"x": {"accuracy": 0.6}})
    b = fake_run(tmp_path, "b", evaluations={"y": {"accuracy": 0.7}})
    assert any("no evaluation folder in common: a scored x; b scored y" in n for n in compare_runs([a, b]).notes)
    # The same folder name (held-out) but other photos: a different split.
    c = fake_run(tmp_path, "c", evaluations={"held-out": {"accuracy": 0.6, "photos": ["/p/1.jpg"]}})
    d = fake_run(tmp_path, "d", evaluations={"held-out": {"accuracy": 0.7, "photos": ["/p/2.jpg"]}})
    result = invoke("compare", str(c), str(d), "--out", str(tmp_path / "cd.png"))
    assert "note: scored on different photos" in result.output


def test_compare_errors_are_one_line(tmp_path):
    a = fake_run(tmp_path, "a")
    one = invoke("compare", str(a), "--out", str(tmp_path / "x.png"))
    assert (one.exit_code, one.output) == (1, "Error: compare needs at least two run folders; got 1\n")
    missing = invoke("compare", str(a), str(tmp_path / "nope"), "--out", str(tmp_path / "x.png"))
    assert missing.exit_code == 1
    assert missing.output == (f"Error: run folder not found: {tmp_path / 'nope'} (expected a folder written by "
                              f"catdog train)\n")
    bad = fake_run(tmp_path, "bad")
    (bad / "history.json").write_text("{")
    damaged = invoke("compare", str(a), str(bad), "--out", str(tmp_path / "x.png"))
    assert damaged.exit_code == 1 and "history.json is damaged" in damaged.output
    assert not (tmp_path / "x.png").exists()


def test_compare_never_overwrites_a_picture_without_force(tmp_path):
    a, b = fake_run(tmp_path, "a"), fake_run(tmp_path, "b")
    picture = tmp_path / "mine.png"
    picture.write_bytes(b"the user's")
    result = invoke("compare", str(a), str(b), "--out", str(picture))
    assert result.exit_code == 1 and "already exists; pass --force" in result.output
    assert picture.read_bytes() == b"the user's"
    assert invoke("compare", str(a), str(b), "--out", str(picture), "--force").exit_code == 0
    assert png_size(picture) == (1100, 420)


def test_a_real_run_records_its_training(trained, tmp_path):
    run, photos = trained
    (row,) = [r for r in list_runs(run.parent) if r.name == run.name]
    assert (row.state, row.epochs_done, row.epochs, row.problem) == ("finished", 2, 2, None)
    assert row.seconds is not None and row.seconds > 0
    other = fake_run(tmp_path, "other")
    c = compare_runs([run, other])
    assert "data.image_size" in c.differing and c.metrics["epochs done"] == [2, 3]
