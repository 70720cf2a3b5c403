"""scripts/press_ctrl_c.py: a press of Ctrl-C in `catdog train` ends with the resume command, and
any other ending is counted and kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "scripts" / "press_ctrl_c.py"


# One training of a few seconds in a subprocess; the default run keeps the in-process tests of the
# same path (tests/test_runs.py, tests/test_callbacks.py).
@pytest.mark.slow
def test_a_press_ends_with_the_resume_command_and_an_ending_that_does_not_is_kept(tmp_path):
    keep = tmp_path / "kept"
    done = subprocess.run([sys.executable, str(SCRIPT), "--presses", "1", "--keep", str(keep)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].split() == ["1", "exit", "130,", "resume", "command"], done.stdout
    assert not keep.exists()
    # A training that stops with an error before its first epoch is not a press that ended well.
    broken = SCRIPT.read_text().replace('"train.batch_size=8"', '"train.no_such_key=8"')
    (tmp_path / "broken.py").write_text(broken)
    done = subprocess.run([sys.executable, str(tmp_path / "broken.py"), "--presses", "1", "--keep", str(keep)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "press 0: exit 1;" in done.stdout, done.stdout
    assert "no_such_key" in (keep / "press0.err").read_text()
