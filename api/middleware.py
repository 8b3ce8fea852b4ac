"""The request-size limit and the refusal of NUL characters in URLs: pure ASGI middlewares.

Pure ASGI (not ``BaseHTTPMiddleware``) so a 30 MB ingest body is not copied through an
extra stream and the cost per request stays a few microseconds. Request latency is
recorded by prometheus-fastapi-instrumentator (``api.telemetry.ApiMetrics.instrument``).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class BodySizeLimitMiddleware:
    """Answer 413 to any request whose body exceeds ``max_body_bytes``, before it is parsed.

    A declared ``Content-Length`` over the limit is refused without reading the body; a
    chunked body is buffered up to the limit, refused past it, else replayed to the app.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def _too_large(self, size: int | None) -> dict[str, Any]:
        got = f"{size} bytes" if size is not None else "more bytes"
        return {
            "detail": (
                f"request body of {got} exceeds the limit of {self.max_body_bytes} bytes "
                "(EDGELOOP_API_MAX_BODY_BYTES); send smaller batches"
            )
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: int | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await _send_json(send, 400, {"detail": "invalid Content-Length header"})
                    return
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if length is not None and length > self.max_body_bytes:
            await _send_json(send, 413, self._too_large(length))
            return
        if length is not None or not chunked:
            await self.app(scope, receive, send)
            return
        # Chunked upload: buffer up to the limit, then replay it to the app.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, receive, send)  # disconnect: let the app see it
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _send_json(send, 413, self._too_large(None))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class NulInUrlMiddleware:
    """Answer 422 to any request whose path or query string holds a NUL character (``%00``).

    No key, name or filter of the loop can hold one, and PostgreSQL cannot even compare a
    text holding NUL (``psycopg.DataError``: a 500 where the DuckDB file answers "not
    found"), so one check here keeps every route's answer the same on both backends. NULs
    in JSON bodies are refused by the body models' patterns.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string", b"")
        if scope["type"] == "http" and (
            "\x00" in scope["path"] or b"%00" in query or b"\x00" in query
        ):
            await _send_json(
                send, 422, {"detail": "a NUL character (%00) in the URL is not valid anywhere"}
            )
            return
        await self.app(scope, receive, send)
