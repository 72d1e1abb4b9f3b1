"""The `feedsvc` command: serve, check, new and build (README.md shows each in use)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from feedsvc import faults
from feedsvc.config import (
    Settings,
    load_settings,
    loopback_warning,
    nearest,
    unknown_variables,
)
from feedsvc.errors import ConfigError
from feedsvc.model import RESERVED_NAMES, Snapshot, is_valid_name

if TYPE_CHECKING:
    from feedsvc.store import Store

# The store, the app and their libraries are imported by the commands that use them:
# `serve` replaces this process with gunicorn, which imports them itself, and importing
# them first as well would only slow every start down.


def _settings(
    items_dir: Path | None = None, *, existing: bool = True, warn: bool = True
) -> Settings:
    """The configuration, or one clear message; `existing` requires the items folder.
    `warn`: say which FEEDSVC_* variables are not feedsvc's (on stderr)."""
    try:
        settings = load_settings()
    except ConfigError as error:
        raise click.ClickException(f"configuration: {error}") from None
    for unknown in unknown_variables() if warn else ():
        click.echo(f"warning: {unknown}", err=True)
    if items_dir is not None:
        settings = replace(settings, items_dir=items_dir)
    if existing and not settings.items_dir.is_dir():
        raise click.ClickException(f"the items folder {settings.items_dir} does not exist")
    return settings


@click.group()
@click.version_option(package_name="feedsvc")
def main() -> None:
    """Publish a folder of dated item files as RSS, Atom and JSON feeds."""


#: Whether this process is the `feedsvc` command itself (`run`), not a program that
#: calls `main` (a test's CliRunner): only the command may end the process at once.
_own_process = False


def run() -> None:
    """The `feedsvc` command: `main`, in a process of its own."""
    global _own_process
    _own_process = True
    main()


def _end(code: int) -> NoReturn:
    """End a command that is done with `code` as its exit status. In a process of its
    own, at once: freeing what it loaded, object by object, would take about a tenth of a
    second per 10,000 items for nothing (its files are written and closed, the cache
    commits every write), so only output still buffered is flushed (`click.echo`
    flushes its own)."""
    if not _own_process:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader gone, a stream closed
            stream.flush()
    os._exit(code)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
def serve(host: str, port: int, workers: int) -> None:
    """Serve the feeds with gunicorn (production server)."""
    from feedsvc import serving

    # A bad configuration stops here, with one clear message; the app, loading it again,
    # warns of what is not a setting.
    _settings(warn=False)
    try:
        serving.header_timeout()
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    bind_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    argv = [
        sys.executable, "-m", "gunicorn",
        "--bind", f"{bind_host}:{port}",
        "--workers", str(workers),
        # The address, passed to the app (gunicorn reads the call's literal arguments):
        # without base_url, links and ids are made from it.
        f"feedsvc:create_app(listening={(host.strip('[]'), port)!r})",
    ]  # fmt: skip
    # feedsvc's gunicorn settings (feedsvc.serving: its worker, threads, timeout,
    # --preload, no control socket) go first in GUNICORN_CMD_ARGS, where an operator's
    # own flags, coming later, win.
    operator = os.environ.get("GUNICORN_CMD_ARGS", "")
    defaults = f"{shlex.join(serving.command_line())} {operator}".strip()
    os.execve(sys.executable, argv, {**os.environ, "GUNICORN_CMD_ARGS": defaults})


PROGRESS_THRESHOLD = 2000  # files; below this a check is over before a bar would help


def _count_files(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def _shown(settings: Settings, path: str) -> str:
    """A problem's path as the maintainer would type it, relative to the working directory."""
    return _shown_under(settings.items_dir, Path.cwd())(path)


def _shown_under(root: Path, cwd: Path) -> Callable[[str], str]:
    """`_shown` for many paths under `root`, the working directory looked at once."""
    try:
        top = root.relative_to(cwd)
    except ValueError:
        top = root
    prefix = "" if top == Path(".") else f"{top}{os.sep}"
    return lambda path: os.path.normpath(prefix + path)  # thousands: no Path for each


@main.command()
@click.argument("items_dir", required=False, type=click.Path(path_type=Path))
@click.option("--format", "output", type=click.Choice(["text", "json"]), default="text")
def check(items_dir: Path | None, output: str) -> None:
    """Lint every item file; exit status 1 if any has an error."""
    from feedsvc.store import Store

    logging.getLogger("feedsvc").addHandler(logging.NullHandler())
    logging.getLogger("feedsvc").propagate = False  # the report below says it all once
    settings = _settings(items_dir)
    store = Store(settings)
    if sys.stderr.isatty() and _count_files(settings.items_dir) >= PROGRESS_THRESHOLD:
        with click.progressbar(length=1, label="Checking", file=sys.stderr) as bar:

            def progress(done: int, total: int) -> None:
                bar.length = total
                bar.update(done - bar.pos)

            snapshot = store.reload(progress)
        with click.progressbar(length=1, label="Rendering", file=sys.stderr) as bar:
            store.render_bodies(progress)
    else:
        snapshot = store.reload()
        store.render_bodies()
    # The bodies' problems (what the sanitiser removed, a body that cannot be read) are
    # found by rendering them, after the snapshot was built.
    errors, _ = _report(settings, store, snapshot, output)
    _end(1 if errors else 0)


def _report(settings: Settings, store: Store, snapshot: Snapshot, output: str) -> tuple[int, int]:
    """Print every problem of `snapshot` (and those found since) and a summary line, as
    text or JSON; (errors, warnings)."""
    problems = sorted(store.problems(snapshot), key=lambda p: (p.path, p.line or 0))
    errors = sum(1 for p in problems if p.severity == "error")
    shown = _shown_under(settings.items_dir, Path.cwd())
    if output == "json":
        report = {
            "files": snapshot.file_count,
            "items": len(snapshot.items),
            "errors": errors,
            "warnings": len(problems) - errors,
            "problems": [
                {
                    "path": shown(p.path),
                    "line": p.line,
                    "severity": p.severity,
                    "message": p.message,
                }
                for p in problems
            ],
        }
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        lines = []  # one write: a hostile folder has a problem in each of thousands of files
        for problem in problems:
            where = shown(problem.path) + (f":{problem.line}" if problem.line else "")
            lines.append(f"{where}: {problem.severity}: {problem.message}\n")
        click.echo("".join(lines), nl=False)
        click.echo(
            f"{snapshot.file_count} files, {len(snapshot.items)} items published, "
            f"{errors} error{'s' * (errors != 1)}, "
            f"{len(problems) - errors} warning{'s' * (len(problems) - errors != 1)}"
        )
    return errors, len(problems) - errors


def _categories(settings: Settings) -> list[str]:
    """The categories there are: configured, then the folders under items/ not configured."""
    known = [slug for slug, _ in settings.categories]
    try:
        folders = sorted(entry.name for entry in os.scandir(settings.items_dir) if entry.is_dir())
    except OSError:
        folders = []
    known += [name for name in folders if name not in known and _is_category(name)]
    return known


def _is_category(name: str) -> bool:
    return name not in RESERVED_NAMES and is_valid_name(name)


@main.command()
@click.argument("category")
@click.argument("title")
@click.option(
    "--new-category", is_flag=True,
    help="Start a category that is neither configured nor a folder under items/ yet.",
)  # fmt: skip
@click.option("--slug", help="The file name's slug, when the title gives none (in Chinese, say).")
def new(category: str, title: str, new_category: bool, slug: str | None) -> None:
    """Start a draft, items/CATEGORY/<today>-<slug>.md, and print its path.

    A draft is published nowhere until `feedsvc publish` takes it live.
    """
    from feedsvc import drafts, itemfile

    settings = _settings(existing=False)
    title = " ".join(title.split())
    if not title:
        raise click.ClickException('the title is empty; give one, such as "Dunhill opens a '
                                   'flagship store"')  # fmt: skip
    if not _is_category(category):
        raise click.ClickException(
            f"{category!r} cannot be a category: use lowercase a-z, 0-9 and '-' "
            "(not 'all' or 'weekly')"
        )
    known = _categories(settings)
    if category not in known and not new_category:
        close = nearest(category, known)
        raise click.ClickException(
            f"{category!r} is neither a configured category nor a folder in "
            f"{_shown(settings, '.')}" + (f"; did you mean {close!r}?" if close else "")
            + " To start a new category, add --new-category."
        )  # fmt: skip
    slug = drafts.slugify(title) if slug is None else slug
    if not is_valid_name(slug):
        raise click.ClickException(
            f"the title {title!r} gives no slug for the file name (no letters or digits a-z, "
            "0-9); give one with --slug"
            if not slug
            else f"--slug {slug!r}: use lowercase a-z, 0-9 and '-'"
        )
    now = datetime.now(settings.zone)
    path = settings.items_dir / category / f"{now.date().isoformat()}-{slug}.md"
    text = drafts.new_item(title, now, settings.author)
    relative = path.relative_to(settings.items_dir).as_posix()
    parsed = itemfile.parse_item(relative, text.encode(), settings)
    if parsed.item is None:  # a title whose text is all markup or unprintable characters
        raise click.ClickException(f"the title {title!r} cannot be published: "
                                   f"{parsed.problems[0].message}")  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.parent.resolve().is_relative_to(settings.items_dir.resolve()):
        raise click.ClickException(f"{_shown(settings, category)} is a link to outside the "
                                   "items folder; not writing there")  # fmt: skip
    try:
        _create(path, text.encode())
    except FileExistsError:
        message = f"{_shown(settings, relative)} already exists; not overwriting it"
        raise click.ClickException(message) from None
    click.echo(_shown(settings, relative))
    click.echo(
        "a draft: no feed shows it until `feedsvc publish "
        f"{shlex.quote(_shown(settings, relative))}`",
        err=True,
    )
    if category not in known and settings.categories:
        click.echo(f"a new category: add {category} to [categories] in feedsvc.toml", err=True)


def _temporary(folder: Path, name: str, data: bytes, mode: int = 0o644) -> Path:
    """`data` in a new file beside `name` in `folder`, under a name the watcher skips
    (a leading dot), written through to the disk."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode & 0o7777)
            os.fsync(handle.fileno())
    except BaseException:
        os.unlink(temporary)
        raise
    return Path(temporary)


def _create(path: Path, data: bytes) -> None:
    """Write a new file whole or not at all, never over one that exists (FileExistsError):
    a server watching the folder never reads it half written."""
    temporary = _temporary(path.parent, path.name, data, 0o666 & ~_umask())
    try:
        os.link(temporary, path)  # fails if the name is taken, whoever took it
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: written in place, then
        with path.open("xb") as handle:
            handle.write(data)
    finally:
        os.unlink(temporary)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@main.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
def publish(file: Path) -> None:
    """Take the draft FILE live: remove its draft flag and set its date to now.

    Nothing else in the file changes, nor its name (so neither its id nor its page).
    """
    from feedsvc import drafts
    from feedsvc.loading import read_file

    settings = _settings()
    root = settings.items_dir.resolve()
    try:
        full = file.resolve(strict=True)
        before = full.stat()
        data = read_file(str(full))
    except Exception as error:
        raise click.ClickException(f"{file}: {faults.describe(error)}") from None
    if not full.is_relative_to(root):
        raise click.ClickException(
            f"{file} is not in the items folder ({_shown(settings, '.')}); only an item there "
            "can be published"
        )
    relative = full.relative_to(root).as_posix()
    now = datetime.now(settings.zone)
    try:
        published = drafts.publish(data, relative, settings, now)
    except drafts.Refused as refused:
        raise click.ClickException(f"{file} cannot be published: {refused}") from None
    # Written beside it and moved over it at once: a server reads the draft or the
    # published item, never half of either.
    temporary = _temporary(full.parent, full.name, published, before.st_mode)
    try:
        after = full.stat()
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise click.ClickException(f"{file} changed while being published; try again")
        os.replace(temporary, full)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    when = now.replace(second=0, microsecond=0).strftime(drafts.DATE_FORMAT)
    click.echo(f"published {_shown(settings, relative)} at {when} ({settings.timezone})")


@main.command()
@click.argument("out_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too, not only on errors.")
def build(out_dir: Path, strict: bool) -> None:
    """Write every feed, page and the OPML as static files (plus .gz), as the server
    sends them; list the problems as `check` does. The good items are written whatever
    the problems; the exit status is 1 if there were errors (or, with --strict, any
    problem)."""
    from feedsvc import create_app
    from feedsvc.static import export

    settings = _settings()
    warning = loopback_warning(settings)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    logging.getLogger("feedsvc").addHandler(logging.NullHandler())
    logging.getLogger("feedsvc").propagate = False  # the report below says it all once
    started = time.perf_counter()
    app = create_app(settings, watch=False, warm=False)
    store: Store = app.extensions["feedsvc"]
    loaded = time.perf_counter() - started
    written = export(app, out_dir)
    errors, warnings = _report(settings, store, store.snapshot(), "text")
    click.echo(
        f"{written.changed} files written, {written.kept} unchanged, "
        f"{written.removed} removed in {out_dir} ({written.rendered} documents rendered)"
    )
    parts = {"loading": loaded, **written.seconds}
    click.echo(
        f"took {time.perf_counter() - started:.1f} s: "
        + ", ".join(f"{part} {seconds:.1f} s" for part, seconds in parts.items())
    )
    _end(1 if errors or (strict and warnings) else 0)
