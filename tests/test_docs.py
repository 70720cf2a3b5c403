"""Every code block in README.md and docs/*.md, run as a reader would run it.

Each document is read from the top in a folder of its own that holds the photos and runs its commands
name (SETUP: tiny generated JPEGs, copies of one run trained per session). Its blocks run in order,
so a block finds what the blocks above it made, as in a reader's terminal. A block runs in a
subprocess as written, after the few substitutions in `substitute` (training shrunk to seconds,
downloads from a server on 127.0.0.1, `catdog serve` on a free port). A block that cannot run says
why in an HTML comment on the line above its fence, `<!-- not run: REASON -->`; the flags of its
commands are still checked against their `--help`. A block with neither fails: no snippet goes
unchecked.

Kinds of block: ```bash and ```python run; an unlabelled block of `$ command` lines followed by their
output is a terminal transcript: the commands run and their output is compared (COMPARE); ```text is
output or a picture (checked where TEXT_CHECKS knows how); ```yaml loads as a catdog config;
```json parses, and matches the shape of the answer the block above it printed.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import http.server
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import write_images
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)(?P<lang>[^`\s]*)\s*$")
NOT_RUN = re.compile(r"^\s*<!--\s*not run:\s*(?P<reason>\S.*?)\s*-->\s*$")
# A command a block may hold only in a form that runs (so a ```text block cannot hide one).
COMMAND = re.compile(r"^\s*(\$ |catdog |python |pip |curl )")
TIMEOUT_S = 300  # one block; a stuck command fails its block instead of hanging the suite
SHRINK = ["--set", "train.epochs=1", "--set", "data.image_size=32", "--set", "train.batch_size=8"]


@dataclass(frozen=True)
class Block:
    doc: str  # path relative to the repository
    line: int  # line of the opening fence
    lang: str
    text: str  # without the fence's indentation
    not_run: str | None  # the reason in `<!-- not run: ... -->` above the fence

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def transcript(self) -> bool:
        return self.lang == "" and self.text.startswith("$ ")


def read_blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        start = FENCE.match(lines[i])
        if not start:
            i += 1
            continue
        indent, fence = len(start["indent"]), start["fence"]
        end = i + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        assert end < len(lines), f"{path.name}:{i + 1}: the block is never closed"
        body = "\n".join(line[indent:] if line[:indent].strip() == "" else line for line in lines[i + 1:end])
        note = NOT_RUN.match(lines[i - 1]) if i else None
        blocks.append(Block(str(path.relative_to(REPO)), i + 1, start["lang"], body + "\n",
                            note["reason"] if note else None))
        i = end + 1
    return blocks


BLOCKS = [block for path in DOCS for block in read_blocks(path)]


# --- what each document's reader has at hand before the first block -------------------------------


def photo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (48, 36), (200, 120, 40)).save(path)


def classes(path: Path, count: int = 12) -> None:
    write_images(path / "cats", count, seed=1)
    write_images(path / "dogs", count, seed=2, bright=True)


def prepare_set(path: Path) -> None:
    """docs/data.md's folder: 999 photos a class, an empty file and a JPEG cut short."""
    classes(path, 999)
    (path / "cats" / "666.jpg").write_bytes(b"")
    whole = (path / "dogs" / "img_000.jpg").read_bytes()
    (path / "dogs" / "11702.jpg").write_bytes(whole[:-100])  # headers whole, image data cut short


def a_run(path: Path, trained_run: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(trained_run, path)


def bomb(path: Path) -> None:
    from test_faults import bomb as text

    path.write_text(text())


# Paths as the documents name them; "run" is a copy of the session's tiny trained run.
SETUP: dict[str, dict[str, object]] = {
    "README.md": {"photos": classes, "my_cat.jpg": photo, "more_photos": classes, "cat.jpg": photo},
    "docs/data.md": {"photos/train": prepare_set},
    "docs/evaluation.md": {"photos/validation": classes, "runs/20250101-120000-article": "run"},
    "docs/gpus.md": {"photos/train": classes},
    "docs/pictures.md": {"photos/cat.jpg": photo, "runs/20250101-120000-article": "run"},
    "docs/reliability.md": {"bomb.yaml": bomb},
    "docs/serving.md": {"runs/RUN": "run", "photo.jpg": photo, "cat.jpg": photo, "dog.jpg": photo},
}
# The recipe in docs/serving.md names the run folder `RUN` (ARTIFACT = "RUN/model.onnx").
LINKS = {"docs/serving.md": {"RUN": "runs/RUN"}}


# --- substitutions: the only changes made to a command before it runs ------------------------------


@dataclass
class Context:
    downloads: str  # base URL of the archives on 127.0.0.1
    sha256: dict[str, str]  # archive name -> digest
    port: int | None = None  # of the `catdog serve` this document started


def split_comment(line: str) -> tuple[str, str]:
    """(code, ` # comment`) of one shell line; a `#` inside quotes is code."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), " " + line[i:]
    return line, ""


def substitute(code: str, ctx: Context) -> str:
    """One command line as the test runs it. Each change, and why:"""
    # The tests run in the environment pip made, and never on the network.
    if code.startswith("pip install "):
        return ": " + code
    words = shlex.split(code)
    # Training: one epoch of 32x32 images in batches of 8 (seconds, not minutes); --set adds up,
    # the last value of a key wins.
    if "catdog" in words and words[words.index("catdog") + 1:][:1] == ["train"]:
        if any(sep in words for sep in ("&&", "||", "|", ";")):
            raise Failed(f"cannot shrink `{code}`: one command a line, or teach substitute() this one")
        code += " " + shlex.join(SHRINK)
    # A review trains a model per fold: two folds of the shrunk training.
    if "catdog" in words and words[words.index("catdog") + 1:][:1] == ["review"]:
        code += " " + shlex.join([*SHRINK, "--folds", "2"])
    # The demo: one epoch instead of four.
    if words[:2] == ["catdog", "demo"]:
        code += " --epochs 1"
    # Downloads: the same archive names, tiny, from a server on 127.0.0.1.
    if words[:2] == ["catdog", "download"]:
        name = "kagglecatsanddogs_5340.zip" if "petimages" in words else "cats_and_dogs_filtered.zip"
        code += f" --url {ctx.downloads}/{name}"
        if "petimages" in words:  # the registry's checksum is the real archive's
            code += f" --sha256 {ctx.sha256[name]}"
    # The server runs on a free port: port 8000 may be taken on a test machine.
    if ctx.port is not None:
        code = code.replace("127.0.0.1:8000", f"127.0.0.1:{ctx.port}")
    # curl: an HTTP error answer fails the block (curl alone exits 0 on a 4xx).
    if words[:1] == ["curl"]:
        code = "curl --silent --show-error --fail " + code[len("curl "):]
    return code


def logical_lines(text: str) -> list[str]:
    """Shell lines with backslash continuations joined."""
    joined, pending = [], ""
    for line in text.splitlines():
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
        else:
            joined.append(pending + line)
            pending = ""
    return joined


# --- running a document -----------------------------------------------------------------------------


@dataclass
class Outcome:
    status: str  # passed, failed or skipped
    message: str = ""
    output: str = ""


class Failed(Exception):
    pass


def run_shell(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """bash -e on `script`; on a timeout its whole process group is killed."""
    proc = subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise Failed(f"still running after {TIMEOUT_S} s:\n{script}\n{tail(out, err)}") from None
    return subprocess.CompletedProcess(script, proc.returncode, out, err)


def tail(out: str, err: str, limit: int = 3000) -> str:
    return f"--- stdout ---\n{out[-limit:]}\n--- stderr ---\n{err[-limit:]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Reader:
    """One document's blocks, run in order in one folder; a block runs once, after those above it."""

    doc: str
    root: Path
    env: dict[str, str]
    ctx: Context
    blocks: list[Block]
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    server: subprocess.Popen | None = None
    server_block: str = ""  # the block that started it
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def result(self, block: Block) -> Outcome:
        index = self.blocks.index(block)
        for i in range(index + 1):
            with self.lock:
                if i not in self.outcomes:
                    if self.stop.is_set():
                        return Outcome("skipped", "the test session is ending")
                    self.outcomes[i] = self.run(i)
        with self.lock:
            if index == len(self.blocks) - 1 and self.server is not None:
                try:  # the last block: nothing below needs the server
                    self.close()
                except Failed as exc:
                    self.outcomes[index] = Outcome("failed", f"{block.id}: {exc}")
            return self.outcomes[index]

    def run(self, index: int) -> Outcome:
        block = self.blocks[index]
        try:
            if block.not_run is not None:
                return check_flags(block, self.env)
            if block.lang in ("bash", "sh"):
                return Outcome("passed", output=self.bash(block))
            if block.lang == "python":
                return Outcome("passed", output=self.python(block))
            if block.transcript:
                return Outcome("passed", output=self.transcript(block))
            if block.lang == "text":
                return check_text(block)
            if block.lang == "yaml":
                return check_yaml(block, self.root)
            if block.lang == "json":
                return check_json(block, self.outcomes.get(index - 1))
            kind = f"a block labelled {block.lang!r}" if block.lang else "an unlabelled block"
            return Outcome("failed", f"{block.id}: {kind}: label it bash or "
                           "python (it runs), text (output or a picture), or write `$ command` lines followed by "
                           "their output; or put <!-- not run: REASON --> on the line above it")
        except Failed as exc:
            return Outcome("failed", f"{block.id}: {exc}")
        except Skipped as exc:
            return Outcome("skipped", str(exc))

    def bash(self, block: Block) -> str:
        if "curl" in block.text and shutil.which("curl", path=self.env["PATH"]) is None:
            raise Skipped("curl is not installed")
        if "--format litert" in block.text:  # the documents say Keras 3.13+ beside it
            from catdog.export import LITERT_KERAS
            from catdog.keras_private import keras_version

            if keras_version() < LITERT_KERAS:
                raise Skipped(f"--format litert needs Keras {LITERT_KERAS}; this is Keras {keras_version()}")
        outputs, script = [], []
        for line in logical_lines(block.text):
            code, comment = split_comment(line)
            words = shlex.split(code) if code.strip() else []
            if words[:2] == ["catdog", "serve"]:
                outputs.append(self.shell("\n".join(script)))
                script = []
                self.serve(code, block)
            elif code.strip():
                script.append(substitute(code, self.ctx) + comment)
        return "".join(outputs) + self.shell("\n".join(script))

    def shell(self, script: str) -> str:
        if not script.strip():
            return ""
        done = run_shell(script, self.root, self.env)
        if done.returncode != 0:
            raise Failed(f"exit {done.returncode} from:\n{script}\n{tail(done.stdout, done.stderr)}")
        return done.stdout

    def serve(self, code: str, block: Block) -> None:
        """`catdog serve` in the background on a free port, once it answers /v1/health."""
        self.close()
        self.ctx.port, self.server_block = free_port(), block.id
        command = f"exec {code} --port {self.ctx.port}"
        # Its log goes to a file: a pipe nobody reads would stop the server once full.
        with open(self.root / "serve.log", "a") as log:
            self.server = subprocess.Popen(["bash", "-c", command], cwd=self.root, env=self.env,
                                           stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                server, self.server = self.server, None
                raise Failed(f"`{command}` exited {server.returncode} before answering:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.ctx.port}/v1/health", timeout=5) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.close()
        raise Failed(f"`{command}` did not answer /v1/health within {TIMEOUT_S} s")

    def close(self) -> None:
        """Stop this document's server with SIGTERM, as Ctrl+C would, and check that it ended."""
        if self.server is None:
            return
        server, self.server = self.server, None
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            raise Failed(f"catdog serve (from {self.server_block}) was still running 60 s after SIGTERM:\n"
                         f"{self.log()}") from None
        if server.returncode != -signal.SIGTERM:
            raise Failed(f"catdog serve (from {self.server_block}) ended with {server.returncode} on SIGTERM, not "
                         f"by the signal:\n{self.log()}")

    def log(self) -> str:
        return "--- catdog serve's output ---\n" + (self.root / "serve.log").read_text(errors="replace")[-3000:]

    def python(self, block: Block) -> str:
        script = self.root / f"block_{block.line}.py"
        script.write_text(block.text)
        done = run_shell(f"python {script.name}", self.root, self.env)
        if done.returncode != 0:
            raise Failed(f"exit {done.returncode} from {script}\n{tail(done.stdout, done.stderr)}")
        return done.stdout

    def transcript(self, block: Block) -> str:
        """Each `$ command` runs; what follows it until the next `$ ` is what it prints (COMPARE)."""
        steps: list[tuple[str, list[str]]] = []
        for line in block.text.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line)
        outputs = []
        for command, expected in steps:
            code, _ = split_comment(command)
            script = substitute(code, self.ctx)
            done = run_shell(script, self.root, self.env)
            # What the terminal shows: stdout, and catdog's own lines on stderr.
            shown = done.stdout + "".join(line for line in done.stderr.splitlines(keepends=True)
                                          if line.startswith(("Error: ", "warning: ")))
            fails = any(line.startswith("Error: ") for line in expected)
            if done.returncode != (1 if fails else 0):
                raise Failed(f"`{script}` exited {done.returncode}\n{tail(done.stdout, done.stderr)}")
            if expected:
                compare(code, shown, expected, self.env["HOME"])
            outputs.append(done.stdout)
        return "".join(outputs)


class Skipped(Exception):
    pass


def compare(command: str, shown: str, expected: list[str], home: str) -> None:
    """The transcript's lines against what ran; COMPARE says how much of them must match."""
    how = next((how for prefix, how in COMPARE.items() if command.startswith(prefix)), "exact")
    got = shown.rstrip("\n").split("\n")
    want = "\n".join(expected).rstrip("\n").split("\n")
    got = [line.rstrip() for line in got]  # spaces at the end of a line are not seen on a terminal
    if how == "labels":
        got, want = [labels(got)], [labels(want)]
    elif how == "cache":
        got = [re.sub(r"-[0-9a-f]{10}/", "-1a2b3c4d5e/", line.replace(home, "~")) for line in got]
    if got != want:
        diff = "\n".join(f"  doc: {w!r}\n  got: {g!r}" for w, g in zip(want, got, strict=False) if w != g)
        raise Failed(f"`{command}` printed something else than the document shows ({how} comparison):\n{diff}\n"
                     f"--- printed ---\n{shown}")


def labels(lines: list[str]) -> str:
    """The first column of `catdog info`: the names of what it reports, not this machine's values."""
    return ", ".join(dict.fromkeys(re.split(r"\s{2,}", line)[0] for line in lines))


# How a transcript's output is compared; anything not listed must match exactly.
COMPARE = {
    "catdog info": "labels",  # versions and devices are this machine's
    "catdog prepare": "cache",  # the cache folder is under this machine's home, named by a hash of the path
}


# --- blocks that do not run: output, pictures, config fragments ---------------------------------------


def check_text(block: Block) -> Outcome:
    commands = [line for line in block.text.splitlines() if COMMAND.match(line)]
    if commands:
        return Outcome("failed", f"{block.id}: a text block holds a command ({commands[0]!r}): label it bash, "
                       "or write it as a `$ ` transcript")
    checked = [check(block.text) for match, check in TEXT_CHECKS if match(block.text)]
    if not checked:
        return Outcome("skipped", "text: output or a picture, not a command")
    return Outcome("passed")


def check_uneven_warning(text: str) -> None:
    """docs/evaluation.md's warning is the one `catdog train` prints for those counts."""
    from catdog.plan import uneven_warning

    found = re.search(r"\((\w+) (\d+), (\w+) (\d+);", text)
    assert found, text
    made = uneven_warning([found[1], found[3]], [int(found[2]), int(found[4])], weighted=False)
    if made != text.strip():
        raise Failed(f"catdog says\n  {made}\nnot\n  {text.strip()}")


def check_modules(text: str) -> None:
    """A picture of the code names files that exist and functions they define."""
    import importlib

    for name in re.findall(r"\b(\w+)\.py\b", text):
        if not (REPO / "catdog" / f"{name}.py").is_file():
            raise Failed(f"names {name}.py; catdog/ has no such file")
    for module, attribute in re.findall(r"\b(\w+)\.(\w+)\b", text):
        known = (REPO / "catdog" / f"{module}.py").is_file() and attribute != "py"
        if known and not hasattr(importlib.import_module(f"catdog.{module}"), attribute):
            raise Failed(f"names {module}.{attribute}; catdog/{module}.py defines no {attribute}")


TEXT_CHECKS = [
    (lambda text: text.startswith("warning: the training photos are uneven"), check_uneven_warning),
    (lambda text: re.search(r"\b\w+\.py\b", text) is not None, check_modules),
]


def check_yaml(block: Block, root: Path) -> Outcome:
    """A config fragment loads as a config file."""
    from catdog.config import load_config
    from catdog.errors import CatdogError

    path = root / f"block_{block.line}.yaml"
    path.write_text(block.text)
    try:
        load_config(path)
    except CatdogError as exc:
        return Outcome("failed", f"{block.id}: not a config catdog loads: {exc}")
    return Outcome("passed")


def check_json(block: Block, above: Outcome | None) -> Outcome:
    """JSON that parses; an answer shown after a block that printed answers has their shape."""
    try:
        shown = json.loads(block.text)
    except json.JSONDecodeError as exc:
        return Outcome("failed", f"{block.id}: not JSON: {exc}")
    if above is None or not above.output.strip():
        return Outcome("passed")
    answers, text, pos = [], above.output, 0
    decoder = json.JSONDecoder()
    while pos < len(text.rstrip()):
        value, pos = decoder.raw_decode(text, pos)
        answers.append(value)
        while pos < len(text) and text[pos].isspace():
            pos += 1
    if not any(shape(answer) == shape(shown) for answer in answers):
        return Outcome("failed", f"{block.id}: no answer printed by the block above has this shape:\n"
                       f"  doc: {shape(shown)}\n" + "".join(f"  got: {shape(a)}\n" for a in answers))
    return Outcome("passed")


def shape(value: object) -> object:
    """Keys and value types, not values."""
    if isinstance(value, dict):
        return {key: shape(v) for key, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


# --- blocks that do not run: their commands' flags still exist ---------------------------------------


def check_flags(block: Block, env: dict[str, str]) -> Outcome:
    """Not run, for the reason given; every catdog command, script and file it names still exists and
    takes the flags it is given."""
    checked = 0
    for line in logical_lines(block.text):
        code, _ = split_comment(line)
        try:
            words = shlex.split(code)
        except ValueError:  # a quote spanning lines (a JSON value): no command to check
            continue
        for i, word in enumerate(words):
            if word == "catdog" and i + 1 < len(words) and not words[i + 1].startswith("<"):
                problem = catdog_flags(words[i + 1:])
            elif re.fullmatch(r"(scripts|tests)/[\w.]+\.(py|sh)", word):
                problem = script_flags(word, words[i + 1:], env)
            else:
                continue
            checked += 1
            if problem:
                return Outcome("failed", f"{block.id} (not run: {block.not_run}): {problem}")
    flags = f" ({checked} commands' flags checked)" if checked else ""
    return Outcome("skipped", f"not run: {block.not_run}{flags}")


def options(words: list[str]) -> list[str]:
    found = []
    for word in words:
        if word in ("&&", "||", "|", ";", ">", "<") or word.startswith(">"):
            break
        if word.startswith("-") and not re.fullmatch(r"-\d.*", word):
            found.append(word.split("=")[0])
    return found


def catdog_flags(words: list[str]) -> str | None:
    import click

    from catdog.cli import main

    command: click.Command = main
    args = [w for w in words if w not in ("--debug",)]
    while isinstance(command, click.Group) and args and args[0] in command.commands:
        command = command.commands[args.pop(0)]
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)} | {"--help", "-h"}
    unknown = [opt for opt in options(args) if opt not in known]
    return f"`catdog {' '.join(words)}`: no option {', '.join(unknown)}" if unknown else None


def script_flags(path: str, words: list[str], env: dict[str, str]) -> str | None:
    script = REPO / path
    if not script.is_file():
        return f"{path} does not exist"
    wanted = options(words)
    if not wanted or script.suffix != ".py" or path.startswith("tests/"):
        return None
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=60)
    unknown = [opt for opt in wanted if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", done.stdout)]
    return f"`{path}`: --help names no {', '.join(unknown)}" if unknown else None


# --- fixtures ------------------------------------------------------------------------------------------


def archive(path: Path, layout: dict[str, int]) -> bytes:
    """A zip of `count` tiny photos in each folder of `layout`."""
    with zipfile.ZipFile(path, "w") as zf:
        for folder, count in layout.items():
            for i in range(count):
                im = Image.new("RGB", (24, 24), (40 + 5 * i, 200 if "og" in folder else 30, 90))
                scratch = path.parent / "scratch.jpg"
                im.save(scratch)
                zf.write(scratch, f"{folder}/{i}.jpg")
    return path.read_bytes()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    """The two datasets' archives, tiny, served from 127.0.0.1: (base URL, name -> SHA-256)."""
    folder = tmp_path_factory.mktemp("archives")
    files = {
        "cats_and_dogs_filtered.zip": archive(folder / "c.zip", {
            "cats_and_dogs_filtered/train/cats": 12, "cats_and_dogs_filtered/train/dogs": 12,
            "cats_and_dogs_filtered/validation/cats": 4, "cats_and_dogs_filtered/validation/dogs": 4}),
        "kagglecatsanddogs_5340.zip": archive(folder / "p.zip", {"PetImages/Cat": 10, "PetImages/Dog": 10}),
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            body = files.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}
    server.shutdown()
    server.server_close()


# Documents read at once: two subprocesses keep two cores busy where one would leave a core idle
# while Python and TensorFlow import.
WORKERS = min(2, os.cpu_count() or 1)


@pytest.fixture(scope="module")
def readers(request, tmp_path_factory, downloads, trained):
    """A Reader per document; the selected blocks run ahead, WORKERS documents at a time, and each
    test waits for its own block. Servers are stopped at the end."""
    base = tmp_path_factory.mktemp("docs")
    home = base / "home"  # a home of its own: catdog's cache, Keras's and matplotlib's files go here
    home.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("CATDOG_CACHE", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
               PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])]),
               MPLBACKEND="Agg")
    made: dict[str, Reader] = {}
    lock = threading.Lock()

    def reader(doc: str) -> Reader:
        with lock:
            return make(doc)

    def make(doc: str) -> Reader:
        if doc not in made:
            root = base / doc.replace("/", "_")
            (root / "tmp").mkdir(parents=True)
            for path, maker in SETUP.get(doc, {}).items():
                if maker == "run":
                    a_run(root / path, trained[0])
                else:
                    maker(root / path)  # type: ignore[operator]
            for link, target in LINKS.get(doc, {}).items():
                (root / link).symlink_to(target)
            made[doc] = Reader(doc, root, {**env, "TMPDIR": str(root / "tmp")}, Context(*downloads),
                               [b for b in BLOCKS if b.doc == doc])
        return made[doc]

    # The last selected block of each document, the longest document (README.md) first.
    wanted: dict[str, Block] = {}
    for item in request.session.items:
        block = getattr(item, "callspec", None) and item.callspec.params.get("block")
        if isinstance(block, Block) and item.module is request.module:
            wanted[block.doc] = block
    ahead = concurrent.futures.ThreadPoolExecutor(WORKERS)
    for doc in sorted(wanted, key=lambda doc: doc != "README.md"):
        ahead.submit(lambda doc=doc: reader(doc).result(wanted[doc]))
    yield reader
    for each in made.values():
        each.stop.set()
    ahead.shutdown(wait=True, cancel_futures=True)
    for each in made.values():
        each.close()


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in BLOCKS])
def test_block(readers, block):
    outcome = readers(block.doc).result(block)
    if outcome.status == "skipped":
        pytest.skip(outcome.message)
    if outcome.status == "failed":
        pytest.fail(outcome.message, pytrace=False)


def test_every_snippet_is_in_a_fence():
    """An indented code block, or a not-run note with no fence under it, would escape the test."""
    problems = []
    for path in DOCS:
        lines, inside = path.read_text(encoding="utf-8").splitlines(), None
        for i, line in enumerate(lines):
            fence = FENCE.match(line)
            if fence and inside is None:
                inside = fence["fence"]
                continue
            if inside is not None:
                inside = None if line.strip() == inside else inside
                continue
            above = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            if (line.startswith("    ") and line.strip() and i and not lines[i - 1].strip()
                    and not above.startswith((" ", "-", "*", "|")) and not re.match(r"\d+\.", above)):
                problems.append(f"{path.name}:{i + 1}: an indented code block: fence it (```bash ...```)")
            if NOT_RUN.match(line) and not (i + 1 < len(lines) and FENCE.match(lines[i + 1])):
                problems.append(f"{path.name}:{i + 1}: a not-run note with no fence on the next line")
    assert not problems, "\n".join(problems)


def test_the_extractor_finds_the_blocks():
    """The blocks the documents are known to hold, so a parsing slip cannot make the test vacuous."""
    ids = {b.id: b for b in BLOCKS}
    summary = next(b for b in BLOCKS if b.doc == "README.md" and b.text.startswith("$ catdog summary -c article"))
    assert summary.transcript and "total params:" in summary.text
    recipe = [b for b in BLOCKS if b.doc == "docs/serving.md" and b.lang == "python"]
    assert len(recipe) == 1 and "def preprocess(" in recipe[0].text
    assert len({b.doc for b in BLOCKS}) >= 8 and len(ids) == len(BLOCKS) >= 30
