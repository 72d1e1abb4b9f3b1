"""The framework floor: the least a Flask app can do to serve one feed document.

It serves bytes saved from a running feedsvc server, from memory, with the same ETag and
Content-Type, and answers `If-None-Match` with 304 through Werkzeug's `make_conditional`,
as feedsvc does. Run under the same gunicorn settings as `feedsvc serve` (those of
`feedsvc.serving.command_line()`: the same worker class and threads), its requests/s is
what Flask + gunicorn cost on their own; feedsvc's throughput is reported against it.

    gunicorn --workers 2 --worker-class feedsvc.serving.HeadFirstWorker --threads 8 \
        --timeout 300 --preload --no-control-socket \
        "benchmarks.floor:create_app('/tmp/feedsvc-bench/10000/floor/all.atom')"

`create_app(document)` reads `document` (the body) and `document + ".json"` (see
`save_document`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypedDict

from flask import Flask, Response, request
from flask.typing import ResponseReturnValue


class DocumentHeaders(TypedDict):
    """What the floor needs besides the body: where to serve it and how to label it."""

    path: str  # the URL path, e.g. /feeds/all.atom
    content_type: str
    etag: str  # unquoted, strong


def save_document(target: Path, body: bytes, headers: DocumentHeaders) -> None:
    """Store a document for `create_app`: the body, and its headers beside it as JSON."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(body)
    target.with_name(target.name + ".json").write_text(json.dumps(headers), encoding="utf-8")


def create_app(document: str) -> Flask:
    """A Flask app answering GET `headers["path"]` with the saved body, conditionally."""
    source = Path(document)
    body = source.read_bytes()
    headers: DocumentHeaders = json.loads(source.with_name(source.name + ".json").read_text())
    app = Flask(__name__)

    def serve() -> ResponseReturnValue:
        response = Response(body, content_type=headers["content_type"])
        response.set_etag(headers["etag"])
        return response.make_conditional(request)

    app.add_url_rule(headers["path"], "document", serve)
    return app
