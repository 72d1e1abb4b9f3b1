"""The bytes of every document, pinned: the sample site and a generated 1,000-item corpus.

A change inside feedsvc that is meant to keep its output must leave every feed, page and
OPML document byte-identical (so ETags, caches and readers see nothing). A change meant
to alter the output updates the pinned digests, in the same commit, with

    .venv/bin/python -m tests.test_golden

and the diff of tests/golden/*.json shows which documents it changed.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from benchmarks import corpus
from feedsvc import create_app
from feedsvc.config import Settings, load_settings
from tests.conftest import LATER, Clock
from tests.crawl import Answer, crawl

TOP = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
CORPUS_SIZE = 1000


def sample_site(_: Path) -> Settings:
    return replace(load_settings(environ={}, cwd=TOP), cache_dir=None)


def generated_site(folder: Path) -> Settings:
    corpus.generate(folder / "items", CORPUS_SIZE)
    return Settings(
        title="Bench News",
        base_url="https://bench.example.org",
        author="Bench Desk",
        timezone="Europe/Berlin",
        items_dir=folder / "items",
    )


SITES: dict[str, Callable[[Path], Settings]] = {"sample": sample_site, "corpus": generated_site}


def digests(settings: Settings) -> dict[str, str]:
    """Every document reachable from the site's front page, OPML and roundups, by path:
    a digest of its bytes."""
    client: FlaskClient = create_app(settings, clock=Clock(LATER), watch=False).test_client()

    def fetch(path: str) -> Answer:
        response = client.get(path)
        return Answer(response.status_code, response.content_type or "", response.data)

    found = crawl(fetch, settings.base_url, ("/", "/feeds.opml", "/weekly/"))
    # The corpus's bodies link to files the site does not have: those 404s are its own.
    return {
        path: hashlib.sha256(answer.body).hexdigest()[:32]
        for path, answer in sorted(found.items())
        if answer.status == 200
    }


@pytest.mark.parametrize("name", sorted(SITES))
def test_every_document_is_byte_identical_to_the_pinned_one(name: str, tmp_path: Path) -> None:
    pinned = json.loads((GOLDEN / f"{name}.json").read_text())
    now = digests(SITES[name](tmp_path))
    assert now.keys() == pinned.keys()
    changed = sorted(path for path in now if now[path] != pinned[path])
    assert not changed, f"{len(changed)} documents changed, e.g. {changed[:5]}"


def update() -> None:
    import tempfile

    GOLDEN.mkdir(exist_ok=True)
    for name, make in SITES.items():
        with tempfile.TemporaryDirectory() as folder:
            found = digests(make(Path(folder)))
        (GOLDEN / f"{name}.json").write_text(json.dumps(found, indent=0) + "\n")
        print(f"{name}: {len(found)} documents", file=sys.stderr)


if __name__ == "__main__":
    update()
