"""The push trigger: the label that brings the count to the threshold asks Dagster for the
retrain run at once, instead of waiting up to ``EDGELOOP_PIPELINES_SENSOR_INTERVAL_S``
(30 s) for ``label_count_sensor``'s next tick.

The label route (``api/routes/labeling_queue.py``) hands ``RetrainPush.request`` to
FastAPI's ``BackgroundTasks`` once its transaction committed and only when the count
reached the threshold: the labeler's response never waits on, or depends on, Dagster.
The push applies the sensor's rule (``edgeloop.rules.retrain_decision``) and run key
(``edgeloop.store.retraining.label_count_run_key``: ``labels:<newest label id>``), tags the
run with it as ``dagster/run_key`` (the run then links itself to the event, see
``assets.training``) plus ``edgeloop/trigger: label_count`` and ``edgeloop/pushed: api``,
and records the ``retraining_events`` row with the Dagster run id. The sensor, kept as
the fallback, then finds the event or the queued run and launches nothing. When Dagster
is unreachable or refuses, nothing is recorded: a warning is logged and the sensor
launches the run on its next tick. When the Dagster at ``EDGELOOP_API_DAGSTER_URL``
serves another stack (``api.dagster_launch.check_stack``), nothing is launched there and
nothing recorded: a warning names both stacks.

Exactly one run for a burst of labels: within one API process, one thread at a time
checks "is a label-count retrain launched and not finished?"
(``retraining.label_count_in_flight``), submits and records. Requests that arrive while
it works are folded into one more check by that same thread, so no other request thread
blocks on Dagster. Two API processes on one DuckDB file are not serialised with each
other (``edgeloop up`` runs one).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends

from api.dagster_launch import (
    RETRAIN_JOB,
    DagsterLauncher,
    JobLauncher,
    is_unreachable,
    launch_retrain,
)
from api.deps import SettingsDep, app_state
from api.settings import ApiSettings
from edgeloop.orchestration import StackMismatchError
from edgeloop.rules import retrain_decision
from edgeloop.store import AnyStore, StoreLockedError, label_count, retraining

logger = logging.getLogger(__name__)

PushOutcome = Literal[
    "below_threshold",
    "in_flight",
    "already_recorded",
    "launched",
    "unreachable",
    "refused",
    "other_stack",
]


@dataclass(frozen=True)
class PushResult:
    """What one check did: ``launched`` (``dagster_run_id`` set), or why not."""

    outcome: PushOutcome
    labels_since_training: int
    run_key: str | None = None
    dagster_run_id: str | None = None


def push_due(labels_since_training: int, settings: ApiSettings) -> bool:
    """True when the push is on (``EDGELOOP_API_PUSH_RETRAIN``) and the label-count rule
    fires (``edgeloop.rules.retrain_decision``, threshold ``EDGELOOP_RETRAIN_LABEL_COUNT``)."""
    if not settings.push_retrain:
        return False
    decision = retrain_decision(
        labels_since_training, [], label_threshold=settings.loop.retrain_label_count
    )
    return decision.trigger == "label_count"


def get_push_launcher(settings: SettingsDep) -> JobLauncher:
    """The launcher the push uses; tests swap it with ``app.dependency_overrides``."""
    return DagsterLauncher(settings)


class RetrainPush:
    """One per app (``api.main.create_app``): checks and pushes one at a time.

    Args:
        settings: the API settings (Dagster URL and code location, the loop's threshold).
        store: the app's DuckDB store.
    """

    def __init__(self, settings: ApiSettings, store: AnyStore) -> None:
        self._settings = settings
        self._store = store
        self._guard = threading.Lock()
        self._running = False
        self._requested = False

    def request(self, launcher: JobLauncher) -> None:
        """Check and push now, or, when another thread is at it, have it check once more
        after its current check (so a label committed meanwhile is seen). Never raises for
        Dagster or a locked store: it logs, and the sensor launches the run instead."""
        with self._guard:
            self._requested = True
            if self._running:
                return
            self._running = True
        try:
            while self._next_round():
                try:
                    self.push_once(launcher)
                except StoreLockedError as exc:
                    logger.warning("retrain push skipped, the store is locked: %s", exc)
        except BaseException:
            with self._guard:
                self._running = False
            raise

    def _next_round(self) -> bool:
        """Take the pending request, or mark this thread done (atomically, so a request
        that arrives just after is not lost)."""
        with self._guard:
            if self._requested:
                self._requested = False
                return True
            self._running = False
            return False

    def push_once(self, launcher: JobLauncher) -> PushResult:
        """One check-and-submit; call it through ``request`` (which serialises it).

        Launches ``retrain_job`` when the label-count rule fires, no label-count run is in
        flight, and the run key is not recorded yet (the sensor may have got there first).

        Raises:
            StoreLockedError: another process held the DuckDB file past its lock timeout.
        """
        with self._store.exclusive(retraining.LAUNCH_LOCK):
            return self._push_once(launcher)

    def _push_once(self, launcher: JobLauncher) -> PushResult:
        settings = self._settings
        with self._store.connect() as con:
            due = label_count.label_count_due(con=con, threshold=settings.loop.retrain_label_count)
            in_flight = retraining.label_count_in_flight(con=con)
        count, run_key = due.count, due.run_key
        if run_key is None:
            return PushResult("below_threshold", count)
        if in_flight is not None:
            logger.info(
                "retrain push: %s labels since training, but %s (event %s, run %s) is in flight",
                count,
                in_flight["run_key"],
                in_flight["event_id"],
                in_flight["dagster_run_id"] or "not linked yet",
            )
            return PushResult("in_flight", count, run_key=in_flight["run_key"])
        if due.recorded:
            return PushResult("already_recorded", count, run_key=run_key)
        tags = {"dagster/run_key": run_key} | label_count.label_count_tags(due, pushed_by="api")
        try:
            run_id = launch_retrain(launcher, settings, tags=tags)
        except StackMismatchError as exc:
            logger.warning("retrain push of %s not launched: %s", run_key, exc)
            return PushResult("other_stack", count, run_key=run_key)
        except Exception as exc:
            outcome: PushOutcome = "unreachable" if is_unreachable(exc) else "refused"
            logger.warning(
                "retrain push of %s: Dagster at %s %s (%s); label_count_sensor will launch it",
                run_key,
                settings.dagster_url,
                "is unreachable" if outcome == "unreachable" else "refused the launch",
                exc,
            )
            return PushResult(outcome, count, run_key=run_key)
        with self._store.connect() as con:
            label_count.record_label_count_launch(
                con=con,
                due=due,
                dagster_run_id=run_id,
                pushed_by="api",
                details={"job": RETRAIN_JOB},
            )
        logger.info("retrain push: %s launched as Dagster run %s", run_key, run_id)
        return PushResult("launched", count, run_key=run_key, dagster_run_id=run_id)


get_retrain_push = app_state("retrain_push", RetrainPush)

RetrainPushDep = Annotated[RetrainPush, Depends(get_retrain_push)]
PushLauncherDep = Annotated[JobLauncher, Depends(get_push_launcher)]
