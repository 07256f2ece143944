"""A real HTTP server on 127.0.0.1 for download tests, with faults switched per served name.

``with FileServer() as srv: srv.files["a.pth"] = data; fetch(srv.url("a.pth"))``. Like most servers
it honours ``Range`` and sends a strong ``ETag`` (the content's hash) and a ``Last-Modified``, and
answers a ``Range`` whose ``If-Range`` does not match the current file with the whole file (200).
The query string of a request is ignored for serving and recorded. Faults, per name:

- ``cut_after``: send that many bytes, then close the connection (once);
- ``lie``: announce extra bytes in Content-Length;
- ``ignore_range``: answer Range requests with the whole file;
- ``ignore_if_range``: honour Range even when If-Range names another version;
- ``no_validators``: send neither ETag nor Last-Modified;
- ``slow``: sleep between 64 KiB pieces;
- ``endless``: no Content-Length, and bytes until the client hangs up (at most 256 MiB);
- ``drip``: one byte every that many seconds;
- ``stall``: headers, then that many seconds of silence before the body;
- ``redirect``: answer 302 with that Location;
- ``unavailable``: answer that many GETs with 503 (Service Unavailable) before serving the file;
- ``truncate_at``: every response stops at that offset of the file and closes the connection,
  while its headers announce the whole range (a server or proxy that cuts responses short).

A ``Range`` of ``bytes=START-END`` is answered with those bytes, ``bytes=START-`` with the rest of
the file. ``HEAD`` answers the headers a GET would send (GDAL's /vsicurl/ asks for the size first).
Every GET is recorded as ``(name, Range header, If-Range header, query)``, and the body bytes sent
for each name are counted in ``sent`` (what a reader fetched, faults included).
"""
from __future__ import annotations

import email.utils
import hashlib
import http.server
import threading
import time

PIECE = 64 * 1024
MODIFIED = email.utils.formatdate(1_700_000_000, usegmt=True)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: closing it ends the body

    head = False

    def do_HEAD(self) -> None:  # noqa: N802 (http.server naming)
        self.head = True
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        srv: FileServer = self.server.owner  # type: ignore[attr-defined]
        name, _, query = self.path.lstrip("/").partition("?")
        range_header, if_range = self.headers.get("Range"), self.headers.get("If-Range")
        with srv.lock:
            if not self.head:
                srv.requests.append((name, range_header, if_range, query))
            cut = None if self.head else srv.cut_after.pop(name, None)
            busy = not self.head and srv.unavailable.get(name, 0) > 0
            if busy:
                srv.unavailable[name] -= 1
        if busy:
            self.send_error(503)
            return
        try:
            self._serve(srv, name, range_header, if_range, cut)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up, as a bounded download does

    def _send(self, srv: "FileServer", name: str, data: bytes) -> None:
        """Send body bytes (none for HEAD) and count them."""
        if self.head:
            return
        self.wfile.write(data)
        with srv.lock:
            srv.sent[name] = srv.sent.get(name, 0) + len(data)

    def _serve(self, srv: "FileServer", name: str, range_header: str | None, if_range: str | None,
               cut: int | None) -> None:
        if name in srv.redirect:
            self.send_response(302)
            self.send_header("Location", srv.redirect[name])
            self.end_headers()
            return
        if name in srv.endless:
            self.send_response(200)
            self.end_headers()
            for _ in range(256 * 1024 * 1024 // PIECE):
                self._send(srv, name, b"\0" * PIECE)
            return
        body = srv.files.get(name)
        if body is None:
            self.send_error(404)
            return
        etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
        same_version = if_range is None or if_range == etag or name in srv.ignore_if_range
        start, end = 0, len(body)
        if range_header and name not in srv.ignore_range and same_version:
            first, _, last = range_header.split("=")[1].partition("-")
            start, end = int(first), min(int(last) + 1 if last.strip() else len(body), len(body))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        if name not in srv.no_validators:
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", MODIFIED)
        payload = body[start:end]
        self.send_header("Content-Length", str(len(payload) + srv.lie.get(name, 0)))
        self.end_headers()
        if name in srv.stall and not self.head:
            time.sleep(srv.stall[name])
        if cut is not None:
            payload = payload[:cut]
        if name in srv.truncate_at:
            payload = payload[:max(srv.truncate_at[name] - start, 0)]
        if name in srv.drip:
            for i in range(len(payload)):
                self._send(srv, name, payload[i:i + 1])
                self.wfile.flush()
                time.sleep(srv.drip[name])
            return
        for i in range(0, len(payload), PIECE):
            self._send(srv, name, payload[i:i + PIECE])
            if name in srv.slow:
                time.sleep(srv.slow[name])

    def log_message(self, *args) -> None:
        pass


class FileServer:
    """Serves ``files`` on 127.0.0.1, with the faults listed in the module docstring."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None, str | None, str]] = []
        self.cut_after: dict[str, int] = {}
        self.lie: dict[str, int] = {}
        self.ignore_range: set[str] = set()
        self.ignore_if_range: set[str] = set()
        self.no_validators: set[str] = set()
        self.slow: dict[str, float] = {}
        self.endless: set[str] = set()
        self.drip: dict[str, float] = {}
        self.stall: dict[str, float] = {}
        self.redirect: dict[str, str] = {}
        self.truncate_at: dict[str, int] = {}
        self.unavailable: dict[str, int] = {}
        self.sent: dict[str, int] = {}
        self.lock = threading.Lock()
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def ranges(self, name: str) -> list[str | None]:
        """Range header of every GET of ``name``, in order (None for a plain GET)."""
        return [r for n, r, _, _ in self.requests if n == name]

    def if_ranges(self, name: str) -> list[str | None]:
        return [v for n, _, v, _ in self.requests if n == name]

    def __enter__(self) -> "FileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
