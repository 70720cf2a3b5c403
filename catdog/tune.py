"""`catdog tune`: a search of config settings with Optuna, within a wall-time budget.

Every trial is an ordinary run folder (TUNE_DIR/trials/trial-NNNN) written by `training.train`, scored
on photos tune holds out of the training photos (tune.holdout, seeded by the config's seed: the same
photos for every trial), never on data.validation_dir. The study lives in a database (SQLite in the
tune folder by default): a killed search continues, and several processes can share one.

Optuna (the optional extra catdog[tune]) and Keras are imported inside functions: the CLI imports
this module for a command that may never get as far as training.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from catdog import plots
from catdog.cache import Progress
from catdog.callbacks import TrialStopped, trial_watch
from catdog.config import Config, Dimension, config_from_dict, config_yaml, read_yaml, search_space
from catdog.errors import CatdogError, TuneError, first_line, replacing, shown
from catdog.runs import SPLIT_FILE

Report = Callable[[str], None]

STUDY_FILE = "study.db"
TRIALS_DIR = "trials"
BEST_FILE = "best.yaml"
TRIALS_FILE = "trials.csv"
SEARCH_FILE = "search.png"
OPTUNA_MISSING = "catdog tune needs Optuna: pip install 'catdog[tune]'"
# Below this no trial gets past building its model; the measured time of an epoch refuses more.
MIN_BUDGET = 10.0
# A trial whose process died (kill -9, a power cut) stays RUNNING in the study until its heartbeat
# is older than the grace period; then the next trial any tune starts marks it failed.
HEARTBEAT, GRACE = 20.0, 60.0
# A search whose trials fail this many times in a row fails: the next would too.
MAX_FAILED_IN_A_ROW = 3
# Until saving has been measured, what a trial is given after its last epoch (model, ONNX file).
FINISH_GUESS = 5.0


def parse_budget(text: str) -> float:
    """Seconds in a budget written as `90s`, `30m`, `1h` or `1h30m`.

    Raises:
        TuneError: anything else, or less than MIN_BUDGET.
    """
    match = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?", text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise TuneError(f"--budget must be a time such as 90s, 30m, 1h or 1h30m; got {shown(text, 40)!r}")
    h, m, s = (float(g or 0) for g in match.groups())
    seconds = h * 3600 + m * 60 + s
    if seconds < MIN_BUDGET:
        raise TuneError(f"--budget {text.strip()} is too small for one trial (under {MIN_BUDGET:.0f} s); "
                        f"give at least the time of a few epochs, e.g. 10m")
    return seconds


@dataclass
class TrialRow:
    """One trial of the study, as trials.csv and the table show it."""

    number: int
    state: str  # complete, pruned, stopped (by the budget), failed, running
    value: float | None  # val_accuracy of the kept epoch; pruned/stopped: the last reported
    epochs_done: int
    seconds: float | None
    params: dict[str, Any]
    run: str | None
    note: str = ""


@dataclass
class TuneResult:
    """What a search found and where it wrote it."""

    out: Path
    rows: list[TrialRow]
    best: TrialRow | None
    best_config: Path | None
    holdout: str  # which photos scored the trials
    stopped: str  # why the search ended
    files: list[Path] = field(default_factory=list)

    def table(self) -> str:
        keys = sorted({k for r in self.rows for k in r.params})
        head = ["trial", "state", "val_accuracy", "epochs", "seconds", *keys]
        body = [[str(r.number), r.state + (" *" if r is self.best else ""),
                 "-" if r.value is None else f"{r.value:.4f}", str(r.epochs_done),
                 "-" if r.seconds is None else f"{r.seconds:.0f}",
                 *(shown(_text(r.params.get(k)), 30) for k in keys)] for r in self.rows]
        widths = [max(len(c) for c in col) for col in zip(head, *body, strict=True)]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                         for line in [head, *body])

    def line(self) -> str:
        if self.best is None or self.best_config is None:
            return f"{self.stopped}; no trial finished"
        return (f"{self.stopped}; best trial {self.best.number}: val_accuracy {self.best.value:.4f} on "
                f"{self.holdout}; its config: {self.best_config} (catdog train -c {self.best_config})")


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else value if isinstance(value, str) else json.dumps(value)


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise TuneError(OPTUNA_MISSING) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # tune reports through its own callback
    return optuna


def tune(config: Config, data: str | Path | None, out: str | Path, budget: float, *, trials: int | None = None,
         space: dict[str, Any] | None = None, space_source: str = "--space", study: str = "tune",
         storage: str | None = None, report: Report | None = None, progress: Progress | None = None,
         clock: Callable[[], float] = time.monotonic, heartbeat: tuple[float, float] = (HEARTBEAT, GRACE)
         ) -> TuneResult:
    """Search the config's tune.space (and `space`, which overrides it key by key) for `budget` seconds.

    Args:
        config: the base config; each trial changes only the searched keys.
        data: the training folder (default data.dir); tune.holdout of it scores the trials.
        out: the tune folder: study.db, trials/, best.yaml, trials.csv, search.png.
        budget: wall-time seconds, from this call to the results being written.
        trials: stop when the study holds this many finished trials (resumed ones count).
        storage: an Optuna database URL (default SQLite in `out`), e.g. postgresql://... shared by machines.
        report: receives one line per trial and per epoch.
        heartbeat: (interval, grace) seconds: a trial whose process stopped beating for `grace` is failed.

    Raises:
        TuneError: Optuna missing, nothing to search, a budget too small for one trial, a study that
            another config started, or no trial finished. ConfigError, DataError: see loading.
    """
    start = clock()
    deadline = start + budget
    say = report or (lambda _m: None)
    optuna = _optuna()
    dims = _dimensions(config, space, space_source)
    from catdog.training import find_data, train

    found, _val = find_data(config, data)  # a missing or empty folder, before any study is made
    out = Path(out)
    _check_out(out)
    the_study = _open_study(optuna, config, found.root, out, study, storage, heartbeat, dims)
    epochs = _most_epochs(config, dims)
    if (need := _estimate(the_study, epochs, one_epoch=True)) is not None and need > budget:
        raise TuneError(f"--budget {budget:.0f} s is too small for one trial: starting a trial and one epoch took "
                        f"{need:.0f} s in this study; give more")
    trials_dir = out / TRIALS_DIR
    failed_in_a_row: list[str] = []

    def objective(trial: Any) -> float:
        params = {d.key: _suggest(trial, d) for d in dims}
        cfg = _with(config, params, trial=True, root=found.root)
        run_dir = trials_dir / f"trial-{trial.number:04d}"
        trial.set_user_attr("run", str(run_dir))
        say(f"trial {trial.number}: " + ", ".join(f"{k}={_text(v)}" for k, v in params.items()))
        finish = max([t.user_attrs.get("finish", 0) for t in the_study.trials] + [FINISH_GUESS])
        watch = trial_watch(trial, cfg.train.epochs, deadline - _reserve(budget), finish, clock)
        began = clock()

        def relay(message: str) -> None:
            if message.startswith(("epoch ", "warning")):
                say(f"trial {trial.number}: {message}")

        finished = False
        try:
            result = train(cfg, found.root, run_dir, report=relay, progress=progress, callbacks=[watch])
            finished = True
        except TrialStopped as stop:
            done = len(watch.epoch_seconds)
            trial.set_user_attr("stopped", stop.reason)
            say(f"trial {trial.number}: {'pruned' if stop.reason == 'pruned' else 'stopped by the budget'} "
                f"after epoch {done}/{cfg.train.epochs}")
            raise optuna.TrialPruned() from None
        except CatdogError as exc:  # a diverging rate or a model the photos cannot feed: this trial's failure
            trial.set_user_attr("error", first_line(exc))
            say(f"trial {trial.number} failed: {first_line(exc)}")
            failed_in_a_row.append(first_line(exc))
            return math.nan  # Optuna marks it failed
        finally:
            _timings(trial, watch, began, clock(), finished)
        failed_in_a_row.clear()
        accuracy = result.history["val_accuracy"]
        value = accuracy[result.best_epoch - 1] if cfg.train.keep_best else accuracy[-1]
        say(f"trial {trial.number}: val_accuracy {value:.4f} ({clock() - began:.0f} s)")
        return float(value)

    stopped = f"budget {_duration(budget)} spent"
    while True:
        if trials is not None and _finished(the_study) >= trials:
            stopped = f"{trials} trials done"
            break
        left = deadline - _reserve(budget) - clock()
        need = _estimate(the_study, epochs)
        if left <= 0 or (need is not None and need > left):
            if left > 0:
                stopped = (f"budget {_duration(budget)}: {_duration(left)} left, too little for a trial "
                           f"(about {_duration(need or 0)})")
            break
        with warnings.catch_warnings():  # Optuna before 4.0 calls its heartbeat check experimental on every trial
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            the_study.optimize(objective, n_trials=1, catch=())
        _clear_session()
        if len(failed_in_a_row) >= MAX_FAILED_IN_A_ROW:
            raise TuneError(f"{len(failed_in_a_row)} trials in a row failed, the last: {failed_in_a_row[-1]}")
    return _write_results(the_study, config, dims, out, found.root, stopped)


def _dimensions(config: Config, space: dict[str, Any] | None, source: str) -> list[Dimension]:
    merged = dict(config.tune.space)
    if space is not None:
        search_space(space, source, where="")
        merged.update(space)
    dims = search_space(merged, "tune.space")
    if not dims:
        raise TuneError(f"nothing to search: {f'config {config.name}' if config.name else 'the config'} has an "
                        f"empty tune.space and no --space "
                        f"file added keys; e.g. tune: {{space: {{train.learning_rate: {{low: 0.0005, high: 0.005, "
                        f"log: true}}}}}}")
    return dims


def read_space(path: str | Path) -> dict[str, Any]:
    """A --space file: a mapping of dotted config keys to [choices] or {low, high, log, step}.

    Raises:
        ConfigError: not YAML, or not a mapping. OSError: it cannot be read.
    """
    loaded = read_yaml(Path(path))
    if not isinstance(loaded, dict):
        raise TuneError(f"--space {shown(path)} must be a mapping of config keys to [choices] or {{low, high}}; "
                        f"got {type(loaded).__name__}")
    return loaded


def _check_out(out: Path) -> None:
    """Refuse a tune folder that holds files tune did not write (they are the user's)."""
    if out.exists() and not out.is_dir():
        raise TuneError(f"--out {shown(out)} is a file; pick a folder for the search")
    ours = {STUDY_FILE, TRIALS_DIR, BEST_FILE, TRIALS_FILE, SEARCH_FILE}
    if out.is_dir() and (other := sorted(p.name for p in out.iterdir() if p.name not in ours and
                                         not p.name.startswith((f"{STUDY_FILE}-", ".")))):
        raise TuneError(f"--out {shown(out)} holds files tune did not write ({shown(other[0], 60)}); "
                        f"pick a new folder, or the folder of an earlier tune to continue it")
    out.mkdir(parents=True, exist_ok=True)


def _open_study(optuna: Any, config: Config, root: Path, out: Path, name: str, url: str | None,
                heartbeat: tuple[float, float], dims: list[Dimension]) -> Any:
    """The study `name` in the database, created or loaded; refused if another config or folder started it."""
    url = url or f"sqlite:///{(out / STUDY_FILE).resolve()}"
    # SQLite lets one writer in at a time; another process waits for it instead of failing at once.
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        with warnings.catch_warnings():
            # The heartbeat is marked experimental since Optuna 2.9; it is what lets a killed tune's
            # RUNNING trial be failed instead of staying in the study for ever.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(url, engine_kwargs=engine, grace_period=int(heartbeat[1]) or 1,
                                                 heartbeat_interval=int(heartbeat[0]) or 1)
    except Exception as exc:  # noqa: BLE001  an unknown dialect, an unreachable server, a driver missing
        raise TuneError(f"--storage {shown(url, 120)}: {first_line(exc)}") from None
    pruner = _pruner(optuna, config.tune.pruner, _most_epochs(config, dims))
    # TPE after 3 random trials (its default waits for 10, more than a small budget runs). Seeded by
    # the config's seed and the process, so that two processes sharing a study draw different trials.
    seed = int(np.random.SeedSequence([config.seed, os.getpid()]).generate_state(1)[0])
    sampler = optuna.samplers.TPESampler(n_startup_trials=3, seed=seed)
    s = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction="maximize",
                            sampler=sampler, pruner=pruner)
    recorded = {"config": config_yaml(config), "data": str(root.resolve())}
    before = {k: s.user_attrs.get(k) for k in recorded}
    if before["config"] is None:
        if (out / TRIALS_DIR).is_dir() and any((out / TRIALS_DIR).iterdir()) and not s.trials:
            raise TuneError(f"{shown(out / TRIALS_DIR)} holds trials of another study than {name!r}; "
                            f"pick another --out, or that study's --study name")
        for k, v in recorded.items():
            s.set_user_attr(k, v)
        # The first trial is the config as it stands, so the search is judged against it on the same
        # held-out photos, and what tune writes never scores below it there.
        if baseline := _baseline(config, dims):
            s.enqueue_trial(baseline, user_attrs={"baseline": True})
    elif before != recorded:
        what = "photo folder" if before["config"] == recorded["config"] else "config (or tune.space)"
        raise TuneError(f"study {name!r} in {shown(url, 120)} was started with another {what}; continue it with "
                        f"the same -c, --set, --space and --data, or pick another --study or --out")
    return s


def _baseline(config: Config, dims: list[Dimension]) -> dict[str, Any]:
    """The config's own value of each searched key that lies in its dimension; a list value
    (model.blocks), which the config holds with every default filled in, is left to the sampler."""
    raw, params = config.to_dict(), {}
    for d in dims:
        value: Any = raw
        for part in d.key.split("."):
            value = value[part]
        if d.choices is not None:
            if _plain(d) and value in d.choices:
                params[d.key] = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and d.low <= value <= d.high and (
                not d.step or math.isclose((value - d.low) / d.step, round((value - d.low) / d.step))):
            params[d.key] = int(value) if d.integer else float(value)
    return params


def _pruner(optuna: Any, kind: str, epochs: int) -> Any:
    """The study's pruner. It compares a trial only from a third of the way through `epochs`: early in
    a cosine schedule with warm-up, accuracy on a few hundred held-out photos is mostly noise (measured:
    pruning from the second epoch cut 30 of 32 trials of a 30-minute search, docs/accuracy.md)."""
    settle = max(1, epochs // 3)
    if kind == "median":
        # Reported steps are 0-based epochs: the first comparison is at the end of epoch `settle` + 1.
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=settle)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=settle, max_resource=max(epochs, settle + 1))
    return optuna.pruners.NopPruner()


def _most_epochs(config: Config, dims: list[Dimension]) -> int:
    for d in dims:
        if d.key == "train.epochs":
            return int(max(d.choices) if d.choices else d.high)
    return config.train.epochs


def _plain(d: Dimension) -> bool:
    """Whether Optuna can store the choices as they are; a list choice (model.blocks) is stored as its JSON."""
    return all(v is None or isinstance(v, (bool, int, float, str)) for v in d.choices or [])


def _suggest(trial: Any, d: Dimension) -> Any:
    if d.choices is not None:
        picked = trial.suggest_categorical(d.key, d.choices if _plain(d) else [json.dumps(v) for v in d.choices])
        return picked if _plain(d) else json.loads(picked)
    if d.integer:
        return trial.suggest_int(d.key, int(d.low), int(d.high), step=int(d.step or 1), log=d.log)
    return trial.suggest_float(d.key, d.low, d.high, step=d.step, log=d.log)


def _with(config: Config, params: dict[str, Any], trial: bool, root: Path) -> Config:
    """The config with the searched values, training on `root`; for a trial also tune's held-out
    photos as its validation."""
    raw = config.to_dict()
    del raw["tune"]
    for key, value in params.items():
        *path, leaf = key.split(".")
        node = raw
        for part in path:
            node = node[part]
        node[leaf] = value
    raw["data"]["dir"] = str(root.resolve())
    if trial:
        raw["data"].update(validation_dir=None, validation_split=config.tune.holdout)
    else:
        raw["name"] = f"{config.name}-tuned" if config.name else "tuned"
    return config_from_dict(raw, "the searched values")


def _reserve(budget: float) -> float:
    """What the budget keeps for writing the results after the last trial: 3%, within [2, 15] s."""
    return min(max(budget * 0.03, 2.0), 15.0)


def _timings(trial: Any, watch: Any, began: float, ended: float, finished: bool) -> None:
    """Record what the trial took: each epoch, the start (photos, model) and, when it ran to its
    end, the saving after its last epoch: the estimates of the next trials read them."""
    epoch_seconds = list(watch.epoch_seconds)
    trial.set_user_attr("epoch_seconds", [round(s, 3) for s in epoch_seconds])
    if watch.started is not None:
        trial.set_user_attr("startup", round(watch.started - began, 3))
        if finished:
            trial.set_user_attr("finish", round(max(0.0, ended - watch.started - sum(epoch_seconds)), 3))


def _estimate(study: Any, epochs: int, one_epoch: bool = False) -> float | None:
    """Seconds a trial of `epochs` epochs (or its start and first epoch) needs, from the trials measured so far."""
    attrs = [t.user_attrs for t in study.trials]
    per_epoch = [s for a in attrs for s in a.get("epoch_seconds", [])]
    if not per_epoch:
        return None
    startup = statistics.median([a["startup"] for a in attrs if "startup" in a] or [0.0])
    if one_epoch:
        return startup + max(per_epoch)
    finish = statistics.median([a["finish"] for a in attrs if "finish" in a] or [FINISH_GUESS])
    return startup + epochs * statistics.median(per_epoch) + finish


def _finished(study: Any) -> int:
    return sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)


def _clear_session() -> None:
    """Free the finished trial's model: Keras keeps every model built in a process."""
    import keras

    keras.backend.clear_session()


def _duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def _rows(study: Any) -> list[TrialRow]:
    rows = []
    for t in study.trials:
        state = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}.get(t.state.name, t.state.name.lower())
        if state == "pruned" and t.user_attrs.get("stopped") == "budget":
            state = "stopped"
        value = t.value if state == "complete" else (t.intermediate_values[max(t.intermediate_values)]
                                                     if t.intermediate_values else None)
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        note = t.user_attrs.get("error") or ("the config's own values" if t.user_attrs.get("baseline") else "")
        rows.append(TrialRow(t.number, state, value, len(t.user_attrs.get("epoch_seconds", [])), seconds,
                             dict(t.params), t.user_attrs.get("run"), note))
    return rows


def _write_results(study: Any, config: Config, dims: list[Dimension], out: Path, root: Path,
                   stopped: str) -> TuneResult:
    rows = _rows(study)
    complete = [r for r in rows if r.state == "complete" and r.value is not None]
    best = max(complete, key=lambda r: (r.value, -r.number)) if complete else None
    keys = [d.key for d in dims]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["trial", "state", "val_accuracy", "epochs", "seconds", *keys, "run", "note"])
    for r in rows:
        writer.writerow([r.number, r.state, "" if r.value is None else f"{r.value:.6f}", r.epochs_done,
                         "" if r.seconds is None else f"{r.seconds:.1f}",
                         *("" if r.params.get(k) is None else r.params[k] for k in keys), r.run or "", r.note])
    _write_text(out / TRIALS_FILE, buffer.getvalue())
    files = [out / TRIALS_FILE]
    values = [np.nan if r.value is None else r.value for r in rows]
    per_key = {d.key: [r.params.get(d.key) for r in rows] for d in dims}
    # Each range a little wider than searched, so that a trial at its edge is not drawn on the frame.
    ranges = {d.key: (d.low / 1.1, d.high * 1.1) if d.log else (d.low - (d.high - d.low) * 0.05,
                                                                d.high + (d.high - d.low) * 0.05)
              for d in dims if d.choices is None}
    plots.search(values, [r.state for r in rows], per_key, {d.key for d in dims if d.log}, out / SEARCH_FILE,
                 ranges)
    files.append(out / SEARCH_FILE)
    holdout = f"photos held out of {root} by tune (tune.holdout {config.tune.holdout:g}, seed {config.seed})"
    if best is None:
        seen = max((r.epochs_done for r in rows), default=0)
        raise TuneError(f"no trial finished within the budget ({stopped}; the furthest reached epoch {seen} of "
                        f"{config.train.epochs}); raise --budget or lower train.epochs (--set train.epochs=N)")
    params = study.trials[best.number].params
    chosen = _with(config, {d.key: params[d.key] if _plain(d) else json.loads(params[d.key]) for d in dims},
                   trial=False, root=root)
    header = (f"# Found by catdog tune (study {study.study_name!r}, trial {best.number} of {len(rows)}): val_accuracy "
              f"{best.value:.4f} on {holdout}.\n# Train it on every photo: catdog train -c {out / BEST_FILE}\n")
    _write_text(out / BEST_FILE, header + config_yaml(chosen))
    files.insert(0, out / BEST_FILE)
    scored = _scored(best.run)
    return TuneResult(out, rows, best, out / BEST_FILE, f"{scored} {holdout}; never data.validation_dir",
                      stopped, files)


def _scored(run: str | None) -> str:
    """How many photos scored a trial: its split.json's validation list."""
    try:
        return str(len(json.loads((Path(str(run)) / SPLIT_FILE).read_text())["validation"]))
    except (OSError, ValueError, KeyError, TypeError):
        return "the"


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # two tune processes may write at once
    with replacing(path, tmp):
        tmp.write_text(text)
