"""The `feedsvc` command: serve, check, new and build (README.md shows each in use)."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import sys
import unicodedata
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import click
import yaml

from feedsvc.config import Settings, load_settings
from feedsvc.errors import ConfigError
from feedsvc.model import RESERVED_NAMES, is_valid_name

# The store, the app and their libraries are imported by the commands that use them:
# `serve` replaces this process with gunicorn, which imports them itself, and importing
# them first as well would only slow every start down.


def _settings(items_dir: Path | None = None, *, existing: bool = True) -> Settings:
    """The configuration, or one clear message; `existing` requires the items folder."""
    try:
        settings = load_settings()
    except ConfigError as error:
        raise click.ClickException(f"configuration: {error}") from None
    if items_dir is not None:
        settings = replace(settings, items_dir=items_dir)
    if existing and not settings.items_dir.is_dir():
        raise click.ClickException(f"the items folder {settings.items_dir} does not exist")
    return settings


@click.group()
@click.version_option(package_name="feedsvc")
def main() -> None:
    """Publish a folder of dated item files as RSS, Atom and JSON feeds."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
def serve(host: str, port: int, workers: int) -> None:
    """Serve the feeds with gunicorn (production server)."""
    from feedsvc import serving

    _settings()  # a bad configuration stops here, with one clear message
    try:
        serving.header_timeout()
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    argv = [
        sys.executable, "-m", "gunicorn",
        "--bind", f"{host}:{port}",
        "--workers", str(workers),
        "feedsvc:create_app()",
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
    full = settings.items_dir / path
    try:
        return str(full.relative_to(Path.cwd()))
    except ValueError:
        return str(full)


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
    problems = sorted(store.problems(snapshot), key=lambda p: (p.path, p.line or 0))
    errors = sum(1 for p in problems if p.severity == "error")
    if output == "json":
        report = {
            "files": snapshot.file_count,
            "items": len(snapshot.items),
            "errors": errors,
            "warnings": len(problems) - errors,
            "problems": [
                {
                    "path": _shown(settings, p.path),
                    "line": p.line,
                    "severity": p.severity,
                    "message": p.message,
                }
                for p in problems
            ],
        }
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        for problem in problems:
            where = _shown(settings, problem.path) + (f":{problem.line}" if problem.line else "")
            click.echo(f"{where}: {problem.severity}: {problem.message}")
        click.echo(
            f"{snapshot.file_count} files, {len(snapshot.items)} items published, "
            f"{errors} error{'s' * (errors != 1)}, "
            f"{len(problems) - errors} warning{'s' * (len(problems) - errors != 1)}"
        )
    sys.exit(1 if errors else 0)


def slugify(title: str) -> str:
    """A file-name slug from a title: ASCII letters and digits joined by hyphens."""
    ascii_text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:60].rstrip("-") or "item"


@main.command()
@click.argument("category")
@click.argument("title")
def new(category: str, title: str) -> None:
    """Write items/CATEGORY/<today>-<slug>.md with its front matter, and print its path."""
    settings = _settings(existing=False)
    if category in RESERVED_NAMES or not is_valid_name(category):
        raise click.ClickException(
            f"{category!r} cannot be a category: use lowercase a-z, 0-9 and '-'"
        )
    now = datetime.now(settings.zone)
    path = settings.items_dir / category / f"{now.date().isoformat()}-{slugify(title)}.md"
    front_matter = yaml.safe_dump(
        {"title": title, "date": now.strftime("%Y-%m-%d %H:%M"), "author": settings.author,
         "tags": []},
        allow_unicode=True, sort_keys=False, default_flow_style=None,
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x", encoding="utf-8") as handle:
            handle.write(f"---\n{front_matter}---\nWrite the story here, in Markdown.\n")
    except FileExistsError:
        raise click.ClickException(f"{path} already exists; not overwriting it") from None
    click.echo(_shown(settings, str(path.relative_to(settings.items_dir))))


@main.command()
@click.argument("out_dir", type=click.Path(path_type=Path, file_okay=False))
def build(out_dir: Path) -> None:
    """Write every feed, page and the OPML as static files (plus .gz), as the server sends them."""
    from feedsvc import create_app
    from feedsvc.static import export

    app = create_app(_settings(), watch=False)
    written = export(app, out_dir)
    click.echo(f"wrote {written} files to {out_dir}")
