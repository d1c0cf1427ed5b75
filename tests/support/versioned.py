"""An HTTP source on 127.0.0.1 whose bytes and validators a test sets and changes, for idempotent fetch.

`VersionedSource.versions` maps a path to the `Version` served there (HEAD and GET; HEAD sends the
same headers and no body; any other path is 404). A test replaces a version to "change the source"
between two fetches and counts the requests made with `requests(method, path)`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from tests.support.http import RequestLog


@dataclass(frozen=True)
class Version:
    body: bytes
    etag: str | None = None
    last_modified: str | None = None
    content_type: str = "image/png"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        path = urlsplit(self.path).path
        self.server.log.add(self.command, path)
        version = self.server.versions.get(path)
        if version is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", version.content_type)
        self.send_header("Content-Length", str(len(version.body)))
        if version.etag is not None:
            self.send_header("ETag", version.etag)
        if version.last_modified is not None:
            self.send_header("Last-Modified", version.last_modified)
        self.end_headers()
        if not head:
            self.wfile.write(version.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str) -> None:
        super().__init__((host, 0), _Handler)
        self.log = RequestLog()
        self.versions: dict[str, Version] = {}


class VersionedSource:
    """One listener serving `versions` on `host` (the real node's pods use the bridge gateway); `stop()` ends it."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._server = _Server(host)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def versions(self) -> dict[str, Version]:
        return self._server.versions

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self._server.server_address[1]}{path}"

    def requests(self, method: str, path: str) -> int:
        """How many `method` requests reached `path` so far."""
        return self._server.log.for_path(path).count((method, path))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
