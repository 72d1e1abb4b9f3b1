"""docs/deploy.md's nginx configuration, run for real over a `feedsvc build` export.

The server block is read out of the document itself, so the documentation cannot drift
from what works. nginx (Debian package) is installed by the Makefile.
"""

from __future__ import annotations

import gzip
import http.client
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from feedsvc.static import asset_urls, export, file_for, urls
from tests.conftest import Site
from tests.server import TOP, free_port, stop


def static_server_block(port: int, root: Path) -> str:
    """The second nginx block of docs/deploy.md (the static one), pointed at `root`."""
    blocks = re.findall(r"```nginx\n(.*?)```", (TOP / "docs" / "deploy.md").read_text(), re.S)
    block = blocks[1]
    assert "root /srv/news/public;" in block and "listen 80;" in block
    return block.replace("listen 80;", f"listen 127.0.0.1:{port};").replace(
        "root /srv/news/public;", f"root {root};"
    )


@contextmanager
def nginx_serving(public: Path, prefix: Path) -> Iterator[int]:
    """Debian's nginx with docs/deploy.md's static block over `public` (its files under
    `prefix`), on a free loopback port, until the block ends: the port."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(binary).exists(), "nginx is not installed: `make test` installs it (Debian)"
    port = free_port()
    (prefix / "logs").mkdir(parents=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        "user root;\n"
        "worker_processes 1;\n"
        f"pid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/logs/error.log;\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        "    access_log off;\n"
        f"    client_body_temp_path {prefix}/body;\n"
        f"    proxy_temp_path {prefix}/proxy;\n"
        f"    fastcgi_temp_path {prefix}/fastcgi;\n"
        f"    uwsgi_temp_path {prefix}/uwsgi;\n"
        f"    scgi_temp_path {prefix}/scgi;\n"
        f"{static_server_block(port, public)}\n"
        "}\n"
    )
    process = subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    stderr = process.stderr.read().decode() if process.stderr else ""
                    raise RuntimeError(f"nginx did not start: {stderr}") from None
                time.sleep(0.05)
        yield port
    finally:
        stop(process, signal.SIGQUIT)  # nginx's graceful shutdown


@pytest.fixture
def nginx(tmp_path: Path, site: Site) -> Iterator[tuple[int, Path, Site]]:
    for day in range(1, 6):
        site.write_item("news", f"2020-09-{day:02d}-story.md", {"title": f"Story {day}"})
    site.write_item("tech", "2020-09-07-chip.md", {"title": "Chip & <Co>"})
    public = tmp_path / "public"
    export(site.app(feed_size=2), public)
    with nginx_serving(public, tmp_path / "nginx") as port:
        yield port, public, site


def get(port: int, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_nginx_serves_the_export_with_the_right_types_and_bytes(
    nginx: tuple[int, Path, Site],
) -> None:
    port, public, site = nginx
    client = site.app(feed_size=2).test_client()
    store = client.application.extensions["feedsvc"]
    every = [*urls(store.snapshot(), store.settings), *asset_urls(store.settings)]
    assert {"/feeds/news/page/3.atom", "/feed.css", "/favicon.ico", "/icon.png"} <= set(every)
    for url in every:
        file = public / file_for(url)
        status, headers, body = get(port, url)
        assert status == 200, url
        assert body == file.read_bytes(), url
        assert headers["content-type"] == client.get(url).content_type, url  # the server's
        assert headers["x-content-type-options"] == "nosniff"
        if file.with_name(file.name + ".gz").exists():
            status, headers, body = get(port, url, **{"Accept-Encoding": "gzip"})
            assert headers.get("content-encoding") == "gzip", url
            assert gzip.decompress(body) == file.read_bytes()


def test_nginx_answers_the_sites_404_page_for_what_the_export_does_not_have(
    nginx: tuple[int, Path, Site],
) -> None:
    port, public, site = nginx
    client = site.app(feed_size=2).test_client()
    for url in ("/feeds/news/page/9.atom", "/items/news/nope.html", "/feeds/nope.rss", "/x/"):
        status, headers, body = get(port, url)
        assert status == 404, url
        assert headers["content-type"] == "text/html; charset=utf-8"
        assert body == (public / "404.html").read_bytes() == client.get(url).data, url
    # The pages' old addresses redirect on the server only.
    assert get(port, "/categories/news")[0] == 404
