"""TensorFlow's native start-up lines are filtered from fd 2 and nothing else is (catdog.native_logs).

The chatter is written with a native write to file descriptor 2, as TensorFlow's C++ does, so these
tests fail on any machine when the filter breaks, not only on CPUs where TensorFlow speaks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

CHATTER = (b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
           b"I0000 00:00:1796230456.663076   26744 port.cc:153] oneDNN custom operations are on. You may see\n"
           b"W0000 00:00:1796230456.713244   26744 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n"
           b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow "
           b"with the appropriate compiler flags.\n")
KEPT = b"E0000 00:00:1796230456.9   26744 cuda.cc:1] a real error\nplain text from the import\n"
ROOT = Path(__file__).resolve().parents[1]


def run(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """`code` in a child whose sys.path starts with a fake `tensorflow` that writes CHATTER and KEPT
    to fd 2 while it is imported."""
    fake = tmp_path / "fake" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(f"import os\nos.write(2, {CHATTER + KEPT!r})\n")
    child_env = {k: v for k, v in os.environ.items() if k not in ("CATDOG_BACKEND_LOGS", "TF_CPP_MIN_LOG_LEVEL")}
    child_env.update(env, PYTHONPATH=os.pathsep.join([str(tmp_path / "fake"), str(ROOT)]))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, env=child_env,
                          timeout=60)


def test_the_filter_drops_the_native_log_lines_and_keeps_the_rest(tmp_path):
    done = run(f"""
        import os
        from catdog import native_logs
        os.write(2, b"before\\n")
        with native_logs.filtered_stderr():
            os.write(2, {CHATTER + KEPT!r})
        os.write(2, b"after\\n")
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == b"before\n" + KEPT + b"after\n"


def test_the_cli_filters_tensorflows_import_whoever_imports_it(tmp_path):
    done = run("import catdog.cli, tensorflow; import sys; sys.stderr.write('done\\n')", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == KEPT + b"done\n"


def test_catdog_backend_logs_shows_everything(tmp_path):
    done = run("import catdog.cli, tensorflow", tmp_path, CATDOG_BACKEND_LOGS="1")
    assert done.returncode == 0, done.stderr
    assert done.stderr == CHATTER + KEPT


def test_the_python_api_filters_tensorflows_import_too(tmp_path):
    code = "import os, catdog; catdog.predict; import tensorflow; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))"
    done = run(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == KEPT and done.stdout == b"2\n"
    # A level the user chose is theirs; CATDOG_BACKEND_LOGS=1 shows everything, as for the CLI.
    assert run(code, tmp_path / "mine", TF_CPP_MIN_LOG_LEVEL="0").stdout == b"0\n"
    shown = run(code, tmp_path / "all", CATDOG_BACKEND_LOGS="1")
    assert shown.stderr == CHATTER + KEPT and shown.stdout == b"None\n"
