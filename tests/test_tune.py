"""catdog.tune and `catdog tune`: tiny photos, 1-epoch trials, 2-3 trials; bad inputs without training."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from conftest import png_size, write_images

from catdog.checkpoints import CHECKPOINT_DIR, STATE_FILE
from catdog.cli import main
from catdog.config import load_config
from catdog.errors import ConfigError, TuneError
from catdog.tune import parse_budget, tune

REPO = Path(__file__).resolve().parents[1]
TINY = ["data.image_size=16", "train.batch_size=8", "train.epochs=1"]
SPACE = "tune.space={train.learning_rate: {low: 0.001, high: 0.01, log: true}, model.dropout: [0.0, 0.3]}"


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(result, line: str, code: int = 1) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    assert result.stderr == f"Error: {line}\n", result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("30m", 1800), ("1h", 3600), ("1h30m", 5400),
                                           (" 2m30s ", 150), ("0.5h", 1800)])
def test_budget_is_read_as_written(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text, line", [
    ("30", "--budget must be a time such as 90s, 30m, 1h or 1h30m; got '30'"),
    ("30 minutes", "--budget must be a time such as 90s, 30m, 1h or 1h30m; got '30 minutes'"),
    ("m", "--budget must be a time such as 90s, 30m, 1h or 1h30m; got 'm'"),
    ("5s", "--budget 5s is too small for one trial (under 10 s); give at least the time of a few epochs, e.g. 10m"),
])
def test_a_budget_that_is_not_a_time_or_too_small_is_one_line(tiny_data, text, line):
    one_error_line(cli("tune", "--data", tiny_data, "--budget", text, "--set", SPACE), line)


def test_bad_inputs_are_one_line_each(tiny_data, tmp_path):
    missing = tmp_path / "nowhere"
    result = cli("tune", "--data", missing, "--budget", "1m", "--set", SPACE, "--out", tmp_path / "t")
    assert result.exit_code == 1 and str(missing) in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.splitlines()) == 1
    one_error_line(cli("tune", "--data", tiny_data, "--budget", "1m"),
                   "nothing to search: the config has an empty tune.space and no --space file added keys; e.g. tune: "
                   "{space: {train.learning_rate: {low: 0.0005, high: 0.005, log: true}}}")
    space = tmp_path / "space.yaml"
    for text, line in [
        ("train.learning_rat: [0.001]\n", "train.learning_rat: not a config key (--space {}); did you mean "
                                          "train.learning_rate?"),
        ("train.learning_rate: {low: 0.001, high: 20}\n", "train.learning_rate.high must be a number in (0.0, 10.0]; "
                                                          "got 20.0 (--space {})"),
        ("train.learning_rate: {low: 0.01, high: 0.001}\n", "train.learning_rate: low must be below high; got low "
                                                            "0.01, high 0.001 (--space {})"),
        ("model.dropout: {low: 0, high: 0.5, log: true}\n", "model.dropout: a log scale needs low > 0; got low 0.0 "
                                                            "(--space {})"),
        ("train.optimizer: {low: 1, high: 2}\n", "train.optimizer must be a list of choices; got {{'high': 2, "
                                                 "'low': 1}} (--space {})"),
        ("train.epochs: []\n", "train.epochs must list at least one choice; got [] (--space {})"),
        ("seed: [1, 2]\n", "seed: seed cannot be searched (it decides which photos train and score the trials, "
                           "or where files go) (--space {})"),
    ]:
        space.write_text(text)
        one_error_line(cli("tune", "--data", tiny_data, "--budget", "1m", "--space", space),
                       line.format(space))
    assert not (tmp_path / "t").exists() and not Path("tune").exists()


def test_a_bad_tune_section_is_refused_at_load_as_every_section_is():
    with pytest.raises(ConfigError, match=r"^unknown config key tune.spce \(--set\); did you mean tune.space\?$"):
        load_config(None, ["tune.spce={train.epochs: [1]}"])
    with pytest.raises(ConfigError, match=r"^tune.space.train.batch_size\[1\] must be an integer >= 1; got 0 "):
        load_config(None, ["tune.space={train.batch_size: [8, 0]}"])


def test_training_ignores_the_tune_section_silently(tmp_path):
    import warnings

    path = tmp_path / "c.yaml"
    path.write_text((REPO / "configs" / "small.yaml").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = load_config(path)
    assert config.tune.space and config == load_config(path, ["tune.space={}"])


def test_without_optuna_tune_names_the_extra(tiny_data, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # what `import optuna` meets when it is not installed
    one_error_line(cli("tune", "--data", tiny_data, "--budget", "1m", "--set", SPACE),
                   "catdog tune needs Optuna: pip install 'catdog[tune]'")


@pytest.fixture
def photos(tmp_path) -> tuple[Path, Path]:
    """(training folder, a separate validation folder) of tiny photos."""
    write_images(tmp_path / "train" / "cats", 20, seed=1)
    write_images(tmp_path / "train" / "dogs", 20, seed=2, bright=True)
    write_images(tmp_path / "val" / "cats", 6, seed=3)
    write_images(tmp_path / "val" / "dogs", 6, seed=4, bright=True)
    return tmp_path / "train", tmp_path / "val"


def test_tune_writes_trials_as_runs_a_best_config_that_trains_and_its_results(photos, tmp_path):
    train_dir, val_dir = photos
    out = tmp_path / "tune"
    result = cli("tune", "--data", train_dir, "--budget", "2m", "--trials", 2, "--out", out, "--quiet",
                 *[a for s in [*TINY, SPACE, f"data.validation_dir={val_dir}"] for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    trials = sorted((out / "trials").iterdir())
    assert [t.name for t in trials] == ["trial-0000", "trial-0001"]
    splits = [json.loads((t / "split.json").read_text()) for t in trials]
    # Every trial is scored on the same photos, held out of the training folder, never the validation folder.
    assert splits[0]["validation"] == splits[1]["validation"] and len(splits[0]["validation"]) == 8
    assert {s["validation_root"] for s in splits} == {str(train_dir.resolve())}
    assert not set(splits[0]["validation"]) & set(splits[0]["train"])
    last = result.stdout.splitlines()[-1]
    assert last.startswith("2 trials done; best trial ")
    assert (f"on 8 photos held out of {train_dir} by tune (tune.holdout 0.2, seed 42); never data.validation_dir; "
            f"its config: {out / 'best.yaml'} (catdog train -c {out / 'best.yaml'})") in last
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["state"] for r in rows] == ["complete", "complete"]
    # The first trial is the config as it stands: the search is judged against it on the same photos.
    base = load_config(None, TINY)
    assert float(rows[0]["train.learning_rate"]) == base.train.learning_rate == 0.001
    assert float(rows[0]["model.dropout"]) == base.model.dropout
    assert [r["note"] for r in rows] == ["the config's own values", ""]
    best = max(rows, key=lambda r: (float(r["val_accuracy"]), -int(r["trial"])))
    assert f"best trial {best['trial']}: val_accuracy {float(best['val_accuracy']):.4f}" in last
    assert png_size(out / "search.png") == (1100, 380)
    listed = cli("runs", out / "trials")
    assert listed.exit_code == 0 and listed.stdout.count("finished") == 2, listed.output
    # best.yaml is the base config with the best trial's values, trains with `catdog train -c`, and
    # keeps the user's validation folder (tune's held-out photos were for the search only).
    chosen = load_config(out / "best.yaml")
    assert chosen.train.learning_rate == float(best["train.learning_rate"])
    assert chosen.model.dropout == float(best["model.dropout"])
    assert chosen.data.validation_dir == str(val_dir) and chosen.data.dir == str(train_dir.resolve())
    assert chosen.name == "tuned" and chosen.tune.space == {}
    trained = cli("train", "-c", out / "best.yaml", "--out", tmp_path / "final", "--quiet")
    assert trained.exit_code == 0, trained.output
    # The same folder again continues the study: it already holds 2 finished trials.
    again = cli("tune", "--data", train_dir, "--budget", "2m", "--trials", 2, "--out", out, "--quiet",
                *[a for s in [*TINY, SPACE, f"data.validation_dir={val_dir}"] for a in ("--set", s)])
    assert again.exit_code == 0 and again.stdout.splitlines()[-1].startswith("2 trials done"), again.output
    assert len(list((out / "trials").iterdir())) == 2
    # ... and refuses to continue it with another config.
    other = cli("tune", "--data", train_dir, "--budget", "2m", "--out", out,
                *[a for s in [*TINY, SPACE, "train.epochs=2"] for a in ("--set", s)])
    one_error_line(other, f"study 'tune' in sqlite:///{(out / 'study.db').resolve()} was started with another config "
                          "(or tune.space); continue it with the same -c, --set, --space and --data, or pick another "
                          "--study or --out")


# Slow (11 s: a 12-second budget spent in full); the default run checks how a budget is read
# (above) and runs a search that ends by its trial count.
@pytest.mark.slow
def test_budget_is_kept_within_five_percent_and_a_trial_too_long_is_stopped(photos, tmp_path):
    config = load_config(None, [*TINY, "train.epochs=1000", "tune.space={model.dropout: [0.0, 0.3]}"])
    budget = 12.0
    started = time.monotonic()
    def watch(message: str) -> None:  # a search that ignores its budget fails here, not after 1000 epochs
        assert time.monotonic() - started < budget * 1.5, message

    with pytest.raises(TuneError) as err:
        tune(config, photos[0], tmp_path / "tune", budget, report=watch)
    elapsed = time.monotonic() - started
    assert budget * 0.75 < elapsed <= budget * 1.05, elapsed
    assert str(err.value).startswith("no trial finished within the budget (budget 12s spent; the furthest reached "
                                     "epoch ")
    assert str(err.value).endswith("of 1000); raise --budget or lower train.epochs (--set train.epochs=N)")
    rows = list(csv.DictReader((tmp_path / "tune" / "trials.csv").open()))
    assert [r["state"] for r in rows] == ["stopped"]
    # Stopped at an epoch boundary: an interrupted run folder at its last whole epoch, listed as stopped.
    assert int(rows[0]["epochs"]) >= 1
    listed = cli("runs", tmp_path / "tune" / "trials")
    assert listed.exit_code == 0 and f"{rows[0]['epochs']}/1000" in listed.stdout and "stopped" in listed.stdout
    # Once the study has measured an epoch longer than a budget, that budget is refused up front.
    import optuna

    study = optuna.load_study(study_name="tune", storage=f"sqlite:///{(tmp_path / 'tune' / 'study.db').resolve()}")
    slow = study.ask()
    slow.set_user_attr("epoch_seconds", [30.0])
    slow.set_user_attr("startup", 2.0)
    study.tell(slow, state=optuna.trial.TrialState.PRUNED)
    with pytest.raises(TuneError, match=r"^--budget 20 s is too small for one trial: starting a trial and one "
                                        r"epoch took \d+ s in this study; give more$"):
        tune(config, photos[0], tmp_path / "tune", 20.0)


def trial_watch_with(clock_values: list[float], prune: bool = False):
    from catdog.callbacks import trial_watch

    reported: list[tuple[float, int]] = []
    trial = SimpleNamespace(report=lambda v, e: reported.append((v, e)), should_prune=lambda: prune)
    clock = iter(clock_values).__next__
    watch = trial_watch(trial, epochs=5, deadline=100.0, finish_seconds=2.0, clock=clock)
    watch.on_train_begin()
    return watch, reported


def test_trial_watch_reports_prunes_and_stops_before_the_deadline():
    from catdog.callbacks import TrialStopped

    watch, reported = trial_watch_with([0.0, 0.0, 10.0], prune=True)
    watch.on_epoch_begin(0)
    with pytest.raises(TrialStopped, match="^pruned$"):
        watch.on_epoch_end(0, {"val_accuracy": 0.75})
    assert reported == [(0.75, 0)]
    # 80 s in, another epoch of 10 s fits before 100 s; at 91 s it does not.
    watch, _ = trial_watch_with([0.0, 70.0, 80.0, 81.0, 91.0])
    watch.on_epoch_begin(0)
    watch.on_epoch_end(0, {"val_accuracy": 0.5})
    watch.on_epoch_begin(1)
    with pytest.raises(TrialStopped, match="^budget$"):
        watch.on_epoch_end(1, {"val_accuracy": 0.5})
    assert watch.epoch_seconds == [10.0, 10.0]
    # Before the last epoch, the saving after it counts too: at 90 s, 10 s + 2 s > 100 s ...
    watch, _ = trial_watch_with([0.0, 50.0, 60.0, 60.0, 70.0, 70.0, 80.0, 80.0, 90.0])
    for epoch in range(3):
        watch.on_epoch_begin(epoch)
        watch.on_epoch_end(epoch, {})
    watch.on_epoch_begin(3)
    with pytest.raises(TrialStopped, match="^budget$"):
        watch.on_epoch_end(3, {})
    # ... and after the last epoch nothing stops.
    watch, _ = trial_watch_with([0.0, 90.0, 99.0])
    watch.on_epoch_begin(4)
    watch.on_epoch_end(4, {})
    # Past the deadline within an epoch: no half epoch recorded as a whole one.
    watch, _ = trial_watch_with([0.0, 0.0, 99.0, 100.0])
    watch.on_epoch_begin(0)
    watch.on_train_batch_end(0)
    with pytest.raises(TrialStopped, match="^budget$"):
        watch.on_train_batch_end(1)


# Slow (10 s: a tune process killed mid-trial, then a second one, under Hyperband); the default
# run's search ends normally, and both pruners' rules are tested below.
@pytest.mark.slow
def test_a_trial_left_running_by_a_killed_tune_is_failed_and_the_search_continues(photos, tmp_path):
    import optuna

    # Hyperband here, median elsewhere: both pruners run.
    config = load_config(None, [*TINY, "tune.space={model.dropout: [0.0, 0.3]}", "tune.pruner=hyperband"])
    out = tmp_path / "tune"
    tune(config, photos[0], out, 120, trials=1, heartbeat=(1, 1))
    # What a tune killed by SIGKILL during its second trial leaves in the study: a RUNNING trial whose
    # heartbeat stopped.
    storage = optuna.storages.RDBStorage(f"sqlite:///{(out / 'study.db').resolve()}")
    study = optuna.load_study(study_name="tune", storage=storage)
    dead = study.ask()
    storage.record_heartbeat(dead._trial_id)
    time.sleep(2)
    result = tune(config, photos[0], out, 120, trials=2, heartbeat=(1, 1))
    assert [r.state for r in result.rows] == ["complete", "failed", "complete"]
    assert study.trials[0].intermediate_values == {0: result.rows[0].value}  # each epoch was reported
    assert result.stopped == "2 trials done"


@pytest.mark.slow
def test_a_killed_tune_process_resumes_and_two_processes_share_a_study(photos, tmp_path):
    """Real processes: SIGKILL in the middle of a trial, then two tunes on the same study at once."""
    out = tmp_path / "tune"
    sets = [a for s in [*TINY, "train.epochs=20", "tune.space={train.learning_rate: {low: 0.001, high: 0.01}}",
                        "tune.pruner=none"] for a in ("--set", s)]
    command = [sys.executable, "-c", "from catdog.cli import main; main()", "tune", "--data", str(photos[0]),
               "--out", str(out), "--quiet", *sets]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([*command, "--budget", "10m"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        state = out / "trials" / "trial-0000" / CHECKPOINT_DIR / STATE_FILE  # its first epoch is saved
        while not state.is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert state.is_file()
    time.sleep(61)  # the grace period of the dead trial's heartbeat
    both = [subprocess.Popen([*command, "--budget", "5m", "--trials", "3"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in both]
    assert all(p.returncode == 0 for p in both), outputs
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert rows[0]["state"] == "failed"  # the killed one, failed once its heartbeat was stale
    assert sum(r["state"] == "complete" for r in rows) >= 3
    # Each process ran trials of its own in the one study (their lines name distinct trials).
    ran = [{line.split(":")[0] for line in o.splitlines() if re.match(r"trial \d+: val_accuracy ", line)}
           for o, _err in outputs]
    assert all(ran) and not ran[0] & ran[1], ran


def first_pruned_epoch(kind: str, epochs: int, trials: int) -> list[int | None]:
    """For each of `trials` trials, the first (0-based) epoch at which the pruner cut it: trial i
    reports 0.9 - 0.05 * i at every epoch, so each new trial is behind all earlier ones."""
    optuna = pytest.importorskip("optuna")
    from catdog.tune import _pruner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=_pruner(optuna, kind, epochs),
                                sampler=optuna.samplers.RandomSampler(seed=0))
    cut: list[int | None] = []
    for i in range(trials):
        trial = study.ask()
        cut.append(None)
        for epoch in range(epochs):
            trial.report(0.9 - 0.05 * i, epoch)
            if trial.should_prune():
                cut[-1] = epoch
                break
        if cut[-1] is None:
            study.tell(trial, 0.9 - 0.05 * i)
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return cut


def test_the_median_pruner_waits_a_third_of_the_epochs_then_cuts_a_trial_that_falls_behind():
    # Early in a cosine schedule accuracy is noise: cutting at epoch 2 of 30 cut 30 of 32 trials.
    assert first_pruned_epoch("median", 30, 4) == [None, None, 10, 10]
    assert first_pruned_epoch("median", 2, 4) == [None, None, 1, 1]


def test_hyperband_never_cuts_before_a_third_of_the_epochs():
    cut = first_pruned_epoch("hyperband", 30, 12)
    assert any(c is not None for c in cut), cut
    assert min(c for c in cut if c is not None) >= 10, cut
    assert first_pruned_epoch("none", 30, 4) == [None] * 4


def test_the_first_trial_is_the_configs_own_values_where_they_lie_in_the_space():
    from catdog.config import search_space
    from catdog.tune import _baseline

    config = load_config(None, ["model.name=resnet", "train.learning_rate=0.002", "model.dropout=0.3",
                                "train.epochs=12", "model.blocks=[{filters: 8}]"])
    space = {"train.learning_rate": {"low": 0.001, "high": 0.01, "log": True}, "model.dropout": [0.0, 0.5],
             "train.epochs": {"low": 10, "high": 20, "step": 5}, "train.weight_decay": {"low": 0.01, "high": 0.1},
             "model.blocks": [[{"filters": 8}], [{"filters": 16}]]}
    dims = search_space(space)
    # dropout 0.3 is not a choice, epochs 12 is off the grid, weight decay 0 below the range, and a
    # list of blocks is held with its defaults filled in: those are drawn.
    assert _baseline(config, dims) == {"train.learning_rate": 0.002}
    assert _baseline(load_config(None, ["model.dropout=0.5", "train.epochs=15"]), dims) == {
        "model.dropout": 0.5, "train.epochs": 15, "train.learning_rate": 0.001}
