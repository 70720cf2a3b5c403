"""What a config asks of one training run, checked before any photo is read: whether it
validates, its phases (a frozen backbone, then fine-tuning), and how the classes weigh.
"""

from __future__ import annotations

from pathlib import Path

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


def check_config(config: Config) -> list[tuple[int, int, bool]]:
    """The checks that need more than one key, made before any data is read; returns the phases.

    Raises:
        ConfigError: the phases, the schedule or the validation settings do not fit together.
    """
    plan = phases(config)
    for start, end, _frozen in plan:
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


def phases(config: Config) -> list[tuple[int, int, bool]]:
    """(first epoch, end epoch, backbone frozen) for each phase of training.

    A transfer model with model.freeze_epochs trains its new head on a frozen backbone first,
    then fine-tunes everything; every other model trains in one phase.

    Raises:
        ConfigError: freeze_epochs set for a model without a backbone.
    """
    m, epochs = config.model, config.train.epochs
    if m.freeze_epochs and m.name != "transfer":
        raise ConfigError(f"model.freeze_epochs needs model.name transfer (a backbone to freeze); "
                          f"got {m.freeze_epochs} with model.name {m.name!r}")
    if 0 < m.freeze_epochs < epochs:
        return [(0, m.freeze_epochs, True), (m.freeze_epochs, epochs, False)]
    return [(0, epochs, m.freeze_epochs > 0)]


def set_phase(model, config: Config, steps_per_epoch: int, phase: tuple[int, int, bool]) -> None:
    """Compile `model` for a phase of `phases`: its backbone frozen or not, the rate for its epochs."""
    start, end, frozen = phase
    if config.model.name == "transfer":
        # Trainability changes take effect at compile time, which follows.
        model.get_layer("backbone").trainable = not frozen
    compile_model(model, config, steps_per_epoch, end - start, fine_tune=start > 0)
