"""The runs under a folder as rows of a table (`catdog runs`), and two or more runs side by side
(`catdog compare`).

Reads only the run folders' small files (config.yaml, history.json, training.json, the evaluation
reports): no TensorFlow, no model loaded. A damaged run folder is a row that says what is wrong.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from catdog.config import Config
from catdog.errors import CatdogError, PlotError, RunError, first_line, shown
from catdog.runs import (
    _STATE,
    CONFIG_FILE,
    HISTORY_FILE,
    MODEL_FILE,
    RUNS_ROOT,
    TRAINED_FILE,
    read_run_config,
    training_now,
)

EVALUATION_DIR = "evaluation"
REPORT_FILE = "report.json"  # catdog.evaluation's; that module imports NumPy and Keras
PHOTOS_FILE = "photos.csv"
# `--sort` keys: the RunRow field each sorts by.
SORT_KEYS = {"name": "name", "config": "config", "model": "model", "data": "data", "epochs": "epochs_done",
             "metric": "kept_value", "accuracy": "accuracy", "balanced": "balanced_accuracy",
             "time": "seconds", "state": "state"}


@dataclass
class RunRow:
    """One run folder as `catdog runs` shows it; a field is None when the folder does not record it."""

    path: str
    name: str
    state: str  # finished, stopped (resumable), failed, training now, damaged
    config: str | None = None
    model: str | None = None
    data: str | None = None
    epochs_done: int | None = None
    epochs: int | None = None  # planned: the config's train.epochs
    monitor: str | None = None
    kept_epoch: int | None = None
    kept_value: float | None = None  # `monitor` at the kept epoch
    accuracy: float | None = None  # of the latest evaluation
    balanced_accuracy: float | None = None
    evaluation: str | None = None  # the latest evaluation's folder under <run>/evaluation/
    scored: str | None = None  # what that evaluation scored
    seconds: float | None = None  # training time
    problem: str | None = None  # why the folder is damaged

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _json(path: Path) -> Any:
    """A small JSON file of the run; RunError naming it when it is not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise RunError(f"{shown(path)} is damaged (not JSON)") from None


def read_history(run_dir: Path) -> dict[str, list[float]]:
    """history.json: metric name -> one value per epoch.

    Raises:
        RunError: it is missing, not JSON, or not lists of numbers.
    """
    path = run_dir / HISTORY_FILE
    if not path.is_file():
        raise RunError(f"{shown(path)} is missing")
    history = _json(path)
    if not (isinstance(history, dict) and all(isinstance(v, list) and all(
            x is None or isinstance(x, (int, float)) for x in v) for v in history.values())):
        raise RunError(f"{shown(path)} is damaged (expected metric names mapped to lists of numbers)")
    return history


def kept_epoch(history: dict[str, list[float]], monitor: str, keep_best: bool) -> int | None:
    """The 1-based epoch whose weights model.keras holds: the best by `monitor`, or the last."""
    values = history.get(monitor) or []
    if not values:
        return None
    if not keep_best:
        return len(values)
    scored = [(v, i) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    if not scored:
        return None
    best = max(scored, key=lambda p: (p[0], -p[1])) if "accuracy" in monitor else min(scored)
    return best[1] + 1


def latest_report(run_dir: Path) -> tuple[str, dict] | None:
    """(evaluation folder name, report) of the run's most recent evaluation, or None."""
    reports = list((run_dir / EVALUATION_DIR).glob(f"*/{REPORT_FILE}"))
    if not reports:
        return None
    newest = max(reports, key=lambda p: p.stat().st_mtime)
    return newest.parent.name, _json(newest)


def _state(run_dir: Path) -> str:
    if training_now(run_dir):
        return "training now"
    if (run_dir / MODEL_FILE).is_file():
        return "finished"
    if (run_dir / _STATE).is_file():
        return "stopped"
    return "failed"


def run_row(run_dir: Path) -> RunRow:
    """One run folder as a row; what cannot be read makes it a `damaged` row saying why."""
    row = RunRow(str(run_dir), run_dir.name, _state(run_dir))
    try:
        config = read_run_config(run_dir)
        row.config, row.model, row.data = config.name, config.model.name, config.data.dir
        row.epochs, row.monitor = config.train.epochs, config.train.monitor
        trained = _json(run_dir / TRAINED_FILE) if (run_dir / TRAINED_FILE).is_file() else {}
        if row.state == "stopped":
            trained = _json(run_dir / _STATE)
        row.seconds = trained.get("seconds") if isinstance(trained, dict) else None
        if row.state != "training now" or (run_dir / HISTORY_FILE).is_file():
            history = read_history(run_dir)
            # Without validation photos training watched the training numbers (catdog.training).
            if row.monitor not in history:
                row.monitor = row.monitor.removeprefix("val_")
            row.epochs_done = max((len(v) for v in history.values()), default=0)
            row.kept_epoch = kept_epoch(history, row.monitor, config.train.keep_best)
            if row.kept_epoch is not None:
                row.kept_value = history[row.monitor][row.kept_epoch - 1]
        if (found := latest_report(run_dir)) is not None:
            row.evaluation, report = found
            row.accuracy, row.balanced_accuracy = report.get("accuracy"), report.get("balanced_accuracy")
            row.scored = report.get("source")
    except (CatdogError, OSError, AttributeError, TypeError) as exc:
        row.state, row.problem = "damaged", first_line(exc)
    return row


def list_runs(root: str | Path = RUNS_ROOT, *, config: str | None = None, sort: str = "name") -> list[RunRow]:
    """The run folders directly under `root` (those holding a config.yaml or history.json), as rows.

    Args:
        config: keep only the runs of this config name.
        sort: a key of SORT_KEYS; runs without that value come last.

    Raises:
        RunError: `root` is not a folder. ValueError: an unknown sort key.
    """
    root = Path(root)
    if not root.is_dir():
        raise RunError(f"no runs folder at {shown(root)}; train one with catdog train, or name the folder")
    if sort not in SORT_KEYS:
        raise ValueError(f"unknown sort column {sort!r}; one of {', '.join(SORT_KEYS)}")
    rows = [run_row(p) for p in sorted(root.iterdir())
            if p.is_dir() and ((p / CONFIG_FILE).exists() or (p / HISTORY_FILE).exists())]
    if config is not None:
        rows = [r for r in rows if r.config == config]
    key = SORT_KEYS[sort]
    rows.sort(key=lambda r: (getattr(r, key) is None, getattr(r, key) if getattr(r, key) is not None else 0))
    return rows


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"


def runs_table(rows: list[RunRow]) -> str:
    """The rows as aligned text for the terminal; a damaged row's problem on the line below it."""
    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.4f}"

    head = ["run", "config", "model", "data", "epochs", "kept", "accuracy", "balanced", "scored", "time", "state"]
    lines = [head]
    for r in rows:
        epochs = f"{'-' if r.epochs_done is None else r.epochs_done}/{'-' if r.epochs is None else r.epochs}"
        kept = f"{r.monitor} {num(r.kept_value)} @{r.kept_epoch}" if r.kept_epoch else "-"
        lines.append([shown(r.name, 40), r.config or "-", r.model or "-", shown(r.data, 30) if r.data else "-",
                      epochs, kept, num(r.accuracy), num(r.balanced_accuracy), r.evaluation or "-",
                      duration(r.seconds), r.state + (f": {r.problem}" if r.problem else "")])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head) - 1)]
    text = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False)) + "  " + line[-1] for line in lines]
    return "\n".join(t.rstrip() for t in text) + f"\n{len(rows)} run{'s' * (len(rows) != 1)}"


# --- compare ----------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """Runs side by side: the config keys that differ, the metrics, the photos they were scored on."""

    runs: list[RunRow]
    differing: dict[str, list[Any]]  # dotted config key -> each run's value
    evaluation: list[str | None]  # each run's evaluation folder that the metrics come from
    metrics: dict[str, list[float | None]]
    notes: list[str] = field(default_factory=list)
    histories: list[dict[str, list[float]]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"runs": [r.path for r in self.runs], "differing": self.differing, "evaluation": self.evaluation,
                "metrics": self.metrics, "notes": self.notes}


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: data}


def _photos(report_dir: Path) -> frozenset[str] | None:
    try:
        with open(report_dir / PHOTOS_FILE, newline="", encoding="utf-8", errors="surrogateescape") as f:
            return frozenset(row[0] for row in list(csv.reader(f))[1:] if row)
    except OSError:
        return None


def compare_runs(paths: list[str | Path]) -> Comparison:
    """Compare two or more run folders.

    The metrics come from an evaluation folder every run has (the newest such), else from each
    run's latest evaluation; a note says when the runs were scored on different photos.

    Raises:
        RunError: fewer than two runs, a missing folder, or a damaged one. ConfigError: a bad config.yaml.
    """
    if len(paths) < 2:
        raise RunError(f"compare needs at least two run folders; got {len(paths)}")
    dirs = [Path(p) for p in paths]
    for d in dirs:
        if not d.is_dir():
            raise RunError(f"run folder not found: {shown(d)} (expected a folder written by catdog train)")
    configs: list[Config] = [read_run_config(d) for d in dirs]
    rows = [run_row(d) for d in dirs]
    for r in rows:
        if r.problem:
            raise RunError(f"{shown(r.path)}: {r.problem}")
    flat = [flatten(c.to_dict()) for c in configs]
    keys = sorted(set().union(*flat))
    differing = {k: [f.get(k) for f in flat] for k in keys if len({json.dumps(f.get(k)) for f in flat}) > 1}
    notes: list[str] = []
    folders = [{p.parent.name: p for p in (d / EVALUATION_DIR).glob(f"*/{REPORT_FILE}")} for d in dirs]
    common = set.intersection(*(set(f) for f in folders))
    chosen: list[str | None]
    if common:
        name = max(common, key=lambda n: max(f[n].stat().st_mtime for f in folders))
        chosen = [name] * len(dirs)
    else:
        chosen = [r.evaluation for r in rows]
        if any(c is not None for c in chosen):
            notes.append("no evaluation folder in common: " + "; ".join(
                f"{r.name} scored {c or 'nothing (catdog evaluate --run ' + r.path + ')'}" for r, c in zip(
                    rows, chosen, strict=True)))
    reports = [_json(d / EVALUATION_DIR / c / REPORT_FILE) if c else {} for d, c in zip(dirs, chosen, strict=True)]
    photos = [_photos(d / EVALUATION_DIR / c) if c else None for d, c in zip(dirs, chosen, strict=True)]
    if sum(c is not None for c in chosen) > 1 and len({p for p, c in zip(photos, chosen, strict=True) if c}) > 1:
        notes.append("scored on different photos: the metrics below are not measured on the same set")
    metrics: dict[str, list[float | None]] = {
        "epochs done": [r.epochs_done for r in rows], "epochs planned": [r.epochs for r in rows],
        "kept epoch": [r.kept_epoch for r in rows], "kept monitor value": [r.kept_value for r in rows],
        "training seconds": [None if r.seconds is None else round(r.seconds, 1) for r in rows],
    }
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "log_loss", "images"):
        metrics[key] = [rep.get(key) for rep in reports]
    return Comparison(rows, differing, chosen, metrics, notes, [read_history(d) for d in dirs])


def compare_plot(comparison: Comparison, path: str | Path, force: bool = False) -> Path:
    """Draw the runs' learning curves overlaid into one PNG at `path`.

    Raises:
        PlotError: `path` exists and `force` is not set.
    """
    path = Path(path)
    if path.exists() and not force:
        raise PlotError(f"{shown(path)} already exists; pass --force to replace it, or --out another file")
    from catdog.plots import compared_curves

    return compared_curves([r.name for r in comparison.runs], comparison.histories, path)
