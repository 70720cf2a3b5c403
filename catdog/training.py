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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from catdog import decisions as decided
from catdog import distribute
from catdog.batches import batches
from catdog.cache import Progress, write_skip_list
from catdog.callbacks import (
    LEARNING_CURVES_FILE,
    TENSORBOARD_DIR,
    TENSORBOARD_MISSING,
    ctrl_c_between_batches,
    early_stopping,
    epoch_reporter,
    finite_guard,
    learning_curves_callback,
    reseeder,
    tensorboard_callback,
)
from catdog.checkpoints import (
    CHECKPOINT_DIR,
    STATE_FILE,
    State,
    best_index,
    best_keeper,
    checkpointer,
    finish,
    read_state,
    restore_best,
    restore_checkpoint,
    room_check,
)
from catdog.config import Config, save_config
from catdog.decisions import read as read_decisions
from catdog.devices import backend as keras_backend
from catdog.devices import emulated_bfloat16, training_device
from catdog.ema import ema_callbacks, ema_drift
from catdog.errors import RunError, TrainingError, TrainingInterrupted, first_line, replacing, shown
from catdog.folders import Found
from catdog.leaks import check_split
from catdog.optimizers import accumulation, micro_batch, plateau_callback, unjittable, warmup_epochs
from catdog.plan import Phase, check_config, class_weights, schedule_span, set_phase, sizes_line, uneven_warning
from catdog.runs import (
    CLASSES_FILE,
    CONFIG_FILE,
    HISTORY_FILE,
    MODEL_FILE,
    SKIPPED_FILE,
    SPLIT_FILE,
    TRAINED_FILE,
    claim_out_dir,
    new_run_dir,
    read_run_config,
    run_decisions,
    run_name,
    training_lock,
    write_json,
)
from catdog.splits import Split, data_dir, find_photos, prepare_folder, split

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


def find_data(config: Config, data: str | Path | None) -> tuple[Found, Found | None]:
    """The photos of the training (and validation) folders, found without reading one: a missing
    or empty folder is said before TensorFlow starts, which takes seconds."""
    decisions = read_decisions(config.data.decisions) if config.data.decisions else None
    train = find_photos(config, data_dir(config, data), decisions=decisions)
    val = (find_photos(config, config.data.validation_dir, train.classes, decisions=decisions)
           if config.data.validation_dir else None)
    return train, val


def load_data(config: Config, data: str | Path | None, progress: Progress | None = None,
              found: tuple[Found, Found | None] | None = None) -> Split:
    """Prepare the training (and validation) folders and split them by the config; `found` is
    what `find_data` found in them, when it was called already."""
    train_found, val_found = found or find_data(config, data)
    train = prepare_folder(config, train_found, progress=progress)
    val = prepare_folder(config, val_found, progress=progress) if val_found is not None else None
    return split(config, train, val)


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
    found = find_data(config, data)
    for line in decided.summary([f for f in found if f is not None]):
        say(line)
    _say_warm_up(config, plan, say)
    if (sizes := sizes_line(config, plan)) is not None:
        say(sizes)
    # Multi-worker training and GPU memory growth must be set before TensorFlow starts.
    dist = distribute.start(config)
    from catdog.models import check_model

    # A bad model name or activation, layers that do not fit the image size, weights that cannot
    # be had: all found before any photo is prepared.
    check_model(config, fetch=True)
    sp = load_data(config, data, progress, found)
    weights = _class_weights_said(config, sp, say)
    state = _resume or State()
    run_dir = _open_run(config, data, out, sp, dist, state, resuming=_resume is not None)
    try:
        with training_lock(run_dir), _removed_unless_resumable(run_dir, fresh=_resume is None or not dist.chief):
            check_split(sp, run_dir, say)
            device, model, monitor, seconds = _build_and_fit(config, sp, run_dir, plan, state, say, weights, dist,
                                                             batch_progress, callbacks or [])
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt:
        if (run_dir / MODEL_FILE).is_file():
            raise  # after the model was saved: the run is complete
        # Ctrl-C: say which epoch the checkpoint holds (read back: the one on disk is what resumes).
        saved = _saved_epochs(run_dir) if dist.chief else 0
        raise TrainingInterrupted(run_dir if saved else None, saved, config.train.epochs) from None
    if dist.chief:
        _write_onnx(run_dir, model, say)
        _curves_to_tensorboard(config, run_dir, state.epochs_done, say)
    return _result(config, run_dir, device, state, monitor, seconds)


def _saved_epochs(run_dir: Path) -> int:
    """The epochs a run folder's checkpoint holds (0: none, or the folder was removed)."""
    try:
        return read_state(run_dir).epochs_done
    except RunError:
        return 0


def _build_and_fit(config: Config, sp: Split, run_dir: Path, plan: list[Phase], state: State,
                   say: Report, weights: dict[int, float] | None, dist, batch_progress: Progress | None,
                   callbacks: list) -> tuple[str, object, str, float]:
    """Build the model on the training device, fit it and save it: (device, model, monitor, seconds)."""
    from catdog.models import build_model

    device = training_device()
    say(f"training on {device}; {dist.describe()}; run folder {run_dir}")
    if emulated_bfloat16(dist.precision):
        say("warning: this CPU has no bfloat16 instructions (AMX or AVX512-BF16), so mixed_bfloat16 is "
            "emulated, about five times slower than float32 here; --set train.precision=auto picks float32 "
            "on such a CPU")
    # The strategy (or JAX's device layout) and the precision policy cover build, compile and fit.
    with dist.scope():
        model = build_model(config, len(sp.train.classes))
        monitor, seconds = _fit(model, config, sp, run_dir, plan, state, say, weights, dist, batch_progress,
                                callbacks)
    write_json(run_dir / TRAINED_FILE, {"seconds": round(seconds, 3), "epochs_done": state.epochs_done,
                                        "early_stopped": state.stopped})
    _save_model(model, run_dir)
    return device, model, monitor, seconds


def _say_warm_up(config: Config, plan: list[Phase], say: Report) -> None:
    t = config.train
    _, end = schedule_span(plan, 0)  # the first schedule, which the warm-up starts
    if (warm := warmup_epochs(t, end)) < t.warmup_epochs and t.schedule != "plateau":
        say(f"train.warmup_epochs={t.warmup_epochs} is not shorter than the {end} epochs "
            f"it warms up; warming up over {warm} instead")


def _class_weights_said(config: Config, sp: Split, say: Report) -> dict[int, float] | None:
    """Say what was found, warn about uneven classes, and return train.class_weight for Keras."""
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
    return weights


def _open_run(config: Config, data: str | Path | None, out: str | Path | None, sp: Split, dist, state: State,
              resuming: bool) -> Path:
    """The run folder: a resumed run's own (checked against the photos found now), else a new one
    holding the config, classes, split and skipped files."""
    record = sp.record()
    state.data = record["root"]
    if resuming and dist.chief:
        run_dir = Path(str(out))
        recorded = json.loads((run_dir / SPLIT_FILE).read_text())
        if any(recorded.get(k) != record[k] for k in ("train", "validation", "test")):
            raise RunError(f"--resume {run_dir}: the photos found now differ from the run's {SPLIT_FILE}; "
                           f"resume with the data it was trained on (--data)")
        return run_dir
    # Only the chief worker writes the run folder; other workers save into a scratch folder.
    run_dir = ((claim_out_dir(Path(out)) if out else new_run_dir(run_name(config))) if dist.chief
               else dist.scratch_dir())
    # The run records the folder it trained on: `--data` (absolute, as split.json) over data.dir,
    # and the decisions file by its absolute path, beside a copy of it as it was read.
    used = config if data is None else config.replace(data=dataclasses.replace(config.data, dir=record["root"]))
    applied = sp.train.found.decided
    if applied is not None:
        used = used.replace(data=dataclasses.replace(used.data, decisions=str(applied.decisions.path.absolute())))
    with _removed_unless_resumable(run_dir, fresh=True):
        save_config(used, run_dir / CONFIG_FILE)
        write_json(run_dir / CLASSES_FILE, sp.train.classes)
        write_json(run_dir / SPLIT_FILE, record)
        if applied is not None:
            decided.save_copy(applied.decisions, run_dir)
        write_skip_list(run_dir / SKIPPED_FILE, _skip_list(sp))
    return run_dir


def _skip_list(sp: Split) -> list[tuple[str, str]]:
    """The run's skip list: the files of the training folder that were skipped (excluded by the
    decisions file included) and its relabelled photos; a separate validation folder's too, each
    named from that folder's parent (e.g. validation/cats/cat.1.jpg)."""
    listed = sorted(sp.train.skipped + decided.notes(sp.train.found))
    if sp.val is not sp.train:
        prefix = f"{sp.val.found.root.resolve().name}/"
        listed += sorted((prefix + f, r) for f, r in sp.val.skipped + decided.notes(sp.val.found))
    return listed


@contextmanager
def _removed_unless_resumable(run_dir: Path, fresh: bool) -> Iterator[None]:
    """Remove a new run folder when what runs inside fails (or is interrupted) before the first
    epoch is checkpointed: such a run can be neither resumed nor reused with --out."""
    try:
        yield
    except BaseException:
        if fresh and not (run_dir / CHECKPOINT_DIR / STATE_FILE).is_file():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _fit(model, config: Config, sp: Split, run_dir: Path, plan: list[Phase], state: State,
         say: Report, weights: dict[int, float] | None, dist, batch_progress: Progress | None,
         extra: list) -> tuple[str, float]:
    """Train `model` phase by phase from where `state` stands; returns the monitored key and the
    seconds of training (before an interruption included)."""
    t, sigmoid = config.train, config.model.head == "sigmoid"
    if t.jit_compile == "on" and (layer := unjittable(model)):
        say(f"train.jit_compile=on, but XLA on the {keras_backend()} backend cannot compile layer {layer!r}; "
            f"training without XLA")
    size = micro_batch(config)
    if size < t.batch_size:
        say(f"batches of {t.batch_size} computed as {t.batch_size // size} micro-batches of {size} "
            f"(train.micro_batch)")

    def train_batches(first_epoch: int):
        # Made afresh for each fit call, from the epoch it starts at: a resumed run, and a phase
        # after another, shuffle as one uninterrupted fit would have. (Keras ends a dataset's epoch
        # once more between two fit calls, so one dataset for both would shuffle one epoch ahead.)
        return dist.feed(batches(sp.train.images, sp.train.rows[sp.train_idx], sp.train.row_targets(sigmoid),
                                 size, shuffle=True, seed=config.seed, mix=t.cutmix, first_epoch=first_epoch))

    val_batches = None
    if len(sp.val_idx):
        val_batches = dist.feed(batches(sp.val.images, sp.val.rows[sp.val_idx], sp.val.row_targets(sigmoid), size))
    # Without validation photos the numbers to watch are the training ones.
    monitor = t.monitor if val_batches is not None else t.monitor.removeprefix("val_")
    # Schedules count optimizer calls, which happen once per micro-batch.
    steps = len(train_batches(state.epochs_done))
    accumulate = accumulation(config, steps)
    if size < t.batch_size and accumulate < t.batch_size // size:
        say(f"an epoch has only {steps} micro-batches: each update averages all {steps} of them")
    start, before = time.perf_counter(), state.seconds
    clock = lambda: before + time.perf_counter() - start  # noqa: E731
    keeper = checkpointer(run_dir, monitor, state, clock, history_file=run_dir / HISTORY_FILE)
    history = lambda: state.history  # noqa: E731  the one history: the checkpointer records it
    # In this order: nothing not finite is saved, nor written to a disk without room for it; the best
    # weights, the early stop and a cut of the rate are decided before the checkpointer records the
    # epoch; the rest see it recorded.
    # train.ema: from the swapper on, an epoch is judged and saved on the averaged weights
    # (catdog.ema); a checkpoint holds them, so a resumed run starts with them swapped in.
    swapper, settler = ema_callbacks(resumed=state.checkpoint is not None) if t.ema else (None, None)
    callbacks = [reseeder(model, config.seed), finite_guard(), room_check(run_dir), *([swapper] if swapper else []),
                 *([best_keeper(run_dir, monitor, state)] if t.keep_best else []),
                 *([early_stopping(monitor, t.early_stopping, history)] if t.early_stopping else []),
                 # A cut of the rate goes into this epoch's checkpoint, as it does into the next epoch.
                 *([plateau] if (plateau := plateau_callback(t, history)) is not None else []),
                 keeper,
                 # The curves mark the epoch whose weights are kept: with keep_best off, the last one.
                 learning_curves_callback(run_dir, history, monitor if t.keep_best else None),
                 *_tensorboard(t.tensorboard, run_dir, say),
                 epoch_reporter(say, t.epochs, -(-steps // accumulate), accumulate, batch_progress), *extra,
                 # Last: after any callback that may stop training.
                 *([settler] if settler else [])]
    compiled, epochs_before = None, state.epochs_done
    if state.checkpoint is not None:
        say(f"resuming after epoch {state.epochs_done}/{t.epochs}")
        set_phase(model, config, steps, plan, state.phase)
        restore_checkpoint(model, run_dir, state)
        compiled = state.phase
    # A run that ends with every trainable weight as it started learned nothing: refuse it.
    watched = list(model.trainable_weights)
    initial = [np.array(v) for v in watched]
    # Keras fits one compiled model; a frozen backbone and its fine-tuning are two compilations, and
    # so is each training photo size (a new traced step), so each phase is its own fit call over
    # its own range of epochs.
    # Ctrl-C stops training between batches (catdog.callbacks.ctrl_c_between_batches).
    with ctrl_c_between_batches() as ctrl_c:
        for i, phase in enumerate(plan):
            if state.epochs_done >= phase.end or state.stopped:
                continue
            if compiled != i:
                set_phase(model, config, steps, plan, i, compiled)
                compiled = keeper.phase = i
                if swapper is not None:
                    swapper.new_optimizer()
            # shuffle=False: the batches shuffle themselves from (seed, epoch); Keras's own shuffle
            # of the batch order draws from Python's global random state, which a resumed run
            # would not continue. Keras turns class_weight into per-photo sample weights inside
            # each (micro-)batch; the loss divides by the photos in the batch, not by their
            # weights, so the accumulated micro-batches still make the whole batch's update. A
            # cut-mixed target counts as the class that fills most of the photo.
            first = max(phase.start, state.epochs_done)
            model.fit(train_batches(first), validation_data=val_batches, initial_epoch=first,
                      epochs=phase.end, callbacks=[ctrl_c, *callbacks], verbose=0, shuffle=False, class_weight=weights)
    # The average of weights that never moved drifts from them by rounding (catdog.ema.drift).
    drift = ema_drift() if t.ema else 0.0
    if state.epochs_done > epochs_before and all(np.allclose(np.array(v), a, rtol=drift, atol=0.0)
                                                 for a, v in zip(initial, watched, strict=True)):
        finish(run_dir)  # nothing worth resuming: the failed run's folder is removed (see train)
        raise TrainingError(f"training changed no weight in {state.epochs_done - epochs_before} epochs "
                            f"({steps} steps); check train.learning_rate and train.batch_size against the "
                            f"{len(sp.train_idx)} training photos")
    seconds = clock()
    if t.keep_best:
        restore_best(model, run_dir, state)
    return monitor, seconds


def _tensorboard(wanted: bool | None, run_dir: Path, say: Report) -> list:
    """Keras's TensorBoard callback for train.tensorboard (None: if the package is installed), or
    none, with one line saying why when the logs were asked for (True)."""
    if wanted is False:
        return []
    if (callback := tensorboard_callback(run_dir)) is None:
        if wanted:
            say(TENSORBOARD_MISSING)
        return []
    return [callback]


def _curves_to_tensorboard(config: Config, run_dir: Path, epochs_done: int, say: Report) -> None:
    """The learning curves as an image in the run's TensorBoard logs (train/), once, as training
    ends: at the last epoch's step, so a resumed run adds them once, and no epoch pays for them.
    (The confusion matrix would need a pass of predictions over the validation photos, which
    training does not make: `catdog evaluate` writes it.)"""
    from catdog.tensorboard_images import logs_on, write_images

    curves = run_dir / LEARNING_CURVES_FILE
    if not (logs_on(config.train.tensorboard) and curves.is_file() and epochs_done):
        return
    try:
        write_images(run_dir / TENSORBOARD_DIR / "train", epochs_done - 1, {"learning_curves": curves})
    # The run is complete without them (the PNG is in the run folder): one line, never a lost training.
    except Exception as exc:  # noqa: BLE001
        say(f"learning curves not written to TensorBoard ({type(exc).__name__}: {first_line(exc)})")


def _save_model(model, run_dir: Path) -> None:
    """model.keras, then the checkpoints go: the run is finished.

    Saved beside and renamed: a full disk or a kill leaves no half model.keras, which would make
    the run look finished (no --resume) while no command could load it.
    """
    tmp = run_dir / f".partial-{MODEL_FILE}"
    with replacing(run_dir / MODEL_FILE, tmp):
        model.save(tmp)
    finish(run_dir)


def _result(config: Config, run_dir: Path, device: str, state: State, monitor: str, seconds: float) -> TrainResult:
    values = state.history[monitor]
    best = best_index(values, monitor)
    val_accuracy, val_loss = (state.history[k][best] if k in state.history else None
                              for k in ("val_accuracy", "val_loss"))
    return TrainResult(run_dir, device, len(values), best + 1, val_accuracy, val_loss, seconds, state.history,
                       keep_best=config.train.keep_best, monitor=monitor)


def _write_onnx(run_dir: Path, model, say: Report) -> None:
    """model.onnx for fast predicting, when catdog[export] is installed (catdog.export)."""
    from catdog.export import export_after_training

    try:
        result = export_after_training(run_dir, model)
    # The run is complete without model.onnx (predict falls back to Keras), so no converter
    # failure may cost the user the finished training: it is reported in one line instead.
    except Exception as exc:  # noqa: BLE001
        say(f"model.onnx not written ({type(exc).__name__}: {first_line(exc) if str(exc).strip() else ''}); "
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
    config = run_decisions(run_dir, read_run_config(run_dir))
    if not (run_dir / SPLIT_FILE).is_file():
        raise RunError(f"--resume {shown(run_dir)}: {SPLIT_FILE} is missing; restore it from a copy of the run "
                       f"or start again with catdog train")
    if config.train.distribute == "multi_worker":
        raise RunError(f"--resume {run_dir}: resuming multi_worker training is not supported; start it again")
    return train(config, data or state.data, run_dir, report, progress, batch_progress, callbacks, _resume=state)
