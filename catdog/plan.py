"""What a config asks of one training run, checked before any photo is read: whether it
validates, its phases (a frozen backbone, then fine-tuning; the sizes of train.image_sizes), and
how the classes weigh.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

from catdog.config import Config
from catdog.errors import ConfigError
from catdog.optimizers import check_schedule, compile_model
from catdog.splits import check_fractions


def validated(config: Config) -> bool:
    """Whether training holds photos out to validate on (a split or a separate folder)."""
    return config.data.validation_split > 0 or bool(config.data.validation_dir)


def check_validation(config: Config) -> None:
    """Refuse settings that choose or stop by validation when no photos are held out for it.

    Raises:
        ConfigError: keep_best, early_stopping or the plateau schedule without validation photos.
    """
    if validated(config):
        return
    t = config.train
    for key, on, off in (("train.keep_best", t.keep_best, "train.keep_best=false"),
                         ("train.early_stopping", t.early_stopping, "train.early_stopping=0"),
                         ("train.schedule plateau", t.schedule == "plateau", "train.schedule=cosine")):
        if on:
            raise ConfigError(f"{key} needs validation photos, but data.validation_split is 0 and no "
                              f"data.validation_dir is set; hold some out or set {off}")


def check_config(config: Config) -> list[Phase]:
    """The checks that need more than one key, made before any data is read; returns the phases.

    Raises:
        ConfigError: the phases, the schedule or the validation settings do not fit together.
    """
    plan = phases(config)
    for start, end in sorted({schedule_span(plan, i) for i in range(len(plan))}):
        check_schedule(config.train, end - start, warmup=start == 0)
    check_validation(config)
    if not config.data.validation_dir:  # a separate folder replaces validation_split
        check_fractions(config.data.validation_split, config.data.test_split)
    return plan


# Classes whose training photos differ by more than this factor get a warning: a model can score
# well on accuracy by favouring the larger class.
UNEVEN_RATIO = 1.5


def class_weights(config: Config, classes: list[str], counts: list[int],
                  root: str | Path = "") -> dict[int, float] | None:
    """train.class_weight as Keras's class_weight ({class index: weight}), or None when off.

    "balanced" weighs class c by n / (classes x n_c) over the training photos, so every class
    contributes the same total weight to the loss.

    Raises:
        ConfigError: the mapping names a class that is not among the classes found.
    """
    wanted = config.train.class_weight
    if wanted is None:
        return None
    if wanted == "balanced":
        total = sum(counts)
        return {i: total / (len(classes) * n) for i, n in enumerate(counts) if n}
    unknown = [name for name in wanted if name not in classes]
    if unknown:
        where = f" in {root}" if root else ""
        raise ConfigError(f"train.class_weight names {', '.join(map(repr, unknown))}, not a class of the photos; "
                          f"the classes found{where} are {', '.join(classes)}")
    return {i: float(wanted.get(name, 1.0)) for i, name in enumerate(classes)}


def uneven_warning(classes: list[str], counts: list[int], weighted: bool) -> str | None:
    """One line when the largest class has more than UNEVEN_RATIO times the photos of the smallest."""
    small, large = min(counts), max(counts)
    if small * UNEVEN_RATIO >= large:
        return None
    ratio = f"{large / small:.1f}x" if small else "one class has none"
    counted = ", ".join(f"{c} {n}" for c, n in zip(classes, counts, strict=True))
    advice = ("train.class_weight evens out their weight in the loss" if weighted else
              "set train.class_weight=balanced to weigh them evenly")
    return (f"warning: the training photos are uneven ({counted}; {ratio}): {advice}, and judge the run by "
            f"balanced accuracy and macro-F1 (catdog evaluate)")


class Phase(NamedTuple):
    """One compiled stretch of training: its epochs [start, end), the backbone frozen or not, and
    the (height, width) the training photos are shrunk to (data.image_size: not shrunk)."""

    start: int
    end: int
    frozen: bool
    size: tuple[int, int]


def training_size(config: Config, size: int) -> tuple[int, int]:
    """The (height, width) of a train.image_sizes `size`: data.image_size's aspect, `size` its longer side."""
    height, width = config.data.image_size
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


# Models whose top may be a Flatten layer, read from model.top: its weights fit one photo size only.
FLATTEN_MODELS = ("article", "cnn")


def size_steps(config: Config) -> list[tuple[int, int]]:
    """train.image_sizes resolved for this config: (epochs trained before it, longer side) per entry.

    `at` becomes floor(at x train.epochs) epochs and `scale` round(scale x data.image_size's longer
    side) pixels (at least 8). Where a short run puts a fractional entry on the same epoch as the
    entry before it, the later entry holds from there (`--set train.epochs=1` trains at the size the
    schedule has reached by then); entries in epochs must increase.

    Raises:
        ConfigError: naming the entry: neither or both of epoch and at (or of size and scale), the
            first not at epoch 0, epochs not increasing or not below train.epochs, a size above
            data.image_size, or a model whose flatten top fits one size.
    """
    steps, m = config.train.image_sizes, config.model
    if not steps:
        return []
    if m.name in FLATTEN_MODELS and m.top == "flatten":
        raise ConfigError(f"train.image_sizes needs a model that takes any photo size; model.name {m.name} with "
                          f"model.top flatten has a Flatten head sized for data.image_size "
                          f"{list(config.data.image_size)}: set model.top=global_average or drop train.image_sizes")
    longest, epochs = max(config.data.image_size), config.train.epochs
    resolved: list[tuple[int, int]] = []
    for i, step in enumerate(steps):
        key = f"train.image_sizes[{i}]"
        for a, b in (("epoch", "at"), ("size", "scale")):
            given = [k for k in (a, b) if getattr(step, k) is not None]
            if len(given) != 1:
                got = "both" if given else "neither"
                raise ConfigError(f"{key} needs one of {a} and {b}; got {got}: "
                                  f"{ {k: v for k, v in vars(step).items() if v is not None} }")
        when = "epoch" if step.epoch is not None else "at"
        # at x epochs rounded first: 0.29 x 100 is 28.999... in floating point.
        epoch = step.epoch if step.epoch is not None else math.floor(round((step.at or 0.0) * epochs, 6))
        size = step.size if step.size is not None else max(8, round((step.scale or 0.0) * longest))
        if i == 0 and getattr(step, when) != 0:
            raise ConfigError(f"{key}.{when} must be 0 (the size training starts at); got {getattr(step, when)}")
        if i:
            before = steps[i - 1]
            if step.at is not None and before.at is not None and step.at <= before.at:
                raise ConfigError(f"{key}.at must be above the entry before it ({before.at}): the epochs "
                                  f"increase; got {step.at}")
            if epoch == resolved[-1][0] and (when == "at" or before.at is not None):
                resolved.pop()  # a short run: this entry starts where the one before would have
            elif epoch <= resolved[-1][0] and when == "at":
                raise ConfigError(f"{key}.at must start above the entry before it (epoch {resolved[-1][0]}): "
                                  f"the epochs increase; got {step.at} (epoch {epoch})")
            elif epoch <= resolved[-1][0]:
                raise ConfigError(f"{key}.epoch must be above the entry before it ({resolved[-1][0]}): the epochs "
                                  f"increase; got {epoch}")
        if epoch >= epochs:
            raise ConfigError(f"{key}.epoch must be below train.epochs ({epochs}); got {epoch}")
        if size > longest:
            raise ConfigError(f"{key}.size must be at most data.image_size ({longest}): photos are shrunk, "
                              f"never enlarged; got {size}")
        resolved.append((epoch, size))
    return resolved


def phases(config: Config) -> list[Phase]:
    """The phases of training, each its own compilation: (first epoch, end epoch, backbone frozen,
    training photo size).

    A transfer model with model.freeze_epochs trains its new head on a frozen backbone first,
    then fine-tunes everything; each size of train.image_sizes starts a phase too. Without
    either, training is one phase.

    Raises:
        ConfigError: freeze_epochs set for a model without a backbone; a bad train.image_sizes.
    """
    m, epochs = config.model, config.train.epochs
    if m.freeze_epochs and m.name != "transfer":
        raise ConfigError(f"model.freeze_epochs needs model.name transfer (a backbone to freeze); "
                          f"got {m.freeze_epochs} with model.name {m.name!r}")
    steps = size_steps(config)
    cuts = {0, epochs, *(epoch for epoch, _ in steps)}
    if 0 < m.freeze_epochs < epochs:
        cuts.add(m.freeze_epochs)
    bounds = sorted(cuts)
    plan = []
    for start, end in zip(bounds, bounds[1:], strict=False):
        sizes = [size for epoch, size in steps if epoch <= start]
        size = training_size(config, sizes[-1]) if sizes else config.data.image_size
        plan.append(Phase(start, end, start < m.freeze_epochs, size))
    return plan


def schedule_span(plan: list[Phase], index: int) -> tuple[int, int]:
    """The epochs that the learning-rate schedule of phase `index` runs over: those of the phases
    around it with the same frozen state. A new size continues the schedule (and the optimizer);
    only fine-tuning an unfrozen backbone starts a new one."""
    frozen = plan[index].frozen
    first = last = index
    while first > 0 and plan[first - 1].frozen == frozen:
        first -= 1
    while last + 1 < len(plan) and plan[last + 1].frozen == frozen:
        last += 1
    return plan[first].start, plan[last].end


def set_phase(model, config: Config, steps_per_epoch: int, plan: list[Phase], index: int,
              compiled: int | None = None) -> None:
    """Compile `model` for phase `index` of `plan`: its backbone frozen or not, its training photo
    size, the rate for its schedule's epochs.

    Args:
        compiled: the phase the model is compiled for now, if any. When it shares the new phase's
            schedule (only the size changes), the optimizer carries on: its step count keeps the
            rate on the one curve over the schedule's epochs, and its moments are kept.
    """
    phase = plan[index]
    if config.train.image_sizes:
        from catdog.models import RESIZE_LAYER

        model.get_layer(RESIZE_LAYER).size = phase.size
    if config.model.name == "transfer":
        # Trainability changes take effect at compile time, which follows.
        model.get_layer("backbone").trainable = not phase.frozen
    first, end = schedule_span(plan, index)
    same = compiled is not None and schedule_span(plan, compiled) == (first, end)
    compile_model(model, config, steps_per_epoch, end - first, fine_tune=first > 0,
                  optimizer=model.optimizer if same else None)


def sizes_line(config: Config, plan: list[Phase]) -> str | None:
    """What train.image_sizes does, in a line: "training photos 96x96 for epochs 1-20, then 160x160"."""
    if not config.train.image_sizes:
        return None
    runs: list[list] = []  # [first epoch, end epoch, size], consecutive phases of one size merged
    for p in plan:
        if runs and runs[-1][2] == p.size:
            runs[-1][1] = p.end
        else:
            runs.append([p.start, p.end, p.size])
    parts = [f"{h}x{w} for epoch{'s' if end - start > 1 else ''} "
             f"{start + 1}{f'-{end}' if end - start > 1 else ''}" for start, end, (h, w) in runs]
    if len(runs) > 1:
        h, w = runs[-1][2]
        parts[-1] = f"then {h}x{w}"
    line = "training photos " + ", ".join(parts)
    if runs[-1][2] != config.data.image_size:
        h, w = config.data.image_size
        line += f"; validation and predictions at {h}x{w} (data.image_size)"
    return line + " (train.image_sizes)"
