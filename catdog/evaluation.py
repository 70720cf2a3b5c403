"""Scoring a trained run: accuracy, balanced accuracy, macro-F1, per-class precision/recall/F1,
confusion matrix, log loss, one CSV row per photo, and the pictures of the confusion matrix and the
most confident mistakes."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from catdog import decisions as decided
from catdog import plots
from catdog.batches import batches
from catdog.cache import Prepared, Progress, folder_digest
from catdog.config import Config
from catdog.errors import DataError, ImageError, PlotError, first_line, shown
from catdog.images import load_image
from catdog.leaks import HASHES_FILE, LEAKS_FILE, Leaks, find, named, pixel_hashes, read_hashes
from catdog.prediction import as_class_probabilities, with_mirror_averaged
from catdog.runs import TRAINED_FILE, Run, load_run, run_decisions, write_json
from catdog.splits import prepare_folder

# Kaggle's "Dogs vs. Cats Redux" log loss clips probabilities so one confident mistake stays finite.
LOG_LOSS_EPS = 1e-15
REPORT_FILE = "report.json"
PHOTOS_FILE = "photos.csv"
CONFUSION_FILE = "confusion_matrix.png"
MISTAKES_FILE = "top_mistakes.png"
# Three rows of four: enough to see a pattern in the failures, small enough to look at each.
TOP_MISTAKES = 12


@dataclass
class EvalReport:
    """The scores of a run on a set of labelled images."""

    run_dir: Path
    source: str
    classes: list[str]
    accuracy: float
    # The mean recall of the classes present, and the mean F1: on uneven folders a model that
    # always answers the larger class scores a high accuracy but not these.
    balanced_accuracy: float
    macro_f1: float
    log_loss: float
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]
    count: int
    skipped: list[tuple[str, str]]
    # Kept for pictures (top mistakes); left out of the JSON report.
    files: list[Path] = field(default_factory=list, repr=False)
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, int), repr=False)
    probabilities: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)
    # Where report.json, photos.csv (and the pictures of this evaluation) are written, inside the run folder.
    out_dir: Path | None = None
    # confusion_matrix.png and top_mistakes.png beside report.json.
    pictures: list[Path] = field(default_factory=list)
    # Scored photos that are training photos or filed in two classes (catdog.leaks).
    leaks: Leaks | None = None
    # The run trained before catdog recorded its training photos' hashes.
    leaks_unchecked: bool = False
    # Where the pictures were also written for TensorBoard, or why they were not (None: logs off).
    tensorboard_line: str | None = None
    # What the run's decisions file did to the photos scored (catdog.decisions): lines, and for JSON.
    decision_lines: list[str] = field(default_factory=list)
    decisions: dict | None = None

    @property
    def leaky(self) -> bool:
        return bool(self.leaks)

    def leak_lines(self) -> list[str]:
        """The warnings about leaks, or the line saying training photos were not looked for."""
        listed = (self.out_dir or Path()) / LEAKS_FILE
        lines = self.leaks.lines("photos scored", listed) if self.leaks else []
        if self.leaks_unchecked:
            lines.append(f"note: the run has no {HASHES_FILE} (trained by an older catdog), so the photos "
                         "scored were not checked against its training photos")
        return lines

    def to_dict(self) -> dict:
        return {
            "run": str(self.run_dir), "report_dir": str(self.out_dir), "source": self.source, "images": self.count,
            "accuracy": self.accuracy, "balanced_accuracy": self.balanced_accuracy, "macro_f1": self.macro_f1,
            "log_loss": self.log_loss, "classes": self.classes,
            "photos_csv": str(self.out_dir / PHOTOS_FILE) if self.out_dir is not None else None,
            "per_class": self.per_class, "confusion_matrix": self.confusion,
            "skipped": [{"file": f, "reason": r} for f, r in self.skipped],
            "leaky": self.leaky, "leaks": self._leaks_dict(), "decisions": self.decisions,
        }

    def _leaks_dict(self) -> dict | None:
        if self.leaks is None:
            return None
        listed = (self.out_dir or Path()) / LEAKS_FILE if self.leaks else None
        return {**self.leaks.to_dict(listed), "checked": not self.leaks_unchecked}

    def table(self) -> str:
        """The report as aligned text for the terminal."""
        names = [shown(c, 40) for c in self.classes]
        width = max(9, *(len(c) for c in names))
        leaky = " (LEAKY: see the warnings below)" if self.leaky else ""
        lines = [f"{self.count} images from {shown(self.source)}{leaky}",
                 f"accuracy           {self.accuracy:.4f}", f"balanced accuracy  {self.balanced_accuracy:.4f}",
                 f"macro F1           {self.macro_f1:.4f}", f"log loss           {self.log_loss:.4f}", "",
                 f"{'class':<{width}}  precision  recall     f1  support"]
        for key, name in zip(self.classes, names, strict=True):
            m = self.per_class[key]
            lines.append(f"{name:<{width}}  {m['precision']:9.4f}  {m['recall']:6.4f}  "
                         f"{m['f1']:.4f}  {m['support']:7d}")
        lines += ["", "confusion matrix (rows: true, columns: predicted)",
                  " " * width + "  " + "  ".join(f"{c:>{width}}" for c in names)]
        for name, row in zip(names, self.confusion, strict=True):
            lines.append(f"{name:<{width}}  " + "  ".join(f"{v:>{width}d}" for v in row))
        if self.decision_lines:
            lines += ["", *self.decision_lines]
        if self.skipped:
            lines += ["", f"skipped {len(self.skipped)} files:"] + [f"  {shown(f)}: {r}" for f, r in self.skipped]
        if leaks := self.leak_lines():
            lines += ["", *leaks]
        return "\n".join(lines)


def scores(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, balanced accuracy, macro-F1, log loss, per-class precision/recall/F1 and the confusion matrix.

    As scikit-learn computes them: balanced accuracy averages the recall of the classes that have
    photos; macro-F1 averages the F1 of the classes that have photos or predictions.
    """
    n = len(classes)
    pred = probs.argmax(axis=1)
    confusion = np.zeros((n, n), dtype=int)
    np.add.at(confusion, (labels, pred), 1)
    per_class = {}
    for i, name in enumerate(classes):
        tp = confusion[i, i]
        precision = tp / confusion[:, i].sum() if confusion[:, i].sum() else 0.0
        recall = tp / confusion[i].sum() if confusion[i].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                           "support": int(confusion[i].sum())}
    p_true = np.clip(probs[np.arange(len(labels)), labels], LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    present = confusion.sum(axis=1) > 0
    seen = present | (confusion.sum(axis=0) > 0)
    recall = [m["recall"] for m, p in zip(per_class.values(), present, strict=True) if p]
    f1 = [m["f1"] for m, p in zip(per_class.values(), seen, strict=True) if p]
    return {"accuracy": float((pred == labels).mean()), "balanced_accuracy": float(np.mean(recall)),
            "macro_f1": float(np.mean(f1)), "log_loss": float(-np.log(p_true).mean()),
            "per_class": per_class, "confusion": confusion.tolist()}


def write_photos_csv(report: EvalReport, path: Path) -> Path:
    """One row per scored photo: path, true_label, predicted_label, probability (of the prediction).

    The csv module quotes names with commas, quotes or line breaks; a name that is not valid
    UTF-8 is written back as its original bytes (surrogateescape), so every path in the file
    opens the photo it names.
    """
    predicted = report.probabilities.argmax(axis=1)
    with open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        out = csv.writer(f)
        out.writerow(["path", "true_label", "predicted_label", "probability"])
        for file, label, pred, probs in zip(report.files, report.labels, predicted, report.probabilities, strict=True):
            out.writerow([str(Path(file).absolute()), report.classes[label], report.classes[pred],
                          f"{probs[pred]:.6f}"])
    return path


# Longer file names are shortened in the middle so a title stays within its tile.
NAME_CHARS = 30


def shown_name(name: str, limit: int = NAME_CHARS) -> str:
    """A file name as a picture can show it: undecodable bytes as \\xNN, long names cut in the middle."""
    name = shown(name, limit=10 * limit)
    if len(name) > limit:
        keep = limit - 1
        name = name[:keep - keep // 2] + "…" + name[len(name) - keep // 2:]
    return name


def mistakes(report: EvalReport) -> list[tuple[Path, str]]:
    """The wrongly classified photos, most confident first, each with its tile title:
    the file name, then "true: cat / pred: dog (0.97)"."""
    if not len(report.probabilities):
        return []
    predicted = report.probabilities.argmax(axis=1)
    confidence = report.probabilities[np.arange(len(predicted)), predicted]
    wrong = np.flatnonzero(predicted != report.labels)
    return [(Path(report.files[i]),
             f"{shown_name(Path(report.files[i]).name)}\ntrue: {shown(report.classes[report.labels[i]], 40)} / "
             f"pred: {shown(report.classes[predicted[i]], 40)} ({confidence[i]:.2f})")
            for i in wrong[np.argsort(-confidence[wrong], kind="stable")]]


def evaluation_pictures(report: EvalReport, image_size: tuple[int, int], resize: str = "squash") -> list[Path]:
    """Write confusion_matrix.png and top_mistakes.png next to the report; [] when it has no folder.

    The mistakes are the most confidently wrong photos, shown at the model's input size and
    titled with their file names (photos.csv beside the report has the full paths).
    """
    if report.out_dir is None:
        return []
    # Class folder names may hold bytes that are not UTF-8, which no font can draw: escape them.
    names = [shown(c, 40) for c in report.classes]
    files = [plots.confusion_matrix(np.asarray(report.confusion), names, report.out_dir / CONFUSION_FILE)]
    images: list[np.ndarray] = []
    titles: list[str] = []
    for file, title in mistakes(report):
        if len(images) == TOP_MISTAKES:
            break
        try:
            images.append(load_image(file, image_size, resize))
        except ImageError:
            continue  # the photo changed or vanished since it was scored
        titles.append(title)
    files.append(plots.top_mistakes(images, titles, report.out_dir / MISTAKES_FILE))
    return files


def class_probabilities(model, images, rows: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(N, classes) probabilities; a 1-unit sigmoid output p becomes [1 - p, p]."""
    return as_class_probabilities(model.predict(batches(images, rows, None, batch_size), verbose=0))


def evaluate(run: str | Path | Run | None = None, data: str | Path | None = None,
             progress: Progress | None = None, tta: bool = False, out: str | Path | None = None) -> EvalReport:
    """Score a run on a labelled folder, or (without `data`) on the run's own held-out photos.

    Without `data` the run's test split is used, or its validation split when it has no test
    split; both were kept out of training, so no training photo is ever scored. With `tta` each
    photo's probabilities are averaged with its mirror image's (prediction.with_mirror_averaged);
    the report then goes to a folder of its own, named with "-tta".

    Args:
        out: the folder for the report, photos.csv and the pictures (default: one under
            <run>/evaluation/): for a run on a read-only disk. Files already there are never
            replaced.

    Raises:
        RunError: no usable run. DataError: nothing to score. PlotError: `out` already holds a
            file the report would write.
    """
    if out is not None:
        written = (REPORT_FILE, PHOTOS_FILE, CONFUSION_FILE, MISTAKES_FILE, LEAKS_FILE)
        clash = [n for n in written if (Path(out) / n).exists()]
        if clash:
            raise PlotError(f"--out {shown(out)} already holds {', '.join(clash)}; pick another folder")
    r = run if isinstance(run, Run) else load_run(run)
    # The decisions the run trained with, from its own copy, apply to the photos it scores.
    config = run_decisions(r.dir, r.config)
    if data is not None:
        prepared = prepare_folder(config, data, classes=r.classes, progress=progress)
        idx = np.arange(len(prepared.files))
        source = str(data)
    else:
        prepared, idx, source = held_out(r, config, progress)
    found_leaks, unchecked = _leaks(r, prepared, idx)
    # Loaded once the photos are there: a wrong folder is said before TensorFlow starts (seconds).
    model = with_mirror_averaged(r.model) if tta else r.model
    probs = class_probabilities(model, prepared.images, prepared.rows[idx])
    labels = prepared.labels[idx]
    s = scores(labels, probs, r.classes)
    report = EvalReport(r.dir, source, r.classes, s["accuracy"], s["balanced_accuracy"], s["macro_f1"],
                        s["log_loss"], s["per_class"], s["confusion"],
                        len(idx), prepared.skipped, [prepared.found.root / prepared.files[i] for i in idx],
                        labels, probs, leaks=found_leaks, leaks_unchecked=unchecked,
                        decision_lines=decided.summary([prepared.found]), decisions=decided.to_dict([prepared.found]))
    name = "held-out" if data is None else _slug(Path(data))
    report.out_dir = Path(out) if out is not None else r.dir / "evaluation" / (name + "-tta" if tta else name)
    report.out_dir.mkdir(parents=True, exist_ok=True)
    if found_leaks:
        found_leaks.write(report.out_dir / LEAKS_FILE)
    else:
        (report.out_dir / LEAKS_FILE).unlink(missing_ok=True)  # left by an earlier evaluation of this set
    write_photos_csv(report, report.out_dir / PHOTOS_FILE)
    write_json(report.out_dir / REPORT_FILE, report.to_dict())
    report.pictures = evaluation_pictures(report, r.config.data.image_size, r.config.data.resize)
    if out is None:  # --out is for a run on a read-only disk: nothing is written into the run
        report.tensorboard_line = pictures_to_tensorboard(r, report)
    return report


def pictures_to_tensorboard(r: Run, report: EvalReport) -> str | None:
    """Write the report's pictures into <run>/tensorboard/evaluation at the step of the run's last
    epoch, tagged with the report folder's name (held-out, validation-3f2a9c, ...); an evaluation
    of the same photos again replaces them. Returns the line saying where, or why not; None when
    the run's TensorBoard logs are off (train.tensorboard false, or tensorboard not installed).

    Never raises: the report is complete without them.
    """
    from catdog.tensorboard_images import evaluation_logs, logs_on, write_images

    if not report.pictures or report.out_dir is None or not logs_on(r.config.train.tensorboard):
        return None
    logs = evaluation_logs(r.dir)
    try:
        epochs = json.loads((r.dir / TRAINED_FILE).read_text())["epochs_done"]
        name = shown(report.out_dir.name, 80)
        write_images(logs, int(epochs) - 1, {f"{name}/{p.stem}": p for p in report.pictures}, key=name)
    except Exception as exc:  # noqa: BLE001
        return f"TensorBoard images not written ({type(exc).__name__}: {first_line(exc)})"
    return f"TensorBoard images: {shown(logs)} (tensorboard --logdir {shown(r.dir.parent)})"


def _leaks(r: Run, prepared: Prepared, idx: np.ndarray) -> tuple[Leaks, bool]:
    """The scored photos that are the run's training photos or filed in two classes (same pixels),
    and whether the run lacked the record of its training photos' hashes."""
    training = read_hashes(r.dir)
    scored = named(prepared, pixel_hashes(prepared, idx), idx)
    return find(scored, training or {}, [scored]), training is None


def _slug(folder: Path) -> str:
    """A folder name for the reports on one data folder, e.g. 'validation-3f2a9c'."""
    return f"{folder.resolve().name}-{folder_digest(folder, 6)}"


def held_out(r: Run, config: Config, progress: Progress | None = None) -> tuple[Prepared, np.ndarray, str]:
    """The photos `evaluate` scores without `data`: (the prepared folder, the indices of the run's test
    split, or of its validation split when it has none, and where they are, in words).

    Raises:
        DataError: the run has no split.json, held out nothing, or its photos are gone.
    """
    record = r.split()
    if record is None:
        raise DataError(f"{r.dir} has no split.json; pass --data DIR to evaluate on a folder")
    which = "test" if record["test"] else "validation"
    if not record[which]:
        raise DataError(f"{r.dir} held out no photos (data.validation_split and data.test_split were 0); "
                        f"pass --data DIR to evaluate on a folder")
    root = record["root"] if which == "test" else record["validation_root"]
    if not Path(root).is_dir():
        raise DataError(f"the run's {which} photos were in {root}, which no longer exists; pass --data DIR")
    prepared = prepare_folder(config, root, classes=r.classes, progress=progress)
    wanted = set(record[which])
    idx = np.array([i for i, f in enumerate(prepared.files) if f in wanted], dtype=np.int64)
    if len(idx) == 0:
        raise DataError(f"none of the run's {which} photos are left in {root}; pass --data DIR")
    return prepared, idx, f"the run's held-out {which} split of {root}"
