"""The `catdog` command line: each command parses, calls one library function, prints the result.

Each command imports the library it calls inside its function: most of catdog imports TensorFlow,
OpenCV or matplotlib, and `catdog --help` should answer at once. tqdm is imported when a bar is
first drawn: its import costs a tenth of `catdog predict`'s whole ONNX start-up.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from catdog import __version__, native_logs
from catdog.errors import CatdogError, Terminated, first_line, shown, terminating

if TYPE_CHECKING:
    from tqdm import tqdm

# TensorFlow's C++ start-up chatter buries catdog's own output; its errors still show. Some of it
# ignores TF_CPP_MIN_LOG_LEVEL, so catdog.native_logs filters what TensorFlow's import writes.
# CATDOG_BACKEND_LOGS=1 shows everything the backend says, for bug reports.
if os.environ.get("CATDOG_BACKEND_LOGS") != "1":
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    native_logs.install()


def warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """Show a library's Python warning as one line on stderr, without its source line."""
    click.echo(f"warning: {first_line(message) if str(message).strip() else category.__name__}", err=True)


def debugging() -> bool:
    """Whether `--debug` or CATDOG_DEBUG=1 asked for full tracebacks (for bug reports)."""
    ctx = click.get_current_context(silent=True)
    flag = bool(ctx and (ctx.find_root().params or {}).get("debug"))
    return flag or os.environ.get("CATDOG_DEBUG", "") not in ("", "0")


def friendly(fn):
    """Turn every expected failure into one line on stderr and exit code 1 (see `one_line`).

    Expected: catdog's own errors, OS errors (a path that cannot be read or written, a full disk)
    and running out of memory. Anything else is a bug and shows its traceback. With --debug (or
    CATDOG_DEBUG=1) nothing is caught, so the traceback of an expected failure shows too.
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BrokenPipeError:  # `catdog runs --json | head`: the reader has all it wanted
            if debugging():
                raise
            # Python's own recipe: stdout to /dev/null, so that flushing it at exit raises nothing.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(1) from None
        except (CatdogError, OSError, MemoryError) as exc:
            if debugging():
                raise
            raise click.ClickException(one_line(exc)) from None
        except (ImportError, ValueError) as exc:  # KERAS_BACKEND=torch without torch; anything else is a bug
            from catdog.devices import missing_backend

            if debugging() or (line := missing_backend(exc)) is None:
                raise
            raise click.ClickException(line) from None
    return wrapper


def one_line(exc: BaseException) -> str:
    """An expected failure as one line: the path an OS error concerns, never a multi-line dump."""
    if isinstance(exc, CatdogError):
        text = str(exc)
    elif isinstance(exc, MemoryError):
        text = "out of memory; lower data.image_size, train.batch_size or train.micro_batch"
    elif isinstance(exc, OSError):
        what = exc.strerror or type(exc).__name__
        where = [shown(f) for f in (exc.filename, exc.filename2) if f is not None]
        text = f"{' -> '.join(where)}: {what}" if where else f"{what} (errno {exc.errno})" if exc.errno else str(exc)
        if exc.errno == errno.ENOSPC:
            text += "; free some space or point data.cache_dir / --out elsewhere"
    else:
        text = str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return shown(" ".join(lines) if len(lines) <= 3 else lines[0], limit=500)


@contextlib.contextmanager
def sigterm_unwinds(command: str) -> Iterator[None]:
    """Turn SIGTERM into an exception inside the block, so that the library's `with` blocks and
    `finally` clauses run (an export's scratch folder is removed) before the process exits with
    128 + 15, as a process killed by SIGTERM does. A second SIGTERM kills at once.

    Raised while TensorFlow's C++ is calling back into Python, the exception comes out as another
    (a SystemError or TypeError wrapping it); after a SIGTERM, whatever ends the block ends it so.
    Raised inside a callback whose exceptions Python ignores (a garbage-collector callback, such as
    JAX's, or a __del__), it is lost: the signal is then sent again, to be raised in the code the
    callback interrupted. Swallowed by a library's bare `except:`, it is raised again where the work
    asks `raise_if_terminating` before putting its result in place; a block that ends anyway had
    finished, and says so.
    """
    def stop(signum, frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        terminating.set()
        raise Terminated

    def swallowed(unraisable) -> None:
        if isinstance(unraisable.exc_value, Terminated):
            # Sent again from another thread a moment later: sent from here, it would be handled
            # here, inside the hook, and be lost again.
            signal.signal(signal.SIGTERM, stop)
            threading.Timer(0.001, os.kill, (os.getpid(), signal.SIGTERM)).start()
            return
        previous_hook(unraisable)

    previous = signal.signal(signal.SIGTERM, stop)
    previous_hook, sys.unraisablehook = sys.unraisablehook, swallowed
    try:
        yield
    except BaseException as exc:
        if not (terminating.is_set() or isinstance(exc, Terminated)):
            raise
        click.echo(f"{command} stopped by SIGTERM; what it had half written was removed", err=True)
        raise click.exceptions.Exit(128 + signal.SIGTERM) from None
    else:
        if terminating.is_set():
            click.echo(f"{command} had finished when SIGTERM arrived; what it wrote is complete", err=True)
            raise click.exceptions.Exit(128 + signal.SIGTERM)
    finally:
        terminating.clear()
        sys.unraisablehook = previous_hook
        signal.signal(signal.SIGTERM, previous)


def dumps(data) -> str:
    """One line of JSON; NaN and infinity (not JSON) become null."""
    from catdog.runs import finite

    return json.dumps(finite(data), allow_nan=False)


def config_options(fn):
    fn = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                      help="Override a config value, e.g. --set train.epochs=1 (repeatable).")(fn)
    return click.option("-c", "--config", "config_path", metavar="NAME|FILE",
                        help="A built-in config (article, small, large, transfer: see `catdog config list`) "
                             "or a YAML file (default: the article's settings).")(fn)


def chosen_run(run: str | None) -> str:
    """The run folder a command works on; without --run, the latest, named on stderr."""
    if run is not None:
        return run
    from catdog.runs import resolve_run

    latest = str(resolve_run(None))
    click.echo(f"using the latest run, {shown(latest)} (pick another with --run)", err=True)
    return latest


def load(config_path: str | None, overrides: tuple[str, ...]):
    from catdog.api import load_config  # catdog.load_config, as a script calls it

    return load_config(config_path, overrides)


def terminal() -> Any:
    """stderr if it is a terminal, else stdout if that is one (`catdog train 2>log`), else None."""
    for stream in (sys.stderr, sys.stdout):
        with contextlib.suppress(AttributeError, ValueError):
            if stream.isatty():
                return stream
    return None


def screen(stream: Any) -> dict[str, int]:
    """The terminal's size as tqdm's options; 80x24 where it reports none. A pseudo-terminal
    made by `script` (outside a terminal) or a CI runner is 0x0, on which tqdm measures -1 rows
    and draws nothing at all."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, ValueError, OSError):
        size = os.terminal_size((0, 0))
    fallback = shutil.get_terminal_size((80, 24))
    return {"ncols": size.columns or fallback.columns or 80, "nrows": size.lines or fallback.lines or 24}


class Bar:
    """A tqdm bar fed by the library's (done, total) progress callback; a context manager that
    closes it, so that an error line never lands after a half-drawn bar.

    Drawn only where stderr or stdout is a terminal (on that one): a log file gets the library's
    plain lines, not carriage returns.
    """

    def __init__(self, desc: str, unit: str = "img", **options: Any) -> None:
        self.desc, self.unit = desc, unit
        self.options = {"disable": None, **options}
        self.bar: tqdm | None = None

    def __call__(self, done: int, total: int | None) -> None:
        from tqdm import tqdm

        if self.bar is None or self.bar.total != total or done < self.bar.n:
            self.close()
            shown_on = terminal()
            options: dict[str, Any] = dict(self.options)
            if options["disable"] is None:
                options["disable"] = shown_on is None
            if shown_on is not None:
                options.update(screen(shown_on))
            self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=shown_on or sys.stderr, leave=False,
                            **options)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="catdog")
@click.option("--debug", is_flag=True,
              help="Show the full traceback of a failure (also CATDOG_DEBUG=1), for bug reports.")
def main(debug) -> None:
    """Train a convolutional network on a folder of photos, see what it learns, predict new photos.

    Start with `catdog demo` (no data needed), then `catdog train --data DIR`.
    """
    if not debugging() and os.environ.get("CATDOG_BACKEND_LOGS") != "1":
        warnings.showwarning = warning_line


@main.command()
@config_options
@click.option("--data", type=click.Path(), help="Folder of class sub-folders (default: data.dir).")
@friendly
def prepare(config_path, overrides, data):
    """Decode and resize a photo folder into catdog's cache, listing every skipped file.

    Example: catdog prepare -c article --data photos/train
    """
    from catdog.decisions import summary
    from catdog.splits import data_dir, prepare_folder

    config = load(config_path, overrides)
    with Bar("prepare") as bar:
        p = prepare_folder(config, data_dir(config, data), progress=bar)
    print_prepared(p)
    for line in summary([p.found]):
        click.echo(shown(line, 10_000))


def print_prepared(p) -> None:
    # Every file is an image or skipped, and was decoded now, read from the cache or never opened
    # (hidden and system files, names without a class, files that vanished): the counts add up.
    files = len(p.files) + len(p.skipped)
    unopened = files - p.decoded - p.from_cache
    click.echo(f"{shown(p.found.root)}: {files} files ({p.found.layout}): {len(p.files)} images, "
               f"{len(p.skipped)} skipped; {p.decoded} decoded now, {p.from_cache} from cache"
               + (f", {unopened} not opened" if unopened else ""))
    for name, n in p.class_counts().items():
        click.echo(f"  {shown(name)}: {n}")
    if p.skipped:
        click.echo(f"skipped {len(p.skipped)} files (list in {shown(p.cache_dir / 'skipped.txt')}):")
        for f, reason in p.skipped:
            click.echo(f"  {shown(f)}: {reason}")
    click.echo(f"cache: {shown(p.cache_dir)}")


@main.command()
@config_options
@click.option("--data", type=click.Path(), help="Folder of class sub-folders (default: data.dir).")
@click.option("--out", type=click.Path(file_okay=False),
              help="Run folder to create (default: runs/<time>-<config name>).")
@click.option("--quiet", is_flag=True, help="No progress bars (the one line per epoch still prints).")
@click.option("--resume", type=click.Path(file_okay=False), metavar="RUN_DIR",
              help="Continue an interrupted run from its last completed epoch, with its own config.")
@friendly
def train(config_path, overrides, data, out, quiet, resume):
    """Train the configured model and write a run folder (model, classes, config, history).

    Prints one line per epoch (a progress bar of batches too, on a terminal).

    Example: catdog train -c article --data photos/train --set train.epochs=1
    """
    from catdog.errors import TrainingInterrupted
    from catdog.training import resume as resume_training
    from catdog.training import train as run_training

    if resume is not None and (config_path or overrides or out):
        raise click.UsageError("--resume continues a run with its own config and folder; drop -c, --set and --out")
    try:
        with Bar("prepare") as bar, Bar("batches", unit="batch") as batches:
            say = lambda m: (bar.close(), batches.close(), click.echo(shown(m, 10_000)))  # noqa: E731
            feed = None if quiet else batches
            if resume is not None:
                result = resume_training(resume, data, report=say, progress=bar, batch_progress=feed)
            else:
                config = load(config_path, overrides)
                result = run_training(config, data, out, report=say, progress=bar, batch_progress=feed)
    except TrainingInterrupted as stop:  # Ctrl-C: which epoch is saved, and the command that resumes
        click.echo(str(stop), err=True)
        raise click.exceptions.Exit(128 + signal.SIGINT) from None
    click.echo(shown(result.line(), 10_000))


@main.command()
@config_options
@click.option("--data", type=click.Path(), help="Folder of class sub-folders (default: data.dir; "
                                                "data.validation_dir is reviewed with it).")
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True,
              help="Quick models trained, each scoring the photos the others train on.")
@click.option("--out", type=click.Path(), help="Folder for the review's files (default: PHOTOS-review beside PHOTOS).")
@click.option("--force", is_flag=True, help="Replace the files of an earlier review in that folder.")
@friendly
def review(config_path, overrides, data, folds, out, force):
    """Find likely mislabelled photos, exact and near copies, and outliers, before training.

    Trains a quick model per fold (the config's model, 20 epochs at 96x96 unless --set says
    otherwise), then writes issues.csv, contact sheets, and decisions.csv to edit and train with
    (--set data.decisions=...). Never moves, renames or deletes a photo. Needs catdog[review].

    Example: catdog review -c small --data photos
    """
    from catdog.review import QUICK
    from catdog.review import review as run_review
    from catdog.review_files import DECISIONS_FILE, summary_lines

    config = load(config_path, (*QUICK, *overrides))
    with sigterm_unwinds("review"), Bar("prepare") as bar, Bar("batches", unit="batch") as batches:
        say = lambda m: (bar.close(), batches.close(), click.echo(shown(m, 10_000), err=True))  # noqa: E731
        result = run_review(config, data, out, folds, force, report=say, progress=bar, batch_progress=batches)
    for line in summary_lines(result, result.out_dir):
        click.echo(line)
    for path in result.files:
        click.echo(f"wrote {shown(path)}")
    decisions = shown(result.out_dir / DECISIONS_FILE)
    click.echo(f"next: look at the sheets, edit {decisions}, then train with --set data.decisions={decisions}")


@main.command()
@click.option("--run", type=click.Path(), help="Run folder (default: the latest under runs/).")
@click.option("--data", type=click.Path(), help="Labelled folder to score (default: the run's held-out split).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--tta", is_flag=True, help="Average each photo's answer with its mirror image's (two passes).")
@click.option("--out", type=click.Path(file_okay=False),
              help="Folder for the report and pictures (default: RUN/evaluation/<set>/), e.g. for a read-only run.")
@friendly
def evaluate(run, data, as_json, tta, out):
    """Score a trained run: accuracy, balanced accuracy, macro-F1, precision/recall/F1 per class,
    confusion matrix, log loss; one CSV row per photo (photos.csv beside report.json).

    Example: catdog evaluate --data photos/validation
    """
    from catdog.evaluation import evaluate as run_evaluation

    run = chosen_run(run)
    with Bar("prepare") as bar:
        report = run_evaluation(run, data, progress=bar, tta=tta, out=out)
    if as_json:
        click.echo(dumps(report.to_dict()))
    else:
        click.echo(report.table())
        click.echo(f"\nreport: {shown(report.out_dir / 'report.json')}")
        click.echo(f"per-photo results: {shown(report.out_dir / 'photos.csv')}")
        for picture in report.pictures:
            click.echo(f"picture: {shown(picture)}")
    if report.tensorboard_line:
        click.echo(report.tensorboard_line, err=as_json)  # stdout holds only the JSON


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--run", type=click.Path(), help="Run folder (default: the latest under runs/).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--tta", is_flag=True, help="Average each photo's answer with its mirror image's (two passes).")
@friendly
def predict(paths, run, as_json, tta):
    """Predict the class of images (files, or folders searched recursively).

    Example: catdog predict photos/new/cat1.jpg photos/more/
    """
    from catdog.images import not_a_local_file
    from catdog.prediction import predict as run_prediction

    run = chosen_run(run)
    failures = 0
    # "-" and URLs each get their own line, as typed (a path folds a URL's "//").
    reasons = {p: not_a_local_file(p) for p in paths}
    for path in paths:
        if (reason := reasons[path]) is not None:
            failures += 1
            click.echo(dumps({"path": path, "error": reason}) if as_json else f"{shown(path)}: error: {reason}",
                       err=not as_json)
    paths = tuple(p for p in paths if reasons[p] is None)
    for p in run_prediction(list(paths), run, tta=tta, report=lambda m: click.echo(m, err=True)) if paths else ():
        if p.error is not None:
            failures += 1
        if as_json:
            click.echo(dumps(p.to_dict()))
        elif p.error is not None:
            click.echo(f"{shown(p.path)}: error: {p.error}", err=True)
        else:
            click.echo(f"{shown(p.path)}: {shown(p.label)} ({p.probability:.3f})")
    if failures:
        raise click.exceptions.Exit(1)


@main.command()
@click.argument("image", type=click.Path())
@click.option("--run", type=click.Path(), help="Run folder (default: the latest under runs/).")
@click.option("--out", type=click.Path(file_okay=False),
              help="Folder for the pictures (default: RUN/show/<image name>/).")
@friendly
def show(image, run, out):
    """Draw what the network sees in one photo: input, filters, every feature map, a HiResCAM heat map.

    Example: catdog show photos/cat.jpg
    """
    from catdog.show import show as draw

    result = draw(image, chosen_run(run), out)
    click.echo(f"{shown(result.image)}: {shown(result.label)} ({result.probability:.3f})")
    for path in result.files:
        click.echo(f"  wrote {shown(path)}")


@main.command()
@config_options
@click.option("--run", type=click.Path(), help="Summarise a trained run's model instead of a config.")
@click.option("--classes", type=click.IntRange(min=2), default=2, show_default=True, help="Output classes (with -c).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--diagram", type=click.Path(dir_okay=False),
              help="Also draw the layers as boxes into this new PNG file.")
@friendly
def summary(config_path, overrides, run, classes, as_json, diagram):
    """Every layer's output shape and parameter count, with the output-size formula worked out.

    Example: catdog summary -c article
    """
    from catdog.summary import summarize, summarize_config

    if run is not None and config_path is not None:
        raise click.UsageError("give either -c CONFIG or --run RUN_DIR, not both")
    if run is not None:
        from catdog.runs import load_run

        s = summarize(load_run(run).model)
    else:
        s = summarize_config(load(config_path, overrides), classes)
    click.echo(dumps(s.to_dict()) if as_json else s.table())
    if diagram is not None:
        from catdog.summary import summary_diagram

        click.echo(f"diagram: {shown(summary_diagram(s, diagram))}", err=as_json)


@main.command()
@click.option("--workdir", type=click.Path(file_okay=False),
              help="Where to draw the images and write the run (default: a new temporary folder).")
@click.option("--epochs", type=click.IntRange(min=1), default=4, show_default=True)
@friendly
def demo(workdir, epochs):
    """Run the whole path on a synthetic two-class image set: no data or network needed.

    Example: catdog demo
    """
    from catdog.demo import run_demo

    root = workdir or tempfile.mkdtemp(prefix="catdog-demo-")
    with Bar("prepare") as bar:
        run_demo(root, epochs, say=lambda m: (bar.close(), click.echo(m)), progress=bar)


@main.command()
@click.argument("dataset", required=False)
@click.option("--to", type=click.Path(file_okay=False), default="data", show_default=True,
              help="Folder to download and extract into.")
@click.option("--url", help="Fetch the archive from here instead: a mirror, or file:///path/to/archive.zip.")
@click.option("--sha256", help="Expected SHA-256 of the archive (default: the published one, where known).")
@friendly
def download(dataset, to, url, sha256):
    """Download a photo dataset (petimages, or the default cats_and_dogs_filtered) into class folders.

    Example: catdog download petimages --to data
    """
    from catdog.download import DATASETS, DEFAULT_DATASET, existing
    from catdog.download import download as fetch

    name = dataset or (None if url else DEFAULT_DATASET)
    known = DATASETS.get(name.lower()) if name else None
    if known and existing(name, Path(to)):
        click.echo(f"{name} is already in {to}; nothing downloaded")
    elif known and not (sha256 or known.sha256):
        click.echo(f"note: no published SHA-256 for {name}; pass --sha256 to verify the archive", err=True)
    # Drawn in a log file too: a download is long enough that its progress is worth keeping there.
    with Bar("download", unit="B", unit_scale=True, unit_divisor=1024, disable=False) as bar:
        root = fetch(name, Path(to), url=url, sha256=sha256, progress=bar)
    counts = {d.name: sum(1 for f in d.iterdir() if f.is_file()) for d in sorted(root.iterdir()) if d.is_dir()}
    summary_line = ", ".join(f"{k}: {n}" for k, n in counts.items())
    click.echo(f"{sum(counts.values())} photos in {shown(root)} ({shown(summary_line)})")
    click.echo(f"next: catdog train --data {shown(root)}")


@main.command()
@config_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@friendly
def info(config_path, overrides, as_json):
    """Versions, the Keras backend, the devices it sees, and the precision and XLA setting training would use.

    Pick the backend with KERAS_BACKEND=tensorflow|jax|torch.

    Example: catdog info
    """
    from catdog.devices import info as gather

    report = gather(load(config_path, overrides))
    click.echo(dumps(report.to_dict()) if as_json else report.table())


@main.group("config")
def config_group() -> None:
    """The built-in configs: list them, print one to edit, or print what -c/--set resolve to.

    Example: catdog config show large > my.yaml
    """


@config_group.command("list")
def config_list():
    """List the built-in configs, each with what it is for.

    Example: catdog config list
    """
    from catdog.config import builtin_configs, describe

    configs = builtin_configs()
    width = max(map(len, configs))
    for name, f in configs.items():
        click.echo(f"{name:<{width}}  {describe(f.read_text())}")


@config_group.command("show")
@click.argument("name")
@friendly
def config_show(name):
    """Print a built-in config (or a config file) as written, comments included, to copy and edit.

    Example: catdog config show large > my.yaml && catdog train -c my.yaml --data photos
    """
    from catdog.config import config_source, config_text

    click.echo(config_text(*config_source(name)), nl=False)


@config_group.command("resolve")
@config_options
@friendly
def config_resolve(config_path, overrides):
    """Print the complete config that -c and --set resolve to: every key its model reads, defaults included.

    Example: catdog config resolve -c small --set train.epochs=2
    """
    from catdog.config import config_yaml

    click.echo(config_yaml(load(config_path, overrides)), nl=False)


@main.command("export")
@click.option("--run", type=click.Path(), help="Run folder (default: the latest under runs/).")
@click.option("--format", "fmt", type=click.Choice(["onnx", "savedmodel", "litert"]), default="onnx", show_default=True,
              help="onnx (ONNX Runtime), savedmodel (TensorFlow Serving, tf.saved_model.load) or litert (phones).")
@click.option("--out", type=click.Path(),
              help="Artifact path (default: model.onnx, savedmodel/ or model.tflite in the run folder).")
@click.option("--force", is_flag=True, help="Replace an existing artifact at the path (and its contract).")
@friendly
def export_command(run, fmt, out, force):
    """Export a trained run as a standalone model, its contract in a JSON file beside it.

    After `train` has written RUN/model.onnx, `export --format onnx` says so and writes nothing.

    Example: catdog export --format onnx
    """
    from catdog.export import export

    with sigterm_unwinds("export"):
        result = export(chosen_run(run), fmt, out, force=force)
    click.echo(shown(result.line(), 1000))
    for note in result.notes:
        click.echo(f"note: {note}", err=True)


@main.command()
@click.option("--run", type=click.Path(), help="Run folder (default: the latest under runs/).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; other than loopback, anyone who reaches it can use the model.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port (0: any free port).")
@click.option("--no-explain", is_flag=True,
              help="No /v1/explain (the page's heat map and activation maps): with model.onnx the server "
                   "then needs no TensorFlow.")
@friendly
def serve(run, host, port, no_explain):
    """Serve a trained run: a web page at / and a JSON API under /v1 (predict, explain, model, health).

    Example: catdog serve, then open http://127.0.0.1:8000/
    """
    from catdog.serve import ServeConfig
    from catdog.serve import serve as run_server

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("catdog.serve")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        run_server(chosen_run(run), ServeConfig(host=host, port=port, explain=not no_explain),
                   ready=lambda url: click.echo(f"serving {url} (Ctrl+C stops)", err=True))
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl+C once the requests in flight are answered
        click.echo("stopped", err=True)


@main.group("cache", invoke_without_command=True)
@click.option("--cache-dir", type=click.Path(file_okay=False),
              help="The cache root (default: CATDOG_CACHE, else ~/.cache/catdog).")
@click.pass_context
@friendly
def cache_group(ctx, cache_dir):
    """List the prepared-image caches (photo folder, image size, files, size, last use), or clear them.

    Example: catdog cache, then catdog cache clear --older-than 30
    """
    ctx.obj = cache_dir
    if ctx.invoked_subcommand is None:
        ctx.invoke(cache_list)


@cache_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per cache.")
@click.pass_obj
@friendly
def cache_list(cache_dir, as_json=False):
    """List each cache: the photo folder, image size, files, bytes on disk and last use; then the total.

    Example: catdog cache list
    """
    from catdog.cache_admin import cache_entries, cache_root, entries_table

    entries = cache_entries(cache_dir)
    if as_json:
        for e in entries:
            click.echo(dumps(e.to_dict()))
    else:
        click.echo(entries_table(entries, cache_root(cache_dir)))


@cache_group.command("clear")
@click.option("--all", "everything", is_flag=True, help="Remove every cache.")
@click.option("--data", type=click.Path(), metavar="FOLDER", help="Remove the caches of this photo folder.")
@click.option("--older-than", type=click.FloatRange(min=0), metavar="DAYS",
              help="Remove the caches unused for at least DAYS days.")
@click.pass_obj
@friendly
def cache_clear(cache_dir, everything, data, older_than):
    """Remove caches (never the photos; the next train prepares again). One of --all, --data, --older-than.

    Example: catdog cache clear --older-than 30
    """
    from catdog.cache_admin import clear_cache, entries_table, size_text

    if not (everything or data or older_than is not None):
        raise click.UsageError("say what to remove: --all, --data FOLDER or --older-than DAYS")
    if everything and (data or older_than is not None):
        raise click.UsageError("--all removes every cache; drop --data and --older-than, or --all")
    result = clear_cache(cache_dir, everything=everything, data=data, older_than_days=older_than)
    for e in result.in_use:
        click.echo(f"kept {shown(e.path)}: in use by another catdog process", err=True)
    for e in result.foreign:
        click.echo(f"kept the folder {shown(e.path)}: it holds files catdog did not write", err=True)
    if result.removed or result.foreign:
        click.echo(entries_table(result.removed + result.foreign, result.root).rsplit("\n", 1)[0])
    count = len(result.removed) + len(result.foreign)
    click.echo(f"removed {count} cache{'s' * (count != 1)}, freed {size_text(result.freed)} in {shown(result.root)}")


@main.command("tune")
@config_options
@click.option("--data", type=click.Path(), help="Folder of class sub-folders (default: data.dir); tune holds "
              "out tune.holdout of it to score the trials.")
@click.option("--budget", required=True, metavar="TIME", help="Wall time for the whole search: 90s, 30m, 1h, 1h30m.")
@click.option("--trials", type=click.IntRange(min=1), help="Stop at this many finished trials in the study.")
@click.option("--space", "space_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="YAML {config key: [choices] or {low, high, log, step}}, over the config's tune.space.")
@click.option("--out", type=click.Path(file_okay=False), help="The tune folder (default: tune/<config name>); "
              "the same folder again continues its study.")
@click.option("--study", "study_name", default="tune", show_default=True, help="The study's name in the database.")
@click.option("--storage", metavar="URL", help="An Optuna database URL shared by several machines, e.g. "
              "postgresql://user:pass@host/db (default: SQLite in the tune folder).")
@click.option("--quiet", is_flag=True, help="No progress bars (the lines per trial and epoch still print).")
@friendly
def tune(config_path, overrides, data, budget, trials, space_file, out, study_name, storage, quiet):
    """Search config settings with Optuna within a wall-time budget; each trial is a run folder under
    TUNE_DIR/trials, scored on photos tune holds out of --data. Writes best.yaml, trials.csv, search.png.

    Example: catdog tune -c small --data photos/train --budget 30m
    """
    from catdog.tune import parse_budget, read_space
    from catdog.tune import tune as run_tune

    seconds = parse_budget(budget)
    config = load(config_path, overrides)
    space = read_space(space_file) if space_file else None
    out = out or str(Path("tune") / (config.name or "config"))
    try:
        with Bar("prepare") as bar, Bar("batches", unit="batch") as batches:
            say = lambda m: (bar.close(), batches.close(), click.echo(shown(m, 10_000)))  # noqa: E731
            result = run_tune(config, data, out, seconds, trials=trials, space=space,
                              space_source=f"--space {space_file}", study=study_name, storage=storage,
                              report=say, progress=None if quiet else bar)
    except KeyboardInterrupt:  # Ctrl-C: the study keeps every finished trial; the trial cut short is failed
        click.echo(f"tune stopped; the same command continues its study in {shown(out)}", err=True)
        raise click.exceptions.Exit(128 + signal.SIGINT) from None
    click.echo(result.table())
    for f in result.files:
        click.echo(f"wrote {shown(f)}")
    click.echo(shown(result.line(), 10_000))


@main.command("runs")
@click.argument("folder", required=False, default="runs", type=click.Path())
@click.option("--sort", type=click.Choice(["name", "config", "model", "data", "epochs", "metric", "accuracy",
                                           "balanced", "time", "state"]),
              default="name", show_default=True, help="Column to sort by (runs without a value come last).")
@click.option("--config", "config_name", metavar="NAME", help="Only the runs of this config.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
@friendly
def runs_command(folder, sort, config_name, as_json):
    """List the runs under FOLDER (default runs/): config, model, data, epochs, kept metric, latest
    evaluation, training time and state; a damaged run folder is a row saying what is wrong.

    Example: catdog runs --sort accuracy --config small
    """
    from catdog.run_table import list_runs, runs_table

    rows = list_runs(folder, config=config_name, sort=sort)
    if as_json:
        for row in rows:
            click.echo(dumps(row.to_dict()))
    else:
        click.echo(runs_table(rows))


@main.command("compare")
@click.argument("runs", nargs=-1, type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), default="compare.png", show_default=True,
              help="The PNG of the runs' learning curves overlaid.")
@click.option("--force", is_flag=True, help="Replace the PNG at --out if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the PNG is still drawn).")
@friendly
def compare_command(runs, out, force, as_json):
    """Compare two or more runs: the config keys that differ, the metrics side by side (from the
    same evaluation folder where they share one), and their learning curves overlaid in one PNG.

    Example: catdog compare runs/A runs/B --out ab.png
    """
    from catdog.run_table import compare_plot, compare_runs, duration

    result = compare_runs(list(runs))
    picture = compare_plot(result, out, force=force)
    if as_json:
        click.echo(dumps({**result.to_dict(), "picture": str(picture)}))
        return
    names = [shown(r.name, 40) for r in result.runs]

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}"
        return "-" if value is None else shown(str(value), 40)

    def table(title: str, rows: list[tuple[str, list[str]]]) -> None:
        width = max(len(k) for k, _ in rows)
        cols = [max(len(n), *(len(v[i]) for _, v in rows)) for i, n in enumerate(names)]
        click.echo(title)
        for key, values in [("", names), *rows]:
            cells = "  ".join(v.ljust(w) for v, w in zip(values, cols, strict=True))
            click.echo(f"  {key:{width}}  {cells}".rstrip())

    if result.differing:
        table("config keys that differ", [(k, ["-" if v is None else shown(str(v), 40) for v in vs])
                                          for k, vs in result.differing.items()])
    else:
        click.echo("config: the same in every run")
    metrics = [(k, [duration(v) if k == "training seconds" else cell(v) for v in vs])
               for k, vs in result.metrics.items()]
    table("metrics", [("evaluation", [cell(e) for e in result.evaluation]), *metrics])
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo(f"learning curves: {shown(picture)}")
