"""What `catdog review` writes: its folder, issues.csv, decisions.csv, contact sheets and a summary.

The folder is the review's own (default PHOTOS-review beside the photo folder PHOTOS): never inside
the photo folder, where it would become a class, and an existing review is replaced only with
`force`, file by file (anything else in the folder is left alone). No photo is touched.

decisions.csv holds the review's suggestions in the format `data.decisions` reads (path, decision,
label, reason; `#` lines are comments; the extra issue and score columns are ignored by the reader):
the user edits it, then trains with `--set data.decisions=PHOTOS-review/decisions.csv`.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from catdog.errors import ReviewError, replacing, shown

if TYPE_CHECKING:
    from catdog.review import Finding, Review

ISSUES_FILE = "issues.csv"
DECISIONS_FILE = "decisions.csv"
SUMMARY_FILE = "summary.txt"
SKIPPED_FILE = "skipped.txt"
# One contact sheet per kind of issue, in this order in issues.csv.
SHEETS = {"mislabel": "mislabels.png", "duplicate": "copies.png", "near_duplicate": "copies.png",
          "outlier": "outliers.png"}
OURS = (ISSUES_FILE, DECISIONS_FILE, SUMMARY_FILE, SKIPPED_FILE, *dict.fromkeys(SHEETS.values()))
# Photos on a sheet: more make thumbnails nobody reads; issues.csv lists them all.
SHEET_PHOTOS = 48
SHEET_SIZE = (160, 160)


def review_dir(root: Path, out: str | Path | None, force: bool) -> Path:
    """The folder a review of photo folder `root` writes, checked before any work is done.

    Raises:
        ReviewError: it is inside the photo folder, is a file, or holds a review and `force` is off.
    """
    root = root.resolve()
    folder = Path(out) if out is not None else root.with_name(f"{root.name}-review")
    where = folder.resolve()
    if where == root or root in where.parents:
        raise ReviewError(f"--out {shown(folder)} is inside the photo folder {shown(root)}, where it would be "
                          f"read as a class; pick a folder outside it")
    if where.exists() and not where.is_dir():
        raise ReviewError(f"--out {shown(folder)} is a file; pick a folder")
    if not force and where.is_dir() and any(where.iterdir()):
        raise ReviewError(f"{shown(folder)} already holds files (an earlier review?); pass --force to replace "
                          f"the review's files there, or --out another folder")
    return folder


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with replacing(path, tmp):
        tmp.write_text(text, encoding="utf-8")


def _csv(rows: list[list[object]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def ordered(rv: Review) -> list[Finding]:
    """The findings by kind (sheet order), each kind in rank order."""
    kinds = list(SHEETS)
    return sorted(rv.findings, key=lambda f: kinds.index(f.kind))


def issue_rows(rv: Review) -> list[list[object]]:
    rows: list[list[object]] = [["path", "issue", "score", "given_label", "suggested_label", "other_copy", "note"]]
    for f in ordered(rv):
        p = rv.photos[f.index]
        rows.append([p.path, f.kind, f"{f.score:.4f}", rv.classes[p.label],
                     "" if f.suggested is None else rv.classes[f.suggested],
                     "" if f.other is None else rv.photos[f.other].path, f.note])
    return rows


def decision_rows(rv: Review) -> list[list[object]]:
    """One suggestion per photo: leave out a copy or an outlier, relabel a likely mislabel (leaving out wins)."""
    rows: list[list[object]] = [["path", "decision", "label", "reason", "issue", "score"]]
    seen: set[int] = set()
    first = ("duplicate", "near_duplicate", "outlier", "mislabel")
    for f in sorted(rv.findings, key=lambda f: first.index(f.kind)):
        if f.index in seen:
            continue
        seen.add(f.index)
        p = rv.photos[f.index]
        if f.kind == "mislabel" and f.suggested is not None:
            rows.append([p.path, "relabel", rv.classes[f.suggested],
                         f"review: filed as {rv.classes[p.label]}, looks like {rv.classes[f.suggested]}",
                         f.kind, f"{f.score:.4f}"])
        elif f.kind == "outlier":
            rows.append([p.path, "exclude", "", "review: unlike the photos of every class", f.kind, f"{f.score:.4f}"])
        else:
            other = rv.photos[f.other].path if f.other is not None else ""
            what = "exact copy" if f.kind == "duplicate" else "near copy"
            rows.append([p.path, "exclude", "", f"review: {what} of {other}" + (f" ({f.note})" if f.note else ""),
                         f.kind, f"{f.score:.4f}"])
    return rows


DECISIONS_HEADER = """\
# catdog review's suggestions: edit them, then train with --set data.decisions=THIS_FILE.
# decision: exclude (leave the photo out), relabel (file it under `label`), keep (nothing to do).
# Check each row against the contact sheets; delete or change a row to keep a photo as it is.
"""


def summary_lines(rv: Review, folder: Path | None = None) -> list[str]:
    """The short summary the CLI prints (and summary.txt holds)."""
    accuracy = float(np.mean(rv.fold_accuracy)) if rv.fold_accuracy else float("nan")
    loud = rv.loud()
    mislabels = rv.of("mislabel")
    lines = [f"reviewed {len(rv.photos)} photos ({', '.join(rv.classes)}) in {rv.seconds:.0f} s: {rv.folds} folds of "
             f"{rv.epochs} epochs, out-of-fold accuracy {accuracy:.3f}",
             f"likely mislabelled: {len(mislabels)}",
             f"exact copies: {len(rv.of('duplicate'))}; near copies: {len(rv.of('near_duplicate'))}",
             f"outliers: {len(rv.of('outlier'))}"]
    if loud:
        f = loud[0]
        lines.append(f"warning: {len(loud)} {'copy is' if len(loud) == 1 else 'copies are'} in different classes "
                     f"or splits, e.g. {shown(rv.photos[f.index].path)} = {shown(rv.photos[f.other or 0].path)} "
                     f"({f.note})")
    if rv.skipped:
        lines.append(f"skipped: {len(rv.skipped)} unreadable files"
                     + (f" (list in {shown(folder / SKIPPED_FILE)})" if folder else ""))
    return lines


def write(rv: Review, folder: Path) -> list[Path]:
    """Write the review's files into `folder` (checked by `review_dir`); returns them."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in ((ISSUES_FILE, _csv(issue_rows(rv))),
                       (DECISIONS_FILE, DECISIONS_HEADER + _csv(decision_rows(rv))),
                       (SKIPPED_FILE, "".join(f"{shown(f, 10_000)}: {why}\n" for f, why in rv.skipped))):
        _write_text(folder / name, text)
        written.append(folder / name)
    written += sheets(rv, folder)
    _write_text(folder / SUMMARY_FILE, "\n".join(summary_lines(rv, folder)) + "\n")
    written.append(folder / SUMMARY_FILE)
    return written


def _picture(rv: Review, i: int) -> np.ndarray:
    """A photo for a sheet: decoded again, larger than the review's small images, where it still reads."""
    from catdog.errors import ImageError
    from catdog.images import load_image

    path = Path(rv.photos[i].path)
    try:
        return load_image(path if path.is_absolute() else rv.root / path, SHEET_SIZE, "pad")
    except (ImageError, OSError):
        return rv.images[i]


def sheets(rv: Review, folder: Path) -> list[Path]:
    """One contact sheet per kind of issue, in rank order."""
    from catdog import plots

    def name(i: int) -> str:
        return shown(rv.photos[i].path.rsplit("/", 1)[-1], 24)

    out = []
    ranked = rv.of("mislabel")[:SHEET_PHOTOS]
    out.append(plots.contact_sheet(
        [_picture(rv, f.index) for f in ranked],
        [f"{i}. {name(f.index)}\ngiven {rv.classes[rv.photos[f.index].label]} -> {rv.classes[f.suggested or 0]}"
         f" ({f.score:.2f})" for i, f in enumerate(ranked, 1)],
        folder / SHEETS["mislabel"], f"Likely mislabelled, most likely first ({len(rv.of('mislabel'))} in all)",
        "No likely mislabels found."))
    copies = sorted(rv.of("duplicate") + rv.of("near_duplicate"), key=lambda f: (not f.note, -f.score))
    copies = copies[:SHEET_PHOTOS // 2]
    images, titles = [], []
    for i, f in enumerate(copies, 1):
        for j in (f.other or 0, f.index):
            images.append(_picture(rv, j))
            titles.append(f"{i}. {name(j)}\n{rv.classes[rv.photos[j].label]}, {rv.photos[j].part}")
    out.append(plots.contact_sheet(images, titles, folder / SHEETS["duplicate"],
                                   "Copies side by side, different classes or splits first", "No copies found."))
    strange = rv.of("outlier")[:SHEET_PHOTOS]
    out.append(plots.contact_sheet(
        [_picture(rv, f.index) for f in strange],
        [f"{i}. {name(f.index)}\n{rv.classes[rv.photos[f.index].label]} ({f.score:.2f})"
         for i, f in enumerate(strange, 1)],
        folder / SHEETS["outlier"], "Outliers: unlike the photos of every class, strangest first",
        "No outliers found."))
    return out
