"""The decisions file (`data.decisions`): the user's verdict on photos, applied wherever photos are
found with their labels (`prepare`, `train`, `evaluate`).

A CSV file with the header `path,decision,label,reason` (`#` lines are comments; other columns, such
as `catdog review`'s `score`, are ignored), or a YAML list of mappings with those keys. `path` is a
photo's path relative to the photo folder (POSIX slashes) or an absolute path; `decision` is
`exclude` (leave the photo out), `relabel` (file it under class `label`) or `keep` (reviewed,
nothing to do); `reason` is free text for the run's skip list.

Decisions are applied to what `folders.discover` found, before the cache is asked for pixels: an
excluded photo is never opened, and a relabelled one carries its new label from there on. The cache
holds pixels only, never labels, so an edited decisions file cannot meet stale labels there.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from catdog.errors import ConfigError, replacing, shown
from catdog.folders import Found
from catdog.runs import DECISIONS_FILES

DECISIONS = ("exclude", "relabel", "keep")
COLUMNS = ("path", "decision", "label", "reason")
# Paths that match no photo, named in the warning.
EXAMPLES = 3


@dataclass(frozen=True)
class Decision:
    """One row: a photo, what to do with it, and where in the file it was said."""

    path: str
    decision: str
    label: str
    reason: str
    line: int


@dataclass(frozen=True)
class Decisions:
    """A decisions file as read: its rows, and its bytes (copied into a run as they were read)."""

    path: Path
    rows: tuple[Decision, ...]
    data: bytes

    @property
    def yaml(self) -> bool:
        return self.path.suffix.lower() in (".yaml", ".yml")


@dataclass(frozen=True)
class Applied:
    """What a decisions file did to one folder's photos."""

    decisions: Decisions
    excluded: list[tuple[str, str]]             # (photo, reason)
    relabelled: list[tuple[str, str, str, str]]  # (photo, old class, new class, reason)
    matched: frozenset[int]                      # positions in decisions.rows that named a photo here


def read(path: str | os.PathLike) -> Decisions:
    """Read and check a decisions file (CSV, or YAML by its .yaml/.yml name).

    Raises:
        ConfigError: the file is missing or unreadable, or a row is malformed; naming the file, the
            line and what was expected.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"data.decisions: file not found: {shown(path)} (expected a CSV file with the header "
                          f"{','.join(COLUMNS)}, or a YAML list of those keys)") from None
    except IsADirectoryError:
        raise ConfigError(f"data.decisions: {shown(path)} is a folder; expected a decisions file "
                          f"(e.g. photos-review/decisions.csv)") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{shown(path)}: not UTF-8 text (byte {exc.start}); save the decisions file "
                          f"as UTF-8") from None
    raw = _yaml_rows(path, text) if path.suffix.lower() in (".yaml", ".yml") else _csv_rows(path, text)
    rows: list[Decision] = []
    seen: dict[str, Decision] = {}
    for line, fields in raw:
        row = _checked(path, line, fields)
        first = seen.setdefault(row.path, row)
        if (first.decision, first.label) != (row.decision, row.label):
            said = f"{first.decision} {first.label}".strip()
            raise ConfigError(f"{shown(path)} line {line}: {shown(row.path)} is decided twice, differently "
                              f"(line {first.line} says {said}); keep one row")
        rows.append(row)
    return Decisions(path, tuple(rows), data)


def _csv_rows(path: Path, text: str) -> list[tuple[int, dict[str, str]]]:
    # A comment line is blanked, not dropped, so the reader's line numbers stay the file's.
    lines = ["\n" if line.lstrip().startswith("#") else line for line in text.splitlines(keepends=True)]
    reader = csv.reader(io.StringIO("".join(lines), newline=""))
    header: list[str] | None = None
    rows = []
    try:
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            if header is None:
                header = [f.strip().lower() for f in fields]
                missing = [c for c in ("path", "decision") if c not in header]
                if missing:
                    raise ConfigError(f"{shown(path)} line {reader.line_num}: the header has no {' or '.join(missing)} "
                                      f"column; expected the header {','.join(COLUMNS)}")
                continue
            if len(fields) > len(header):
                raise ConfigError(f"{shown(path)} line {reader.line_num}: {len(fields)} fields, but the header names "
                                  f"{len(header)}; quote a path or reason that holds a comma")
            rows.append((reader.line_num, dict(zip(header, fields, strict=False))))
    except csv.Error as exc:
        raise ConfigError(f"{shown(path)} line {reader.line_num}: not CSV ({exc})") from None
    if header is None:
        raise ConfigError(f"{shown(path)}: no header row; expected {','.join(COLUMNS)} as the first line")
    return rows


def _yaml_rows(path: Path, text: str) -> list[tuple[int, dict[str, str]]]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{shown(path)}{where}: not YAML ({getattr(exc, 'problem', None) or exc})") from None
    finally:
        loader.dispose()
    if data is None:
        return []
    if not isinstance(data, list) or node is None:
        raise ConfigError(f"{shown(path)}: expected a list of mappings with the keys {', '.join(COLUMNS)}; "
                          f"got a {type(data).__name__}")
    rows = []
    for item, item_node in zip(data, node.value, strict=True):
        line = item_node.start_mark.line + 1
        if not isinstance(item, dict):
            raise ConfigError(f"{shown(path)} line {line}: expected a mapping with the keys {', '.join(COLUMNS)}; "
                              f"got {shown(repr(item), 60)}")
        fields = {}
        for key, value in item.items():
            if key in COLUMNS and value is not None and not isinstance(value, (str, int, float)):
                raise ConfigError(f"{shown(path)} line {line}: {key} must be text; got {shown(repr(value), 60)}")
            fields[str(key)] = "" if value is None else str(value)
        rows.append((line, fields))
    return rows


def _checked(path: Path, line: int, fields: dict[str, str]) -> Decision:
    """One row as a Decision, or a ConfigError naming what is wrong with it."""
    where = f"{shown(path)} line {line}"
    photo = (fields.get("path") or "").strip()
    decision = (fields.get("decision") or "").strip().lower()
    label = (fields.get("label") or "").strip()
    if not photo:
        raise ConfigError(f"{where}: no path; expected a photo's path relative to the photo folder "
                          f"(e.g. cats/cat.12.jpg) or an absolute path")
    if decision not in DECISIONS:
        raise ConfigError(f"{where}: decision must be one of {', '.join(DECISIONS)}; got {shown(decision or '')!r}")
    if decision == "relabel" and not label:
        raise ConfigError(f"{where}: relabel needs a label (the class to file {shown(photo)} under)")
    return Decision(_normal(photo), decision, label, (fields.get("reason") or "").strip(), line)


def _normal(photo: str) -> str:
    """A path as the file says it, with `./` and doubled slashes taken out (absolute paths kept absolute)."""
    return os.path.normpath(photo) if os.path.isabs(photo) else PurePosixPath(photo).as_posix()


def apply(found: Found, decisions: Decisions, own_classes: bool = True) -> Found:
    """`found` with the excluded photos left out (listed in `ignored` with their reason) and the
    relabelled ones under their new class; `Found.decided` says what was done.

    Args:
        own_classes: the folder's classes are its own (training, prepare), so a class that the
            decisions leave without a photo is refused; False where the classes are a run's.

    Raises:
        ConfigError: a relabel names a class that is not one of `found.classes`, or the decisions
            leave one of the folder's classes without a photo.
    """
    by_path = {row.path: i for i, row in enumerate(decisions.rows)}
    roots = {os.path.normpath(found.root.absolute()), os.path.normpath(found.root.resolve())}
    files, labels, ignored = [], [], list(found.ignored)
    excluded, relabelled, matched = [], [], set()
    for rel, label in zip(found.files, found.labels, strict=True):
        i = by_path.get(rel)
        if i is None:
            i = next((by_path[p] for r in roots if (p := os.path.join(r, rel)) in by_path), None)
        if i is None:
            files.append(rel)
            labels.append(label)
            continue
        row = decisions.rows[i]
        matched.add(i)
        if row.decision == "exclude":
            excluded.append((rel, row.reason))
            ignored.append((rel, "excluded by decisions file" + (f": {row.reason}" if row.reason else "")))
            continue
        if row.decision == "relabel":
            if row.label not in found.classes:
                raise ConfigError(f"{shown(decisions.path)} line {row.line}: relabel {shown(rel)} to "
                                  f"{shown(row.label)!r}, which is not a class of {shown(found.root)} "
                                  f"(classes: {', '.join(shown(c) for c in found.classes)})")
            new = found.classes.index(row.label)
            if new != label:
                relabelled.append((rel, found.classes[label], row.label, row.reason))
            label = new
        files.append(rel)
        labels.append(label)
    if own_classes:
        for index, name in enumerate(found.classes):
            if index in found.labels and index not in labels:
                raise ConfigError(f"{shown(decisions.path)}: the decisions leave class {shown(name)!r} of "
                                  f"{shown(found.root)} without a photo (all {found.labels.count(index)} excluded "
                                  f"or relabelled); a classifier needs photos of every class it answers with")
    applied = Applied(decisions, excluded, relabelled, frozenset(matched))
    return dataclasses.replace(found, files=files, labels=labels, ignored=sorted(ignored), decided=applied)


def summary(folders: list[Found]) -> list[str]:
    """The line saying what the decisions did to these folders (one file), and a warning naming the
    paths that match no photo in any of them; [] when no decisions file was applied."""
    applied = [f.decided for f in folders if f.decided is not None]
    if not applied:
        return []
    decisions = applied[0].decisions
    matched = frozenset().union(*(a.matched for a in applied))
    unmatched = [row.path for i, row in enumerate(decisions.rows) if i not in matched]
    excluded = sum(len(a.excluded) for a in applied)
    relabelled = sum(len(a.relabelled) for a in applied)
    lines = [f"decisions {shown(decisions.path)}: {excluded} excluded, {relabelled} relabelled "
             f"({len(unmatched)} {'path' if len(unmatched) == 1 else 'paths'} matched no photo)"]
    if unmatched:
        where = " or ".join(shown(f.root) for f in folders)
        lines.append(f"warning: {len(unmatched)} of the {len(decisions.rows)} paths in {shown(decisions.path)} name no "
                     f"photo in {where}, e.g. {', '.join(shown(p) for p in unmatched[:EXAMPLES])}; check them for "
                     f"typos (paths are relative to the photo folder), unless they belong to another folder")
    return lines


def notes(found: Found) -> list[tuple[str, str]]:
    """The run's skip-list lines for the relabelled photos: (photo, "relabelled cats -> dogs ...")."""
    if found.decided is None:
        return []
    return [(rel, f"relabelled {old} -> {new} by decisions file" + (f": {reason}" if reason else ""))
            for rel, old, new, reason in found.decided.relabelled]


def to_dict(folders: list[Found]) -> dict | None:
    """What the decisions did, for a JSON report; None when no decisions file was applied."""
    applied = [f.decided for f in folders if f.decided is not None]
    if not applied:
        return None
    matched = frozenset().union(*(a.matched for a in applied))
    return {"file": str(applied[0].decisions.path),
            "excluded": [{"path": p, "reason": r} for a in applied for p, r in a.excluded],
            "relabelled": [{"path": p, "from": o, "to": n, "reason": r}
                           for a in applied for p, o, n, r in a.relabelled],
            "unmatched": [row.path for i, row in enumerate(applied[0].decisions.rows) if i not in matched]}


def save_copy(decisions: Decisions, run_dir: Path) -> Path:
    """Write the decisions file, as it was read, into the run folder (decisions.csv or .yaml)."""
    path = run_dir / DECISIONS_FILES[1 if decisions.yaml else 0]
    tmp = path.with_name(path.name + ".tmp")
    with replacing(path, tmp):
        tmp.write_bytes(decisions.data)
    return path

