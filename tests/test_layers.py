"""The module table of docs/architecture.md, kept true: each module imports what its row says.

The table ("## Modules": module | does | may import (feedsvc)) is the one list of which
feedsvc module may import which. These tests read it and hold the code to it both ways:
a module that imports something its row does not list fails, and so does a row that
lists something its module does not import, so the table stays exact.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "feedsvc"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
TABLE_HEADING = "## Modules"
#: Every module file of the package, by name (`__init__` and `__main__` included).
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py"))
#: Pure modules: no Flask, no file system.
PURE = {"model", "config", "sanitize", "itemfile", "weekly", "render", "drafts"}

_SEPARATOR = re.compile(r"\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?")
_CELL_BORDER = re.compile(r"(?<!\\)\|")  # a pipe that is not escaped ends a cell
_MODULE_CELL = re.compile(r"`(?:feedsvc\.)?(\w+)`")
_IMPORT_NAME = re.compile(r"`?(?:feedsvc\.)?(\w+)`?")
_NOTHING = {"", "—", "–", "-"}


def _cells(line: str) -> list[str]:
    """The cells of one Markdown table row, stripped."""
    inner = line.strip().removeprefix("|")
    if inner.endswith("|") and not inner.endswith("\\|"):
        inner = inner[:-1]
    return [cell.strip() for cell in _CELL_BORDER.split(inner)]


def _table_lines(text: str) -> list[str]:
    """The lines of the first table under the module heading."""
    lines = text.splitlines()
    starts = [n for n, line in enumerate(lines) if line.strip() == TABLE_HEADING]
    assert len(starts) == 1, f"{ARCHITECTURE.name} needs exactly one {TABLE_HEADING!r} heading"
    table: list[str] = []
    for line in lines[starts[0] + 1 :]:
        if line.startswith("#"):
            break
        if line.lstrip().startswith("|"):
            table.append(line)
        elif table:
            break  # the first line after the table
    assert len(table) >= 2, f"no table under {TABLE_HEADING!r} in {ARCHITECTURE}"
    return table


@cache
def module_table() -> dict[str, frozenset[str]]:
    """Module -> the feedsvc modules its row of the table says it imports."""
    header, *rows = _table_lines(ARCHITECTURE.read_text(encoding="utf-8"))
    columns = [cell.lower() for cell in _cells(header)]
    assert "module" in columns, f"the table's header has no 'module' column: {header}"
    imports = [n for n, c in enumerate(columns) if c.startswith("may import")]
    assert imports, f"the table's header has no 'may import' column: {header}"
    module_at, imports_at = columns.index("module"), imports[0]
    table: dict[str, frozenset[str]] = {}
    for row in rows:
        if _SEPARATOR.fullmatch(row.strip()):
            continue
        cells = _cells(row)
        assert len(cells) == len(columns), f"{len(cells)} cells, not {len(columns)}: {row}"
        module = _MODULE_CELL.fullmatch(cells[module_at])
        assert module, f"write the module as `name`: {row}"
        name = module[1]
        assert name not in table, f"two rows for {name}"
        listed = cells[imports_at]
        names = [] if listed in _NOTHING else [n.strip() for n in listed.split(",")]
        allowed = set()
        for entry in names:
            found = _IMPORT_NAME.fullmatch(entry)
            assert found, f"{name}: {entry!r} is not a module name (use — for none): {row}"
            allowed.add(found[1])
        table[name] = frozenset(allowed)
    return table


def imports_of(module: str) -> tuple[set[str], set[str]]:
    """(feedsvc modules, third-party top-level packages) that `module` imports."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    own: set[str] = set()
    other: set[str] = set()

    def from_package(names: list[ast.alias]) -> None:
        """`from feedsvc import a, b`: a module each, or the package's own `__init__`."""
        for alias in names:
            own.add(alias.name if (PACKAGE / f"{alias.name}.py").exists() else "__init__")

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:  # relative, inside feedsvc
            if node.module:
                own.add(node.module.split(".")[0])
            else:
                from_package(node.names)
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "feedsvc":
                from_package(node.names)
                continue
            names = [node.module]
        for name in names:
            if name == "feedsvc":
                own.add("__init__")
            elif name.startswith("feedsvc."):
                own.add(name.split(".")[1])
            else:
                other.add(name.split(".")[0])
    return own, other


def row_of(module: str) -> frozenset[str]:
    table = module_table()
    if module not in table:
        pytest.fail(f"feedsvc/{module}.py has no row in the module table of {ARCHITECTURE}")
    return table[module]


def test_the_table_has_a_row_for_every_module_and_no_other() -> None:
    rows = set(module_table())
    assert not set(MODULES) - rows, f"modules without a row: {sorted(set(MODULES) - rows)}"
    assert not rows - set(MODULES), f"rows without a module: {sorted(rows - set(MODULES))}"


@pytest.mark.parametrize("module", MODULES)
def test_a_module_imports_only_what_its_row_lists(module: str) -> None:
    allowed = row_of(module)
    own, _ = imports_of(module)
    assert own <= allowed, f"{module} imports {sorted(own - allowed)}, which its row omits"


@pytest.mark.parametrize("module", MODULES)
def test_a_row_lists_only_what_its_module_imports(module: str) -> None:
    allowed = row_of(module)
    own, _ = imports_of(module)
    assert allowed <= own, f"{module}'s row lists {sorted(allowed - own)}, which it never imports"


@pytest.mark.parametrize("module", sorted(PURE))
def test_pure_modules_know_nothing_of_flask_or_click(module: str) -> None:
    _, other = imports_of(module)
    assert not other & {"flask", "click", "werkzeug", "gunicorn", "watchdog"}


def test_feedgen_lives_in_render_only() -> None:
    users = {m for m in MODULES if "feedgen" in imports_of(m)[1]}
    assert users == {"render"}


def test_bleach_lives_in_sanitize_only() -> None:
    users = {m for m in MODULES if "bleach" in imports_of(m)[1]}
    assert users == {"sanitize"}
