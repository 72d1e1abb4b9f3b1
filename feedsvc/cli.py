"""The `feedsvc` command: serve, check (SPEC §CLI)."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from feedsvc.config import Settings, load_settings
from feedsvc.errors import ConfigError
from feedsvc.store import Store


def _settings(items_dir: Path | None = None) -> Settings:
    try:
        settings = load_settings()
    except ConfigError as error:
        raise click.ClickException(f"configuration: {error}") from None
    if items_dir is not None:
        from dataclasses import replace

        settings = replace(settings, items_dir=items_dir)
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
    _settings()  # a bad configuration stops here, with one clear message
    argv = [
        sys.executable, "-m", "gunicorn",
        "--bind", f"{host}:{port}",
        "--workers", str(workers),
        "--no-control-socket",  # gunicorn 27 would otherwise write under ~/.gunicorn
        "feedsvc:create_app()",
    ]  # fmt: skip
    os.execv(sys.executable, argv)


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
    logging.getLogger("feedsvc").addHandler(logging.NullHandler())
    logging.getLogger("feedsvc").propagate = False  # the report below says it all once
    settings = _settings(items_dir)
    if not settings.items_dir.is_dir():
        raise click.ClickException(f"{settings.items_dir} is not a folder")
    snapshot = Store(settings).reload()
    problems = snapshot.problems
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
