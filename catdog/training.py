"""Training: config and folder in, a complete run directory out.

Keras, and the catdog modules that import it (models, export), are imported inside functions:
`distribute.start` must set up devices and strategies before TensorFlow starts, and the CLI
imports this module for commands that never train.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from catdog import distribute
from catdog.batches import batches
from catdog.cache import Progress, write_skip_list
from catdog.callbacks import (
    epoch_reporter,
    finite_guard,
    history_writer,
    learning_curves_callback,
    reseeder,
)
from catdog.checkpoints import (
    CHECKPOINT_DIR,
    STATE_FILE,
    State,
    best_index,
    checkpointer,
    finish,
    read_state,
    restore_best,
    restore_checkpoint,
)
from catdog.config import Config, save_config
from catdog.devices import backend as keras_backend
from catdog.devices import emulated_bfloat16, gpus, resolve_jit_compile, training_device
from catdog.errors import ConfigError, RunError, TrainingError, naming, shown
from catdog.optimizers import (
    FINE_TUNE_FACTOR,
    check_schedule,
    learning_rate,
    make_optimizer,
    plateau_callback,
    warmup_epochs,
)
from catdog.runs import (
    CLASSES_FILE,
    CONFIG_FILE,
    HISTORY_FILE,
    MODEL_FILE,
    SKIPPED_FILE,
    SPLIT_FILE,
    claim_out_dir,
    new_run_dir,
    read_run_config,
    write_json,
)
from catdog.splits import Split, data_dir, prepare_folder, split

Report = Callable[[str], None]


@dataclass
class TrainResult:
    """What a finished training run achieved and where it lives."""

    run_dir: Path
    device: str
    epochs: int
    best_epoch: int
    # None when no photos were held out for validation (data.validation_split 0).
    val_accuracy: float | None
    val_loss: float | None
    seconds: float
    history: dict[str, list[float]] = field(default_factory=dict)
    # train.keep_best: model.keras holds the best epoch's weights, else the last epoch's.
    keep_best: bool = True
    monitor: str = "val_loss"

    def line(self) -> str:
        tail = f"; {self.seconds:.1f} s; run {self.run_dir}"
        if self.val_accuracy is None:
            return (f"last epoch {self.epochs}/{self.epochs} kept: accuracy {self.history['accuracy'][-1]:.4f}, "
                    f"loss {self.history['loss'][-1]:.4f} on the training photos (none held out)" + tail)
        if self.keep_best or self.best_epoch == self.epochs:
            return (f"best epoch {self.best_epoch}/{self.epochs}: val_accuracy {self.val_accuracy:.4f}, "
                    f"val_loss {self.val_loss:.4f}" + tail)
        # Say which weights were saved, and where the best epoch was.
        best = self.history[self.monitor][self.best_epoch - 1]
        return (f"last epoch {self.epochs}/{self.epochs} kept: val_accuracy {self.history['val_accuracy'][-1]:.4f}, "
                f"val_loss {self.history['val_loss'][-1]:.4f} (best {self.monitor} {best:.4f} at epoch "
                f"{self.best_epoch})" + tail)


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


def load_data(config: Config, data: str | Path | None, progress: Progress | None = None) -> Split:
    """Prepare the training (and validation) folders and split them by the config."""
    train = prepare_folder(config, data_dir(config, data), progress=progress)
    val = None
    if config.data.validation_dir:
        val = prepare_folder(config, config.data.validation_dir, classes=train.classes, progress=progress)
    return split(config, train, val)


def compile_model(model, config: Config, steps_per_epoch: int, epochs: int | None = None,
                  fine_tune: bool = False, accumulate: int | None = None) -> None:
    """Attach the optimizer, learning-rate schedule, loss and metrics the config asks for.

    Args:
        epochs: how many epochs the schedule spans (default train.epochs).
        fine_tune: the phase that trains an unfrozen backbone: a tenth of the rate, no warm-up.
        accumulate: micro-batches averaged into one update (default `accumulation(config, steps_per_epoch)`).
    """
    import keras

    t = config.train
    base = t.learning_rate * (FINE_TUNE_FACTOR if fine_tune else 1.0)
    rate = learning_rate(t, steps_per_epoch, epochs or t.epochs, base, warmup=not fine_tune)
    if config.model.head == "sigmoid":
        loss = keras.losses.BinaryCrossentropy(label_smoothing=t.label_smoothing)
    else:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing)
    with warnings.catch_warnings():
        # Keras's "Model doesn't support jit_compile=True" names no layer; train() says which.
        warnings.filterwarnings("ignore", "Model doesn't support `jit_compile=True`")
        if accumulate is None:
            accumulate = accumulation(config, steps_per_epoch)
        model.compile(optimizer=make_optimizer(t, rate, accumulate), loss=loss,
                      metrics=["accuracy"], jit_compile=resolve_jit_compile(t.jit_compile))


# See train.micro_batch: 32 kept the article model's epoch fastest on a 2-core CPU.
CPU_MICRO_BATCH = 32


def micro_batch(config: Config) -> int:
    """How many images one forward/backward pass computes: train.micro_batch, fitted to divide
    train.batch_size so that every update averages whole micro-batches."""
    t = config.train
    size = t.micro_batch
    if size is None:
        size = t.batch_size if t.distribute != "none" or gpus() else CPU_MICRO_BATCH
    size = min(size, t.batch_size)
    while t.batch_size % size:
        size -= 1
    return size


def accumulation(config: Config, steps_per_epoch: int) -> int:
    """Micro-batches averaged into one update: train.batch_size / micro-batch, but never more than
    an epoch has. Keras applies the update only when that many gradients have been summed, so an
    epoch of fewer micro-batches would otherwise end without changing a single weight."""
    return max(1, min(config.train.batch_size // micro_batch(config), steps_per_epoch))


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


def _unjittable(model) -> str | None:
    """The name of the first layer (nested models included) that XLA cannot compile, if any."""
    for layer in model.layers:
        if not getattr(layer, "supports_jit", True):
            return layer.name
        inner = _unjittable(layer) if hasattr(layer, "layers") else None
        if inner:
            return inner
    return None


def _set_phase(model, config: Config, steps_per_epoch: int, phase: tuple[int, int, bool]) -> None:
    start, end, frozen = phase
    if config.model.name == "transfer":
        # Trainability changes take effect at compile time, which follows.
        model.get_layer("backbone").trainable = not frozen
    compile_model(model, config, steps_per_epoch, end - start, fine_tune=start > 0)


def train(config: Config, data: str | Path | None = None, out: str | Path | None = None,
          report: Report | None = None, progress: Progress | None = None,
          batch_progress: Progress | None = None, callbacks: list | None = None,
          _resume: State | None = None) -> TrainResult:
    """Train the configured model on a photo folder and write a run directory.

    Args:
        config: the resolved config.
        data: the training folder (default `data.dir`).
        out: the run folder to create (default a new folder under runs/).
        report: receives one-line status messages (device, split sizes, one line per epoch, ...).
        progress: receives (done, total) while images are being prepared.
        batch_progress: receives (done, total) batches during each epoch.
        callbacks: more Keras callbacks, called after each epoch is checkpointed.

    Raises:
        CatdogError: bad data, bad config or an unusable output folder.
    """
    say = report or (lambda _msg: None)
    plan = check_config(config)  # config errors before any data is read or folder written
    if ((warm := warmup_epochs(config.train, plan[0][1])) < config.train.warmup_epochs
            and config.train.schedule != "plateau"):
        say(f"train.warmup_epochs={config.train.warmup_epochs} is not shorter than the {plan[0][1]} epochs "
            f"it warms up; warming up over {warm} instead")
    state = _resume or State()
    # First of all: multi-worker training and GPU memory growth must be set before TensorFlow runs.
    dist = distribute.start(config)
    from catdog.models import check_model

    # The model next (it needs TensorFlow, so after start): a bad name or activation, layers that
    # do not fit the image size, weights that cannot be had, all before any photo is prepared.
    check_model(config, fetch=True)
    sp = load_data(config, data, progress)
    classes = sp.train.classes
    say(f"data: {len(sp.train_idx)} train, {len(sp.val_idx)} validation, {len(sp.test_idx)} test images; "
        f"classes {', '.join(classes)}; {len(sp.train.skipped)} skipped")
    counts = [int(n) for n in np.bincount(sp.train.labels[sp.train_idx], minlength=len(classes))]
    weights = class_weights(config, classes, counts, sp.train.found.root)
    if (warning := uneven_warning(classes, counts, weights is not None)) is not None:
        say(warning)
    if weights is not None:
        say("class weights: " + ", ".join(f"{c} {weights.get(i, 1.0):.3g}" for i, c in enumerate(classes))
            + " (train.class_weight)")

    record = sp.record()
    state.data = record["root"]
    if _resume is not None and dist.chief:
        run_dir = Path(str(out))
        recorded = json.loads((run_dir / SPLIT_FILE).read_text())
        if any(recorded.get(k) != record[k] for k in ("train", "validation", "test")):
            raise RunError(f"--resume {run_dir}: the photos found now differ from the run's {SPLIT_FILE}; "
                           f"resume with the data it was trained on (--data)")
    else:
        # Only the chief worker writes the run folder; other workers save into a scratch folder.
        run_dir = ((claim_out_dir(Path(out)) if out else new_run_dir(config.model.name)) if dist.chief
                   else dist.scratch_dir())
        # The run records the folder it trained on: `--data` (absolute, as split.json) over data.dir.
        used = config if data is None else config.replace(data=dataclasses.replace(config.data, dir=record["root"]))
        try:
            save_config(used, run_dir / CONFIG_FILE)
            write_json(run_dir / CLASSES_FILE, classes)
            write_json(run_dir / SPLIT_FILE, record)
            write_skip_list(run_dir / SKIPPED_FILE, sp.train.skipped)
            return _fit(config, sp, run_dir, plan, state, dist, say, weights, batch_progress, callbacks or [])
        except BaseException:
            # A run that failed (or was interrupted) before its first epoch was checkpointed can
            # be neither resumed nor reused with --out: take the half-made folder away.
            if not (run_dir / CHECKPOINT_DIR / STATE_FILE).is_file():
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
    return _fit(config, sp, run_dir, plan, state, dist, say, weights, batch_progress, callbacks or [])


def _fit(config: Config, sp: Split, run_dir: Path, plan, state: State, dist, say: Report,
         weights: dict[int, float] | None, batch_progress: Progress | None, extra: list) -> TrainResult:
    """Build, train and save the model into a run folder whose config, classes and split are written."""
    classes = sp.train.classes

    from catdog.models import build_model

    device = training_device()
    say(f"training on {device}; {dist.describe()}; run folder {run_dir}")
    if emulated_bfloat16(dist.precision):
        say("warning: this CPU has no bfloat16 instructions (AMX or AVX512-BF16), so mixed_bfloat16 is emulated "
            "and several times slower than float32 here; --set train.precision=float32 trains faster")
    # The strategy (or JAX's device layout) and the precision policy cover build, compile and fit.
    with dist.scope():
        model = build_model(config, len(classes))
        sigmoid = config.model.head == "sigmoid"
        t = config.train
        if t.jit_compile == "on" and (unjittable := _unjittable(model)):
            say(f"train.jit_compile=on, but XLA on the {keras_backend()} backend cannot compile layer {unjittable!r}; "
                f"training without XLA")
        size = micro_batch(config)
        if size < t.batch_size:
            say(f"batches of {t.batch_size} computed as {t.batch_size // size} micro-batches of {size} "
                f"(train.micro_batch)")
        # A resumed run shuffles its next epoch as the uninterrupted run would have.
        train_batches = dist.feed(batches(sp.train.images, sp.train.rows[sp.train_idx],
                                          sp.train.row_targets(sigmoid), size, shuffle=True, seed=config.seed,
                                          mix=t.cutmix, first_epoch=state.epochs_done))
        val_batches = None
        if len(sp.val_idx):
            val_batches = dist.feed(batches(sp.val.images, sp.val.rows[sp.val_idx], sp.val.row_targets(sigmoid), size))
        # Without validation photos the numbers to watch are the training ones.
        monitor = t.monitor if val_batches is not None else t.monitor.removeprefix("val_")
        # Schedules count optimizer calls, which happen once per micro-batch.
        steps = len(train_batches)
        if size < t.batch_size and accumulation(config, steps) < t.batch_size // size:
            say(f"an epoch has only {steps} micro-batches: each update averages all {steps} of them")
        writer = history_writer(None, state.history)
        # The curves mark the epoch whose weights are kept: with keep_best off, the last one.
        curves = learning_curves_callback(run_dir, monitor if t.keep_best else None)
        curves.history = {k: list(v) for k, v in state.history.items()}  # the epochs before a resume
        start, before = time.perf_counter(), state.seconds
        clock = lambda: before + time.perf_counter() - start  # noqa: E731
        keeper = checkpointer(run_dir, monitor, t.keep_best, t.early_stopping, lambda: writer.history, state, clock,
                              history_file=run_dir / HISTORY_FILE)
        accumulate = accumulation(config, steps)
        epoch_lines = epoch_reporter(say, t.epochs, -(-steps // accumulate), accumulate, batch_progress)
        callbacks = [reseeder(model, config.seed), finite_guard(), writer, curves, keeper, epoch_lines,
                     *[c for c in [plateau_callback(t)] if c is not None], *extra]
        compiled, state_start = None, state.epochs_done
        if state.checkpoint is not None:
            say(f"resuming after epoch {state.epochs_done}/{t.epochs}")
            _set_phase(model, config, steps, plan[state.phase])
            restore_checkpoint(model, run_dir, state)
            compiled = state.phase
        # A run that ends with every trainable weight as it started learned nothing: refuse it.
        watched = list(model.trainable_weights)
        initial = [np.array(v) for v in watched]
        for i, phase in enumerate(plan):
            if state.epochs_done >= phase[1] or keeper.stopped:
                continue
            if compiled != i:
                _set_phase(model, config, steps, phase)
                compiled = keeper.phase = i
            # shuffle=False: the batches shuffle themselves from (seed, epoch); Keras's own shuffle
            # of the batch order draws from Python's global random state, which a resumed run
            # would not continue. Keras turns class_weight into per-photo sample weights inside
            # each (micro-)batch; the loss divides by the photos in the batch, not by their
            # weights, so the accumulated micro-batches still make the whole batch's update. A
            # cut-mixed target counts as the class that fills most of the photo.
            model.fit(train_batches, validation_data=val_batches, initial_epoch=max(phase[0], state.epochs_done),
                      epochs=phase[1], callbacks=callbacks, verbose=0, shuffle=False, class_weight=weights)
        if state.epochs_done > state_start and all(np.array_equal(a, np.array(v))
                                                   for a, v in zip(initial, watched, strict=True)):
            finish(run_dir)  # nothing worth resuming: the failed run's folder is removed (see train)
            raise TrainingError(f"training changed no weight in {state.epochs_done - state_start} epochs "
                                f"({steps} steps); check train.learning_rate and train.batch_size against the "
                                f"{len(sp.train_idx)} training photos")
        seconds = clock()
        if t.keep_best:
            restore_best(model, run_dir, state)
    # Saved beside and renamed: a full disk or a kill leaves no half model.keras, which would make
    # the run look finished (no --resume) while no command could load it.
    tmp = run_dir / f".partial-{MODEL_FILE}"
    try:
        with naming(run_dir / MODEL_FILE):
            model.save(tmp)
        tmp.replace(run_dir / MODEL_FILE)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finish(run_dir)
    if dist.chief:
        _write_onnx(run_dir, model, say)

    history = writer.history
    values = history[monitor]
    best = best_index(values, monitor)
    val_accuracy, val_loss = (history[k][best] if k in history else None for k in ("val_accuracy", "val_loss"))
    return TrainResult(run_dir, device, len(values), best + 1, val_accuracy, val_loss, seconds, history,
                       keep_best=t.keep_best, monitor=monitor)


def _write_onnx(run_dir: Path, model, say: Report) -> None:
    """model.onnx for fast predicting, when catdog[export] is installed (catdog.export)."""
    from catdog.export import export_after_training

    try:
        result = export_after_training(run_dir, model)
    # The run is complete without model.onnx (predict falls back to Keras), so no converter
    # failure may cost the user the finished training: it is reported in one line instead.
    except Exception as exc:  # noqa: BLE001
        say(f"model.onnx not written ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            f"predict uses Keras; try catdog export --run {run_dir}")
        return
    if result is not None:
        say(f"model.onnx written for fast predict ({result.line().split('; ', 1)[1]})")


def resume(run_dir: str | Path, data: str | Path | None = None, report: Report | None = None,
           progress: Progress | None = None, batch_progress: Progress | None = None,
           callbacks: list | None = None) -> TrainResult:
    """Continue an interrupted run from its last completed epoch up to its configured epochs.

    The run's own config is used; the history of the finished epochs is kept.

    Raises:
        RunError: the folder is not an interrupted run, its photos changed, or it trained on
            several workers.
    """
    run_dir = Path(run_dir)
    state = read_state(run_dir)  # checks the checkpoint and best-weights files, before any training
    config = read_run_config(run_dir)
    if not (run_dir / SPLIT_FILE).is_file():
        raise RunError(f"--resume {shown(run_dir)}: {SPLIT_FILE} is missing; restore it from a copy of the run "
                       f"or start again with catdog train")
    if config.train.distribute == "multi_worker":
        raise RunError(f"--resume {run_dir}: resuming multi_worker training is not supported; start it again")
    return train(config, data or state.data, run_dir, report, progress, batch_progress, callbacks, _resume=state)
