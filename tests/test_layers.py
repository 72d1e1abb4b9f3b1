"""DESIGN.md's module table, kept true: each module imports only what it may."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "feedsvc"

#: module -> feedsvc modules it may import. Pure modules (no Flask, no file system).
ALLOWED = {
    "errors": set(),
    "model": set(),
    "config": {"errors", "model"},
    "sanitize": set(),
    "itemfile": {"config", "model", "sanitize"},
    "weekly": {"config", "itemfile", "model"},
    "render": {"__init__", "config", "faults", "itemfile", "model", "sanitize", "weekly"},
    "faults": {"model"},
    "scanning": {"faults", "itemfile", "model"},
    "store": {"cache", "config", "faults", "index", "itemfile", "model", "parallel", "scanning"},
    "parallel": set(),
    "index": {"config", "model", "weekly"},
    "cache": {"__init__", "config", "itemfile", "model", "sanitize"},
    "web": {"config", "faults", "model", "render", "store", "weekly"},
    "cli": {
        "__init__",
        "config",
        "errors",
        "model",
        "render",
        "serving",
        "static",
        "store",
        "web",
    },
    "serving": {"sanitize"},
    "static": {"model", "render", "store"},
    "watch": {"store"},
    "__init__": {"config", "render", "store", "watch", "web"},
    "__main__": {"cli"},
}
PURE = {"model", "config", "sanitize", "itemfile", "weekly", "render"}


def imports_of(module: str) -> tuple[set[str], set[str]]:
    """(feedsvc modules, third-party top-level packages) that `module` imports."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    own, other = set(), set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
            if node.module == "feedsvc":
                for alias in node.names:
                    is_module = (PACKAGE / f"{alias.name}.py").exists()
                    own.add(alias.name if is_module else "__init__")
                continue
        for name in names:
            if name.startswith("feedsvc."):
                own.add(name.split(".")[1])
            else:
                other.add(name.split(".")[0])
    return own, other


def test_every_module_is_in_the_table() -> None:
    assert {p.stem for p in PACKAGE.glob("*.py")} == set(ALLOWED)


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_module_imports_only_what_the_design_allows(module: str) -> None:
    own, _ = imports_of(module)
    assert own <= ALLOWED[module], f"{module} imports {sorted(own - ALLOWED[module])}"


@pytest.mark.parametrize("module", sorted(PURE))
def test_pure_modules_know_nothing_of_flask_or_click(module: str) -> None:
    _, other = imports_of(module)
    assert not other & {"flask", "click", "werkzeug", "gunicorn", "watchdog"}


def test_feedgen_lives_in_render_only() -> None:
    users = {m for m in ALLOWED if "feedgen" in imports_of(m)[1]}
    assert users == {"render"}


def test_bleach_lives_in_sanitize_only() -> None:
    users = {m for m in ALLOWED if "bleach" in imports_of(m)[1]}
    assert users == {"sanitize"}
