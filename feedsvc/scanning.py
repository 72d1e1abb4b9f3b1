"""What the items folder holds: the files to read, with their size and mtime, and a
problem for every name that must not be read. Nothing is opened here.

A name can be anything the file system allows: bytes that are not UTF-8, control
characters, a FIFO or a socket, a link to nothing or a loop of links, a folder where a
file should be. Each name is classified with one `stat` (links followed) behind the
fault barrier, so no name can stop the scan; a folder that cannot be listed is a
problem for that folder alone.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import NamedTuple

from feedsvc import faults, itemfile
from feedsvc.model import RESERVED_NAMES, Problem, is_valid_name

INTRO_FOLDER = "_weekly"


class Entry(NamedTuple):
    """A file to read: an item, or a weekly introduction. A tuple: a full scan makes one
    per file, 100,000 at a time, and a tuple costs a fraction of a dataclass."""

    path: str  # relative to the items folder, with "/"; as the OS gives the name
    kind: str  # "item" or "intro"
    full: str  # the path to open
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Listing:
    """What a look at the folder, or at the files some events named, found."""

    entries: list[Entry]
    #: Problems about names (links out, loops, special files, stray folders), by path.
    problems: dict[str, Problem] = field(default_factory=dict)
    #: Names looked at that are gone now (a targeted look only).
    gone: set[str] = field(default_factory=set)


def scan(root: Path) -> tuple[Listing, tuple[str, ...]]:
    """Every file to read under `root`, and the category folders there are."""
    entries: list[Entry] = []
    problems: dict[str, Problem] = {}
    folders: list[str] = []
    real_root = _real(root)
    try:
        top = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as error:
        problems["."] = faults.problem(str(root), "listing the items folder", error)
        return Listing(entries, problems), ()
    for folder in top:
        name = folder.name
        if name == INTRO_FOLDER and _is_real_folder(folder):
            _scan_folder(real_root, folder.path, name, "intro", entries, problems)
            continue
        if itemfile.ignored(name):
            continue
        found = faults.attempt(name, "", partial(_top_level, real_root, folder))
        if isinstance(found, Problem):
            problems[name] = found
        elif found:
            if name not in RESERVED_NAMES and is_valid_name(name):
                folders.append(name)
            # parse_item reports a bad folder name once for each file in it
            _scan_folder(real_root, folder.path, name, "item", entries, problems)
    return Listing(entries, problems), tuple(folders)


def look_at(root: Path, folders: Iterable[str], paths: Iterable[str]) -> Listing | None:
    """`scan` for the few files that file events named; None when only a full scan will
    do (a path outside a known folder, such as a new category, or a folder event)."""
    known = set(folders)
    real_root = _real(root)
    listing = Listing([])
    for path in paths:
        folder, _, name = path.partition("/")
        if "/" in name or not name or (folder != INTRO_FOLDER and folder not in known):
            return None
        kind = "intro" if folder == INTRO_FOLDER else "item"
        full = os.path.join(root, folder, name)
        found = classify(real_root, folder, kind, name, full, partial(os.path.islink, full))
        if found is None:
            listing.gone.add(path)
        elif isinstance(found, Problem):
            listing.problems[path] = found
        else:
            listing.entries.append(found)
    return listing


def classify(
    root: Path, folder: str, kind: str, name: str, full: str, is_link: Callable[[], bool]
) -> Entry | Problem | None:
    """What one name in a category (or the intro) folder is: a file to read, a problem,
    or nothing (an editor's leftover, or gone). The scan and file events share it."""
    if itemfile.ignored(name):
        return None
    path = f"{folder}/{name}"
    return faults.attempt(path, "", lambda: _classify(root, path, kind, full, is_link))


def _classify(
    root: Path, path: str, kind: str, full: str, is_link: Callable[[], bool]
) -> Entry | Problem | None:
    try:
        result = os.stat(full)  # follows links: what a read would open
    except FileNotFoundError:
        if not os.path.lexists(full):
            return None  # gone since it was listed, or since the event
        return Problem(path, None, "error", "is a link to nothing; ignored")
    if is_link() and not _inside(root, full):
        return _outside(path)
    if stat.S_ISDIR(result.st_mode):
        message = "folders inside a category are not read; move its files up"
        return Problem(path, None, "warning", message)
    if not stat.S_ISREG(result.st_mode):
        return Problem(path, None, "error", "is not a regular file (a FIFO, socket or device)")
    return Entry(path, kind, full, result.st_size, result.st_mtime_ns)


def _scan_folder(
    root: Path,
    full: str,
    folder: str,
    kind: str,
    entries: list[Entry],
    problems: dict[str, Problem],
) -> None:
    try:
        names = sorted(os.scandir(full), key=lambda e: e.name)
    except OSError as error:
        problems[folder] = faults.problem(folder, "listing the folder", error)
        return
    for entry in names:
        found = classify(root, folder, kind, entry.name, entry.path, entry.is_symlink)
        if isinstance(found, Entry):
            entries.append(found)
        elif found is not None:
            problems[f"{folder}/{entry.name}"] = found


def _top_level(root: Path, entry: os.DirEntry[str]) -> bool | Problem:
    """Whether a top-level name is a category folder to scan, or the problem it is."""
    if not entry.is_dir():  # follows links; a loop raises, and the barrier reports it
        message = "item files go in a category folder: items/<category>/<file>"
        return Problem(entry.name, None, "error", message)
    if entry.is_symlink() and not _inside(root, entry.path):
        return _outside(entry.name)
    return True


def _is_real_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _real(root: Path) -> Path:
    return Path(os.path.realpath(root))


def _inside(root: Path, path: str) -> bool:
    """Whether `path`, with every link followed, is still under `root` (resolved)."""
    return Path(os.path.realpath(path)).is_relative_to(root)


def _outside(path: str) -> Problem:
    return Problem(path, None, "error", "is a link to outside the items folder; refused")
