"""The request handler both test servers of tests/synthesis (script_server.py, faulty_server.py) start from."""
from __future__ import annotations

from http.server import BaseHTTPRequestHandler


class JSONHandler(BaseHTTPRequestHandler):
    """HTTP/1.1, no access log, JSON answers (``length`` may lie, to play a connection cut mid-body)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):  # quiet
        pass

    def _send(self, status: int, data: bytes, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data) if length is None else length))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
