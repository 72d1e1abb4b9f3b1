"""End to end: the real gunicorn server from wsgi.py, 2 workers, over real HTTP."""

from __future__ import annotations

import gzip
from concurrent.futures import ThreadPoolExecutor

import feedparser

from tests.server import running_server


def test_every_worker_serves_the_same_etag_and_answers_conditional_requests() -> None:
    with running_server(workers=2) as server:

        def fetch(_: int) -> tuple[int, str, bytes]:
            status, headers, body = server.request("/feeds/all.atom")
            return status, headers["ETag"], body

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(fetch, range(200)))
        assert {status for status, _, _ in results} == {200}
        etags = {etag for _, etag, _ in results}
        assert len(etags) == 1
        assert len({body for _, _, body in results}) == 1
        assert len(feedparser.parse(results[0][2]).entries) == 6

        etag = etags.pop()

        def conditional(_: int) -> int:
            status, _, body = server.request("/feeds/all.atom", {"If-None-Match": etag})
            assert body == b""
            return status

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(conditional, range(200)))
        assert set(statuses) == {304}
        assert len(server.worker_pids()) == 2, "both workers should have answered"


def test_gzip_and_head_over_real_http() -> None:
    with running_server(workers=1) as server:
        status, headers, body = server.request("/feeds/all.rss", {"Accept-Encoding": "gzip"})
        assert status == 200
        assert headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(body).startswith(b"<?xml")
        status, head_headers, head_body = server.request(
            "/feeds/all.rss", {"Accept-Encoding": "gzip"}, method="HEAD"
        )
        assert (status, head_body) == (200, b"")
        assert head_headers["ETag"] == headers["ETag"]
        assert head_headers["Content-Length"] == headers["Content-Length"]
