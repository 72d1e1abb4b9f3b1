"""Shared fixtures: an items folder in tmp_path, a fixed clock, and apps built over them."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient

from feedsvc import create_app
from feedsvc.config import Settings

BASE_URL = "https://news.example.org"
#: A moment long after every date the tests use, unless a test moves the clock.
LATER = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FEEDSVC_* setting of the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.startswith("FEEDSVC_"):
            monkeypatch.delenv(name)


@dataclass
class Clock:
    """A clock a test sets by hand: `clock.now = ...`."""

    now: datetime = LATER

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Site:
    """An items folder under tmp_path, with helpers to write items and build the app."""

    root: Path
    clock: Clock = field(default_factory=Clock)
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def items(self) -> Path:
        return self.root / "items"

    def write(self, relative: str, content: str | bytes) -> Path:
        """Write a file under items/ as given, bytes or text."""
        path = self.items / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def write_item(
        self,
        category: str,
        name: str,
        front_matter: dict[str, Any] | str | None = None,
        body: str = "Body text.",
    ) -> Path:
        """Write items/<category>/<name> with YAML front matter (a dict is dumped for you)."""
        if front_matter is None:
            front_matter = {"title": name.rsplit(".", 1)[0]}
        if isinstance(front_matter, dict):
            front_matter = yaml.safe_dump(front_matter, allow_unicode=True, sort_keys=False)
        return self.write(f"{category}/{name}", f"---\n{front_matter.strip()}\n---\n{body}")

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "title": "Example News",
            "description": "News from the example",
            "base_url": BASE_URL,
            "author": "Example Desk",
            "items_dir": self.items,
            **self.overrides,
            **overrides,
        }
        return Settings(**values)

    def app(self, **overrides: Any) -> Flask:
        self.items.mkdir(parents=True, exist_ok=True)
        return create_app(self.settings(**overrides), clock=self.clock, watch=False)

    def client(self, **overrides: Any) -> FlaskClient:
        return self.app(**overrides).test_client()


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


@pytest.fixture
def sample_settings() -> Callable[..., Settings]:
    """The bundled sample site (items/ and feedsvc.toml at the top of the repository)."""
    from feedsvc.config import load_settings

    top = Path(__file__).resolve().parent.parent

    def make(**overrides: Any) -> Settings:
        return replace(load_settings(environ={}, cwd=top), **overrides)

    return make


def before_atom_renders(monkeypatch: pytest.MonkeyPatch, hook: Callable[[], None]) -> None:
    """From now on `hook` runs before every Atom render, in the rendering thread."""
    from feedsvc import render

    original = render.FORMATS["atom"]

    def hooked(view: Any, settings: Settings) -> bytes:
        hook()
        return original.render(view, settings)

    monkeypatch.setitem(render.FORMATS, "atom", replace(original, render=hooked))


@dataclass
class Held:
    """Renders held by `hold_atom_renders`: `started` is set once one is held, `go_on`
    lets them all go on."""

    go_on: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)

    def set(self) -> None:
        self.go_on.set()


def hold_atom_renders(monkeypatch: pytest.MonkeyPatch, in_process: int | None = None) -> Held:
    """From now on every Atom render (in process `in_process`, if given) waits until the
    returned `go_on` is set, or 30 s: a slow render, held for as long as a test needs."""
    held = Held()

    def hold() -> None:
        if in_process is None or os.getpid() == in_process:
            held.started.set()
            held.go_on.wait(timeout=30)

    before_atom_renders(monkeypatch, hold)
    return held
