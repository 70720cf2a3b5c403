"""`catdog review`: likely mislabels, copies and outliers in a photo folder, found before training.

- Mislabels: every photo gets out-of-sample class probabilities from k-fold training of a quick
  model built from the config (each fold's model never saw the photos it scores), and cleanlab's
  confident learning (`find_label_issues`, ranked by self-confidence) picks and ranks the photos
  whose given label those probabilities doubt.
- Outliers: each fold's network also gives its penultimate-layer features; cleanlab's
  `OutOfDistribution` fitted on the fold's training photos scores the held-out ones by their
  distance to their nearest neighbours there.
- Exact copies: the same pixels after decoding (catdog.leaks's BLAKE2b of the cached rows);
  near copies (resized, recompressed, lightly cropped): perceptual hashes (imagehash's pHash) a few
  bits apart. Copies in different classes, or in different splits (the training and the validation
  folder, or the held-out part of one folder that `train` would use), are flagged loudest.

The photos are decoded once, through the prepared-image cache. Nothing here moves, renames or
deletes a photo: the review writes its own folder (catdog.review_files), and the user decides.
cleanlab and imagehash are the optional extra catdog[review], imported when a review starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from catdog.cache import Prepared, Progress
from catdog.config import Config
from catdog.errors import DataError, ReviewError, shown
from catdog.leaks import pixel_hashes
from catdog.review_files import review_dir, write
from catdog.splits import data_dir

Report = Callable[[str], None]
MISSING_EXTRA = "catdog review needs cleanlab and imagehash: pip install 'catdog[review]'"
# The quick model's schedule, put before the user's --set (which win): a review trains `folds`
# models, so each gets a few epochs on small images (docs/review.md measures what this finds and
# how long it takes).
QUICK = ("train.epochs=20", "data.image_size=96")
# A crop of a few percent shifts a whole photo's pHash by 8 to 14 of its 64 bits, as far as two
# different photos can be; so each photo is also hashed cropped by 5% at each corner and at the
# centre (top, left, share kept), and a photo whose hash is close to another's crop is its copy.
CROPS = ((0.0, 0.0, 0.95), (0.0, 0.05, 0.95), (0.05, 0.0, 0.95), (0.05, 0.05, 0.95), (0.025, 0.025, 0.95))
# Hamming distance (of 64 bits) at or below which two photos are near copies: planted copies came
# within 2, different photos no closer than 8 (docs/review.md).
NEAR_BITS = 4
# A held-out photo is an outlier when its fold's features put it further from the training photos
# than every one of those training photos is from the others, by a margin: its score is below this
# share of their lowest score. A quantile of theirs would flag that share of any folder, however
# clean, and their lowest alone about one held-out photo a fold.
OUTLIER_MARGIN = 0.5


@dataclass
class Photo:
    """One usable photo under review."""

    path: str    # relative to the --data folder (POSIX), or absolute for another folder's photo
    label: int
    part: str    # where `train` would put it: train, validation or test


@dataclass
class Finding:
    """One issue with one photo; `other` is the other copy of a duplicate."""

    kind: str        # mislabel, duplicate, near_duplicate or outlier
    index: int       # position in Review.photos
    score: float     # higher is more certain; in [0, 1]
    suggested: int | None = None
    other: int | None = None
    note: str = ""


@dataclass
class Review:
    """What a review found, and the photos it looked at."""

    root: Path
    classes: list[str]
    photos: list[Photo]
    images: np.ndarray                       # the cached pixels of every photo, in `photos` order
    hashes: list[str]                        # catdog.leaks's digest of those pixels
    skipped: list[tuple[str, str]]
    findings: list[Finding] = field(default_factory=list)
    folds: int = 0
    epochs: int = 0
    fold_accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0
    out_dir: Path | None = None
    files: list[Path] = field(default_factory=list)

    def of(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def loud(self) -> list[Finding]:
        """Copies in different classes or different splits."""
        return [f for f in self.findings if f.kind in ("duplicate", "near_duplicate") and f.note]


def missing_extra() -> str | None:
    """The line to show when catdog[review]'s packages cannot be imported, else None."""
    try:
        import cleanlab  # noqa: F401
        import imagehash  # noqa: F401
    except ImportError:
        return MISSING_EXTRA
    return None


def gather(config: Config, data: str | Path | None, progress: Progress | None = None) -> Review:
    """The photos of the config's folders (--data or data.dir, and data.validation_dir), prepared once.

    Raises:
        DataError: a missing or empty folder, a single class, a class without usable photos.
    """
    from catdog.training import load_data

    sp = load_data(config, data, progress)
    parts = {**dict.fromkeys(map(int, sp.train_idx), "train"), **dict.fromkeys(map(int, sp.test_idx), "test")}
    if sp.val is sp.train:
        parts.update(dict.fromkeys(map(int, sp.val_idx), "validation"))
    photos = [Photo(f, int(lab), parts[i]) for i, (f, lab) in enumerate(zip(sp.train.files, sp.train.labels,
                                                                             strict=True))]
    images = [_pixels(sp.train)]
    hashes = pixel_hashes(sp.train)
    skipped = list(sp.train.skipped)
    if sp.val is not sp.train:
        root = sp.val.found.root.resolve()
        photos += [Photo((root / f).as_posix(), int(lab), "validation") for f, lab in zip(sp.val.files, sp.val.labels,
                                                                                          strict=True)]
        images.append(_pixels(sp.val))
        hashes += pixel_hashes(sp.val)
        skipped += [(str(root / f), why) for f, why in sp.val.skipped]
    return Review(sp.train.found.root.resolve(), sp.train.classes, photos, np.concatenate(images), hashes,
                  skipped)


def _pixels(prepared: Prepared) -> np.ndarray:
    return prepared.take(np.arange(len(prepared.files)))


def _groups(hashes: list[str]) -> list[list[int]]:
    by_hash: dict[str, list[int]] = {}
    for i, h in enumerate(hashes):
        by_hash.setdefault(h, []).append(i)
    return [g for g in by_hash.values() if len(g) > 1]


def find_copies(review: Review, max_bits: int = NEAR_BITS) -> None:
    """Add exact and near copies to the review's findings (one finding per photo beyond the first)."""
    exact = _groups(review.hashes)
    same: set[tuple[int, int]] = set()
    for group in exact:
        for j in group[1:]:
            review.findings.append(Finding("duplicate", j, 1.0, other=group[0], note=_where(review, group[0], j)))
            same.add((group[0], j))
    first = {i: g[0] for g in exact for i in g}
    bits = perceptual_hashes(review.images)
    for a, b, d in near_pairs(bits, max_bits):
        a, b = first.get(a, a), first.get(b, b)
        if a == b or (a, b) in same:
            continue
        same.add((a, b))
        review.findings.append(Finding("near_duplicate", b, 1 - d / 64, other=a,
                                       note=_where(review, a, b)))


def _where(review: Review, a: int, b: int) -> str:
    """What makes a pair of copies worse than a wasted photo: different classes, different splits."""
    pa, pb = review.photos[a], review.photos[b]
    notes = []
    if pa.label != pb.label:
        notes.append(f"different classes ({review.classes[pa.label]}, {review.classes[pb.label]})")
    if pa.part != pb.part:
        notes.append(f"different splits ({pa.part}, {pb.part})")
    return "; ".join(notes)


def perceptual_hashes(images: np.ndarray) -> np.ndarray:
    """imagehash's 64-bit pHash of each image and of its CROPS, as (N, 1 + len(CROPS), 8) uint8."""
    import imagehash
    from PIL import Image

    def bits(a: np.ndarray) -> np.ndarray:
        return np.packbits(imagehash.phash(Image.fromarray(a)).hash.ravel())

    out = np.zeros((len(images), 1 + len(CROPS), 8), dtype=np.uint8)
    for i, im in enumerate(images):
        h, w = im.shape[:2]
        out[i, 0] = bits(im)
        for k, (top, left, keep) in enumerate(CROPS, start=1):
            y, x = round(top * h), round(left * w)
            out[i, k] = bits(im[y:y + round(keep * h), x:x + round(keep * w)])
    return out


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def near_pairs(hashes: np.ndarray, max_bits: int) -> list[tuple[int, int, int]]:
    """(a, b, distance) for every pair a < b whose whole-photo hashes, or one's whole-photo hash and
    a crop of the other's, differ in at most `max_bits` bits."""
    whole, crops = hashes[:, 0], hashes[:, 1:]
    out = []
    for a in range(len(hashes) - 1):
        d = _POPCOUNT[np.bitwise_xor(whole[a + 1:], whole[a])].sum(axis=1, dtype=np.int64)
        if crops.shape[1]:
            # b a crop of a (a's crop looks like b whole), or a a crop of b.
            d = np.minimum(d, _POPCOUNT[np.bitwise_xor(whole[a + 1:, None], crops[a])].sum(axis=2).min(axis=1))
            d = np.minimum(d, _POPCOUNT[np.bitwise_xor(crops[a + 1:], whole[a])].sum(axis=2).min(axis=1))
        out += [(a, a + 1 + int(k), int(d[k])) for k in np.flatnonzero(d <= max_bits)]
    return out


def out_of_fold(config: Config, review: Review, folds: int, report: Report,
                batch_progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each photo's class probabilities from the fold model that never saw it, and how much stranger
    it is than its fold's training photos (cleanlab's OutOfDistribution on that model's penultimate
    features; above 0: an outlier).

    Returns:
        (probabilities (N, classes), strangeness (N,))
    """
    import keras
    from cleanlab.outlier import OutOfDistribution

    from catdog.batches import batches, targets
    from catdog.callbacks import ctrl_c_between_batches
    from catdog.devices import dtype_policy, resolve_precision
    from catdog.models import build_model
    from catdog.optimizers import compile_model

    labels = np.array([p.label for p in review.photos])
    counts = np.bincount(labels, minlength=len(review.classes))
    if (few := int(counts.min())) < folds:
        name = review.classes[int(counts.argmin())]
        raise DataError(f"class {shown(name)} has {few} usable photos: too few for --folds {folds} (each fold "
                        f"holds out some of every class); add photos or lower --folds")
    sigmoid = config.model.head == "sigmoid"
    y = targets(labels, len(review.classes), sigmoid)
    probs = np.zeros((len(labels), len(review.classes)), dtype=np.float64)
    strangeness = np.zeros(len(labels), dtype=np.float64)
    t = config.train
    fold_of = fold_numbers(labels, folds, config.seed)
    for k in range(1, folds + 1):
        fit_idx, held = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
        start = time.perf_counter()
        keras.backend.clear_session()
        train_batches = batches(review.images, fit_idx, y, t.batch_size, shuffle=True, seed=config.seed + k)
        with dtype_policy(resolve_precision(t.precision)):
            model = build_model(config, len(review.classes), pretrained=False)
            compile_model(model, config, len(train_batches), t.epochs)
        # Ctrl-C between batches, not inside TensorFlow's C++ (catdog.callbacks.ctrl_c_between_batches).
        with ctrl_c_between_batches() as ctrl_c:
            model.fit(train_batches, epochs=t.epochs, verbose=0, shuffle=False,
                      callbacks=[ctrl_c, *([_BatchProgress(batch_progress, len(train_batches))] if batch_progress
                                           else [])])
        features = keras.Model(model.inputs, [model.get_layer("output").input, model.outputs[0]])
        fit_feats, _ = _predict(features, review.images, fit_idx, t.batch_size)
        held_feats, held_out = _predict(features, review.images, held, t.batch_size)
        probs[held] = np.column_stack([1 - held_out[:, 0], held_out[:, 0]]) if sigmoid else held_out
        ood = OutOfDistribution()
        fit_scores = ood.fit_score(features=fit_feats, verbose=False)
        threshold = float(np.min(fit_scores))
        # How far below the threshold, as a share of it (OutOfDistribution's scores lie in [0, 1]).
        strangeness[held] = (threshold - ood.score(features=held_feats)) / max(threshold, 1e-12)
        accuracy = float(np.mean(probs[held].argmax(axis=1) == labels[held]))
        review.fold_accuracy.append(accuracy)
        report(f"fold {k}/{folds}: {t.epochs} epochs on {len(fit_idx)} photos, accuracy {accuracy:.3f} on its "
               f"{len(held)} held-out photos ({time.perf_counter() - start:.0f} s)")
    return probs, strangeness


def fold_numbers(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each photo's fold (1 to `folds`): every class shuffled with the seed and dealt out in turn,
    so each fold holds out its share of every class."""
    rng = np.random.default_rng(seed)
    out = np.zeros(len(labels), dtype=np.int64)
    dealt = 0
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        out[idx[rng.permutation(len(idx))]] = (dealt + np.arange(len(idx))) % folds + 1
        dealt += len(idx)
    return out


def _predict(model, images: np.ndarray, idx: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    parts = [model.predict_on_batch(images[idx[i:i + batch_size]]) for i in range(0, len(idx), batch_size)]
    return (np.concatenate([np.asarray(p[0], dtype=np.float32) for p in parts]),
            np.concatenate([np.asarray(p[1], dtype=np.float64) for p in parts]))


class _BatchProgress:
    """A Keras callback feeding (done, total) batches of an epoch to a progress callback."""

    def __new__(cls, progress: Progress | None, total: int):
        import keras

        class Feed(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None) -> None:
                if progress is not None:
                    progress(batch + 1, total)

        return Feed()


def find_mislabels(review: Review, probs: np.ndarray) -> None:
    """Add cleanlab's label issues, ranked by self-confidence, to the review's findings."""
    from cleanlab.filter import find_label_issues

    labels = np.array([p.label for p in review.photos])
    ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
    for i in ranked:
        i = int(i)
        review.findings.append(Finding("mislabel", i, float(1 - probs[i, labels[i]]),
                                       suggested=int(probs[i].argmax())))


def find_outliers(review: Review, strangeness: np.ndarray) -> None:
    """Add the photos whose strangeness passes OUTLIER_MARGIN, strangest first."""
    for i in np.argsort(-strangeness, kind="stable"):
        if strangeness[i] <= OUTLIER_MARGIN:
            break
        review.findings.append(Finding("outlier", int(i), float(min(1.0, strangeness[i]))))


def review(config: Config, data: str | Path | None = None, out: str | Path | None = None, folds: int = 5,
           force: bool = False, report: Report | None = None, progress: Progress | None = None,
           batch_progress: Progress | None = None) -> Review:
    """Find likely mislabels, exact and near copies, and outliers among a config's photos.

    Args:
        config: the resolved config; its model, trained for train.epochs, is the quick model (the CLI
            puts `QUICK` before the user's --set).
        data: the photo folder (default data.dir); data.validation_dir is reviewed with it.
        out: the review's folder (default PHOTOS-review beside the photo folder PHOTOS).
        folds: how many models are trained, each scoring the photos the others train on.
        force: replace the review files of an earlier review in `out`.
        report: one-line status messages (one per fold).

    Raises:
        ReviewError: catdog[review] is not installed, --folds below 2, or `out` is unusable (see
            `review_files.review_dir`). DataError: see `gather`.
    """
    if (line := missing_extra()) is not None:
        raise ReviewError(line)
    if folds < 2:
        raise ReviewError(f"--folds must be at least 2 (each photo is scored by a model trained on the others); "
                          f"got {folds}")
    folder = review_dir(data_dir(config, data), out, force)
    say = report or (lambda _m: None)
    start = time.perf_counter()
    rv = gather(config, data, progress)
    say(f"reviewing {len(rv.photos)} photos of {len(rv.classes)} classes ({', '.join(rv.classes)}); "
        f"{len(rv.skipped)} skipped")
    find_copies(rv)
    probs, strangeness = out_of_fold(config, rv, folds, say, batch_progress)
    rv.folds, rv.epochs = folds, config.train.epochs
    find_mislabels(rv, probs)
    find_outliers(rv, strangeness)
    rv.seconds = time.perf_counter() - start
    rv.out_dir, rv.files = folder, write(rv, folder)
    return rv
