"""Live updates for the console: ``GET /console/events``, a server-sent event stream that
says which panels changed, so the page refreshes them at once instead of on its 5 s poll.

One poller per API process (``ChangeFeed``) reads the store's change markers
(``edgeloop.store.changes``) every ``POLL_S`` seconds while any page listens, and each
open stream gets a ``change`` event naming the panels whose data moved. It reads the store,
not in-process notifications, so a batch ingested by another replica (or a label written
by another process, an alert raised by the Dagster sensor) reaches every page. The page
keeps polling as its fallback whenever the stream is not open (``console.js``).

Event format (https://html.spec.whatwg.org/multipage/server-sent-events.html)::

    retry: 250
    event: hello
    data: {"version": "3f2a…"}

    event: change
    data: {"subjects": ["detections"], "panels": ["analytics", "fleet", "inspections"],
           "version": "9c01…"}

and a ``: ping`` comment every ``PING_S`` seconds, so proxies keep the connection open.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import AUTH_RESPONSES, CurrentPrincipal, StoreDep
from edgeloop.store import AnyStore
from edgeloop.store.changes import markers
from edgeloop.store.connection import store_errors

logger = logging.getLogger(__name__)

POLL_S = 0.5
"""How often the store's change markers are read (seconds), per API process."""
PING_S = 15.0
STREAM_S = 8.0
"""A stream ends after this long and the browser reconnects after ``RETRY_MS``: uvicorn
waits for open responses when it stops, so no stream may outlast its stop timeout
(``edgeloop.cli.services.Service.stop``: 15 s, then SIGKILL). A page that reconnects
refreshes its panel when the ``hello`` event's version differs from the last it saw."""
RETRY_MS = 250

PANELS_OF: dict[str, tuple[str, ...]] = {
    "detections": ("fleet", "analytics", "inspections"),
    "heartbeats": ("fleet",),
    "queue": ("queue",),
    "labels": ("queue", "retraining", "review"),
    "verdicts": ("review",),
    "retraining": ("retraining",),
    "aliases": ("models", "fleet", "drift"),
    "drift": ("drift", "retraining"),
    "alerts": ("alerts",),
    "alert_updates": ("alerts",),
}
"""Subject (``edgeloop.store.changes.MARKERS``) -> the console panels that show it."""

router = APIRouter(tags=["console"], responses=AUTH_RESPONSES)
"""Included in ``api.console.routes.router`` (prefix ``/console``), before its ``/{panel}`` pages."""


class ChangeFeed:
    """Polls the change markers while anyone listens and hands each listener the subjects
    that changed. One per API process (``feed``)."""

    def __init__(self, read: Callable[[], dict[str, str]], *, poll_s: float = POLL_S) -> None:
        self._read = read
        self._poll_s = poll_s
        self._listeners: set[asyncio.Queue[set[str]]] = set()
        self._task: asyncio.Task[None] | None = None
        # Kept while nobody listens: the first poll after a pause reports what changed in it.
        self._last: dict[str, str] | None = None

    @property
    def version(self) -> str | None:
        """A digest of the markers last read (None before the first read): a page that
        reconnects compares it with the last one it saw, to catch changes in between."""
        if self._last is None:
            return None
        text = json.dumps(self._last, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    async def _poll(self) -> None:
        while self._listeners:
            try:
                now = await run_in_threadpool(self._read)
            except store_errors() as exc:  # a locked or unreachable store: try again
                logger.warning("console live updates: store unreadable: %s", exc)
            else:
                last = self._last
                changed = {k for k, v in now.items() if last is not None and last.get(k) != v}
                self._last = now
                if changed:
                    for queue in self._listeners:
                        queue.put_nowait(changed)
            await asyncio.sleep(self._poll_s)
        self._task = None

    def listen(self) -> asyncio.Queue[set[str]]:
        """A new listener's queue of changed subjects (``close`` it when done)."""
        queue: asyncio.Queue[set[str]] = asyncio.Queue()
        self._listeners.add(queue)
        if self._task is None:
            self._task = asyncio.create_task(self._poll())
        return queue

    def close(self, queue: asyncio.Queue[set[str]]) -> None:
        self._listeners.discard(queue)


def feed(request: Request, store: AnyStore) -> ChangeFeed:
    """This API process's ``ChangeFeed`` (made on first use, kept on ``app.state``)."""
    existing: ChangeFeed | None = getattr(request.app.state, "console_feed", None)
    if existing is None:

        def read() -> dict[str, str]:
            with store.connect() as con:
                return markers(con=con)

        existing = request.app.state.console_feed = ChangeFeed(read)
    return existing


def event(subjects: set[str], version: str | None = None) -> str:
    """One ``change`` event (module docstring) for the subjects that changed."""
    panels = sorted({p for s in subjects for p in PANELS_OF.get(s, ())})
    data = json.dumps({"subjects": sorted(subjects), "panels": panels, "version": version})
    return f"event: change\ndata: {data}\n\n"


async def _stream(changes: ChangeFeed, queue: asyncio.Queue[set[str]]) -> AsyncIterator[str]:
    try:
        hello = json.dumps({"version": changes.version})
        yield f"retry: {RETRY_MS}\nevent: hello\ndata: {hello}\n\n"
        ends = time.monotonic() + STREAM_S
        while (left := ends - time.monotonic()) > 0:
            try:
                subjects = await asyncio.wait_for(queue.get(), timeout=min(PING_S, left))
            except TimeoutError:
                yield ": ping\n\n"
                continue
            while not queue.empty():  # several polls' changes in one event
                subjects |= queue.get_nowait()
            yield event(subjects, changes.version)
    finally:
        changes.close(queue)


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def console_events(
    request: Request, _principal: CurrentPrincipal, store: StoreDep
) -> StreamingResponse:
    """Server-sent events: ``change`` with the panels whose data changed (a detection batch,
    a label, an alert, an alias move, a drift report), within about a second of the write on
    any API replica. The token comes as the console's cookie (EventSource sends no headers)."""
    changes = feed(request, store)
    return StreamingResponse(
        _stream(changes, changes.listen()),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
