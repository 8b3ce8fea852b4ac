"""Shipping ingest batches to the API, with the on-disk spool as the safety net.

``Shipper.ship(batch)`` POSTs the batch (``edgeloop.wire``: version 3, MessagePack, for the
agent's columnar batches) to ``{api_url}/api/ingest`` with ``Authorization: Bearer <token>``;
the API answers ``edgeloop.wire.IngestAck``.

* Delivered (2xx): done.
* The API is unreachable, times out, answers 5xx, 408 or 429, or refuses the token
  (401/403): the batch goes to the spool and the agent keeps going. Further batches go
  straight to the spool while an exponential back-off (1 s doubling to 60 s, or the
  API's ``Retry-After``) runs, so a dead API costs no time per batch.
* Any other 4xx: the API will never take this batch; it is moved to the spool's
  ``rejected/`` folder with the API's message, and logged.

Before a new batch is sent, the spool is replayed oldest first; a new batch is sent only
once the spool is empty, so batches arrive in order. Nothing is lost, and nothing is
doubled: a batch is removed from the spool only after the API acknowledged it, and the API
skips frames whose ``frame_key`` it already stored (a batch re-sent after a lost answer).

``ShipWorker`` runs a ``Shipper`` in its own thread behind a bounded queue (the agent's
loop hands it each batch).
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from pydantic import ValidationError

from edge_agent.spool import Spool
from edgeloop.wire import (
    AnyIngestBatch,
    IngestAck,
    ingest_body,
    ingest_media_type,
    parse_ingest_batch,
)

logger = logging.getLogger(__name__)

INGEST_PATH = "/api/ingest"
RETRY_STATUSES = frozenset({401, 403, 408, 429})
"""4xx answers that say "not now" rather than "never": the batch is spooled and retried."""


def make_client(
    api_url: str,
    token: str | None,
    timeout_s: float,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """An httpx client for the API: base URL, bearer token, timeout (``transport`` for tests)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(
        base_url=api_url.rstrip("/"),
        headers=headers,
        timeout=httpx.Timeout(timeout_s),
        transport=transport,
    )


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REJECTED = "rejected"


@dataclass
class ShipStats:
    """Counters of one shipper, in batches unless said otherwise.

    Attributes:
        sent: delivered when made.
        spooled: stored on disk because the API could not take them when made.
        replayed: spooled batches (this run's or an earlier run's) delivered later.
        rejected: refused by the API with a 4xx and kept in ``rejected/``.
        frames_accepted, frames_duplicate, queued: summed from the API's acks (frames).
    """

    sent: int = 0
    spooled: int = 0
    replayed: int = 0
    rejected: int = 0
    frames_accepted: int = 0
    frames_duplicate: int = 0
    queued: int = 0


class Shipper:
    """Sends batches to the API, spooling what cannot be sent and replaying it later.

    Not thread-safe: one thread ships (the runner's ship worker).

    Args:
        client: an httpx client with the API's base URL and auth (see ``make_client``).
        spool: where undelivered batches wait.
        backoff_s, max_backoff_s: first and largest wait between attempts while the API
            is unavailable, seconds.
    """

    def __init__(
        self,
        client: httpx.Client,
        spool: Spool,
        *,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
    ) -> None:
        self.client = client
        self.spool = spool
        self.stats = ShipStats()
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._delay = backoff_s
        self._retry_at = 0.0
        self._down_since: float | None = None

    # -- public API ---------------------------------------------------------------------

    def ship(self, batch: AnyIngestBatch) -> Outcome:
        """Deliver ``batch`` now if the API is up and the spool is empty, else spool it.

        Returns:
            ``DELIVERED``, ``RETRY`` (spooled) or ``REJECTED`` (moved to ``rejected/``).
        """
        data = ingest_body(batch)
        if not self.replay() or time.monotonic() < self._retry_at:
            self.spool.put_body(data, frames=batch.frame_count)
            self.stats.spooled += 1
            return Outcome.RETRY
        outcome, detail = self._post(data, batch.frame_count)
        if outcome is Outcome.DELIVERED:
            self.stats.sent += 1
        elif outcome is Outcome.RETRY:
            path = self.spool.put_body(data, frames=batch.frame_count)
            self.stats.spooled += 1
            logger.debug("spooled batch %s: %s", path.name, detail)
        else:
            self.spool.reject_body(data, detail)
            self.stats.rejected += 1
        return outcome

    def replay(self, *, ignore_backoff: bool = False) -> bool:
        """Send spooled batches, oldest first, until the spool is empty or the API fails.

        Args:
            ignore_backoff: try now even while a back-off is running (used at shutdown).

        Returns:
            True when the spool is empty afterwards.
        """
        pending = self.spool.pending()
        if not pending:
            return True
        if not ignore_backoff and time.monotonic() < self._retry_at:
            return False
        delivered = 0
        for path in pending:
            try:
                data = path.read_bytes()
                frames = parse_ingest_batch(data).frame_count
            except (OSError, ValidationError) as exc:
                self.spool.reject(path, f"unreadable spool file: {exc}")
                self.stats.rejected += 1
                continue
            outcome, detail = self._post(data, frames)
            if outcome is Outcome.RETRY:
                if delivered:
                    logger.info(
                        "replayed %d spooled batches before the API failed again", delivered
                    )
                return False
            if outcome is Outcome.DELIVERED:
                self.spool.ack(path)
                self.stats.replayed += 1
                delivered += 1
            else:
                self.spool.reject(path, detail)
                self.stats.rejected += 1
        logger.info("replayed %d spooled batches; spool is empty", delivered)
        return True

    def close(self) -> None:
        self.client.close()

    # -- internals ----------------------------------------------------------------------

    def _post(self, data: bytes, frames: int) -> tuple[Outcome, str]:
        try:
            response = self.client.post(
                INGEST_PATH, content=data, headers={"Content-Type": ingest_media_type(data)}
            )
        except httpx.TransportError as exc:
            return self._unavailable(f"{type(exc).__name__}: {exc}", None)
        status = response.status_code
        if response.is_success:
            self._available()
            try:
                ack = IngestAck.model_validate_json(response.content)
            except ValidationError as exc:
                logger.error(
                    "API stored a batch but answered %d with a body that is not an IngestAck: %s",
                    status,
                    exc,
                )
                return Outcome.DELIVERED, "delivered"
            self.stats.frames_accepted += ack.accepted
            self.stats.frames_duplicate += ack.duplicates
            self.stats.queued += ack.queued
            if ack.accepted + ack.duplicates != frames:
                logger.warning(
                    "API acknowledged %d + %d duplicate frames of a %d-frame batch",
                    ack.accepted,
                    ack.duplicates,
                    frames,
                )
            return Outcome.DELIVERED, "delivered"
        message = f"HTTP {status} from {response.request.url}: {api_message(response)}"
        if status in (401, 403):
            logger.error(
                "the API refused the agent's token (%s); batches are kept in the spool. "
                "Set EDGELOOP_AGENT_TOKEN, or EDGELOOP_AGENT_TOKEN_FILE (--token-file) to a file "
                "holding it, to a token the API accepts",
                message,
            )
            return self._unavailable(message, None)
        if status in RETRY_STATUSES or status >= 500 or status < 400:
            return self._unavailable(message, _retry_after(response))
        return Outcome.REJECTED, message

    def _unavailable(self, reason: str, retry_after: float | None) -> tuple[Outcome, str]:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            logger.warning(
                "API unavailable (%s); spooling batches in %s and retrying with back-off",
                reason,
                self.spool.pending_dir,
            )
        else:
            logger.debug("API still unavailable: %s", reason)
        wait = retry_after if retry_after is not None else self._delay
        self._retry_at = now + wait
        self._delay = min(self._delay * 2, self._max_backoff_s)
        return Outcome.RETRY, reason

    def _available(self) -> None:
        if self._down_since is not None:
            logger.info("API reachable again after %.1f s", time.monotonic() - self._down_since)
        self._down_since = None
        self._delay = self._backoff_s
        self._retry_at = 0.0


def api_message(response: httpx.Response) -> str:
    """The API's error message: FastAPI's ``detail`` when there is one, else the body (truncated)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])[:2000]
    return str(body)[:500]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), 300.0)
    except ValueError:
        return None


class ShipWorker(threading.Thread):
    """Ships batches from a bounded queue in its own thread, so that encoding and POSTing
    overlap the next frames' inference; replays the spool when idle; drains on stop.

    Args:
        shipper: ships (or spools) each batch.
        maxsize: batches the queue holds; ``submit`` blocks while it is full (a slow API
            makes the loop wait instead of piling batches up in memory).
        idle_s: with no batch for this long, the spool is replayed (s).

    ``submit`` and ``stop`` raise ``RuntimeError`` once shipping failed for a reason the
    spool cannot absorb (the spool itself failed: disk full, permissions); the error is
    logged with its traceback when it happens.
    """

    def __init__(self, shipper: Shipper, maxsize: int = 4, idle_s: float = 1.0) -> None:
        super().__init__(name="edgeloop-ship", daemon=True)
        self.shipper = shipper
        self.queue: queue.Queue[AnyIngestBatch | None] = queue.Queue(maxsize=maxsize)
        self.idle_s = idle_s
        self.error: BaseException | None = None

    def submit(self, batch: AnyIngestBatch) -> None:
        self._raise_if_failed()
        self.queue.put(batch)

    def stop(self) -> None:
        self.queue.put(None)
        self.join()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"the ship worker failed: {self.error}") from self.error

    def run(self) -> None:
        while True:
            try:
                batch = self.queue.get(timeout=self.idle_s)
            except queue.Empty:
                self._guard(self.shipper.replay)
                continue
            if batch is None:
                self._guard(lambda: self.shipper.replay(ignore_backoff=True))
                return
            self._guard(lambda b=batch: self.shipper.ship(b))  # type: ignore[misc]

    def _guard(self, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception as exc:  # the spool itself failed (disk full, permissions): stop loudly
            logger.exception("shipping failed; stopping the agent")
            self.error = exc
