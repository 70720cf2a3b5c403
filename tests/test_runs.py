"""Run folders: finding the latest, and saying why one holds no model (training now, interrupted)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_images

from catdog.cli import main
from catdog.config import load_config
from catdog.errors import RunError, TrainingInterrupted
from catdog.runs import LOCK_FILE, MODEL_FILE, resolve_run, training_lock, training_now

FAST = ["train.epochs=3", "data.image_size=16", "train.batch_size=8"]


class Interrupt:
    """A Keras callback that raises KeyboardInterrupt, as Ctrl-C does: at the end of epoch
    `epoch` (after its checkpoint), or in the first batch when `epoch` is 0."""

    def __new__(cls, epoch: int):
        import keras

        class _Interrupt(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if epoch == 0:
                    raise KeyboardInterrupt

            def on_epoch_end(self, index, logs=None):
                if index + 1 == epoch:
                    raise KeyboardInterrupt

        return _Interrupt()


def test_ctrl_c_says_which_epoch_is_saved_and_how_to_resume(tiny_data, tmp_path):
    from catdog.training import train

    config = load_config(None, FAST)
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as caught:
        train(config, tiny_data, run, callbacks=[Interrupt(2)])
    assert str(caught.value) == (f"training interrupted: epoch 2/3 is saved in {run}; continue with: "
                                 f"catdog train --resume {run}")
    assert not (run / LOCK_FILE).exists()
    with pytest.raises(TrainingInterrupted) as caught:
        train(config, tiny_data, tmp_path / "early", callbacks=[Interrupt(0)])
    assert str(caught.value) == ("training interrupted before its first epoch was saved; nothing to resume "
                                 "(run it again)")
    assert not (tmp_path / "early").exists()


def test_ctrl_c_lands_between_batches_not_wherever_the_signal_arrives(tiny_data, tmp_path):
    """Raised where the signal lands, Ctrl-C could land inside TensorFlow's C++ and crash catdog
    train with a segmentation fault (2 of about 70 presses); training takes it after the batch."""
    import keras

    from catdog.training import train

    after_the_press: list[int] = []

    class Press(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if not after_the_press:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # Python's own handler raises KeyboardInterrupt here
                after_the_press.append(batch)

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as caught:
        train(load_config(None, FAST), tiny_data, tmp_path / "run", callbacks=[Press()])
    assert after_the_press == [0]
    assert caught.value.epochs_done == 0 and not (tmp_path / "run").exists()
    assert signal.getsignal(signal.SIGINT) is before


def test_a_run_being_trained_holds_its_lock_and_lets_go_of_it(tiny_data, tmp_path):
    import keras

    from catdog.training import train

    seen: list[bool] = []

    class Look(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(training_now(tmp_path / "run"))

    train(load_config(None, [*FAST, "train.epochs=1"]), tiny_data, tmp_path / "run", callbacks=[Look()])
    assert seen == [True]
    assert not training_now(tmp_path / "run") and not (tmp_path / "run" / LOCK_FILE).exists()


def unfinished_run(runs: Path, epochs_done: int | None) -> Path:
    """A run folder as training leaves it before model.keras: config, classes, maybe a checkpoint."""
    run = runs / "20250101-120000-article"
    (run / "checkpoint").mkdir(parents=True)
    (run / "config.yaml").write_text("{}\n")
    (run / "classes.json").write_text('["cats", "dogs"]\n')
    if epochs_done is not None:
        (run / "checkpoint" / "state.json").write_text(f'{{"epochs_done": {epochs_done}}}\n')
    return run


def test_predict_while_the_only_run_trains_says_it_is_in_progress(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = unfinished_run(Path("runs"), epochs_done=1)
    photo = write_images(tmp_path / "new", 1)[0]
    with training_lock(run):
        result = CliRunner().invoke(main, ["predict", str(photo)])
        assert result.exit_code == 1
        assert result.output == (f"Error: no finished run under runs/ yet: {run} is still training (no {MODEL_FILE} "
                                 f"yet); wait until catdog train finishes it, or pass --run with a finished run\n")
        with pytest.raises(RunError, match=f"^{run} is still training"):
            resolve_run(run)
        with pytest.raises(RunError, match=f"^{run} is being trained by another process"), training_lock(run):
            pass
    # The training process is gone (its lock with it): the run was interrupted.
    result = CliRunner().invoke(main, ["predict", str(photo)])
    assert result.output == (f"Error: no finished run under runs/ yet: {run} was interrupted after epoch 1 and holds "
                             f"no {MODEL_FILE}; continue it with catdog train --resume {run}\n")
    shutil.rmtree(run / "checkpoint")
    result = CliRunner().invoke(main, ["predict", str(photo)])
    assert result.output == ("Error: no trained run found under runs/; train one with catdog train, or pass --run "
                             "RUN_DIR\n")


@pytest.mark.slow
def test_ctrl_c_in_catdog_train_prints_the_resume_command(tiny_data, tmp_path):
    # scripts/press_ctrl_c.py's press: SIGINT right after the epoch line (where a segmentation fault
    # was found, in Keras's metric reset at an epoch's start), with PYTHONFAULTHANDLER's stacks on a crash.
    spec = importlib.util.spec_from_file_location("press_ctrl_c", Path(__file__).parents[1] / "scripts"
                                                  / "press_ctrl_c.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    run = tmp_path / "run"
    ending, out, err = script.press(tiny_data, run, tmp_path / "cache", delay=0.0)
    assert "epoch 1/200" in out, out
    assert ending == "exit 130, resume command", err[-2000:]
    last = err.strip().splitlines()[-1]
    match = re.fullmatch(rf"training interrupted: epoch (\d+)/200 is saved in {re.escape(str(run))}; continue "
                         rf"with: catdog train --resume {re.escape(str(run))}", last)
    assert match, err[-2000:]
    assert "Traceback" not in err
    assert int(match[1]) >= 1 and (run / "checkpoint" / "state.json").is_file()
