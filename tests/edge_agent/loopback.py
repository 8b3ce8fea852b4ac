"""A real HTTP server on a loopback port for the agent's tests, and a quiet JSON handler.

Importable as ``loopback`` (``tests/edge_agent/conftest.py`` puts this folder on sys.path).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LoopbackServer:
    """``handler`` served by a ``ThreadingHTTPServer`` on 127.0.0.1 from a daemon thread.

    The first ``start()`` takes a free port; ``stop()`` then ``start()`` brings the server
    down and up again on the same port (a camera or an API that goes away and comes back).
    """

    def __init__(self, handler: Callable[..., BaseHTTPRequestHandler]) -> None:
        self.handler = handler
        self.port = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self.handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class JsonHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing and answers JSON with ``send_json``."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
