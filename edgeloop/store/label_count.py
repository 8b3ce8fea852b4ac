"""The label-count retrain trigger's shared step: ``label_count_sensor``
(``pipelines/sensors.py``) and the API's push (``api/retrain_push.py``) both ask
``label_count_due`` whether EDGELOOP_RETRAIN_LABEL_COUNT reviewed labels arrived since the
last training run, launch ``retrain_job`` under ``label_count_run_key`` with
``label_count_tags``, and record it with ``record_label_count_launch``, under
``retraining.LAUNCH_LOCK``; each keeps only how it launches (a RunRequest, or Dagster's
GraphQL API) and what it checks for a run in flight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeloop.orchestration import LABELS_TAG, PUSHED_TAG, TRIGGER_TAG
from edgeloop.rules import retrain_decision
from edgeloop.store import labels, retraining
from edgeloop.store.connection import Connection


@dataclass(frozen=True)
class LabelCountDue:
    """The label-count rule now.

    Attributes:
        count: reviewed labels (frames) since the last training run.
        threshold: the count that triggers a retrain (``LoopSettings.retrain_label_count``).
        newest_label_id: the newest label's id, None with no label yet.
        run_key: ``labels:<newest label id>`` when the rule fires, else None.
        reason: the rule's reason when it fires, else why not (``count/threshold …``).
        recorded: an event with ``run_key`` is recorded already (launched by the sensor,
            the push or an earlier tick).
    """

    count: int
    threshold: int
    newest_label_id: int | None
    run_key: str | None
    reason: str
    recorded: bool


def label_count_due(*, con: Connection, threshold: int) -> LabelCountDue:
    """Whether the label-count rule (``edgeloop.rules.retrain_decision``) fires now, under
    which run key, and whether that key is recorded already."""
    count = labels.since_last_training(con=con)
    newest = labels.newest_label_id(con=con)
    decision = retrain_decision(count, [], label_threshold=threshold)
    if decision.trigger != "label_count" or newest is None:
        reason = f"{count}/{threshold} reviewed labels since the last training run"
        return LabelCountDue(count, threshold, newest, None, reason, False)
    run_key = retraining.label_count_run_key(newest)
    recorded = retraining.exists(con=con, run_key=run_key)
    return LabelCountDue(count, threshold, newest, run_key, decision.reasons[0], recorded)


def label_count_tags(due: LabelCountDue, *, pushed_by: str | None = None) -> dict[str, str]:
    """The run tags of a label-count retrain: trigger, labels counted, and who pushed it."""
    tags = {TRIGGER_TAG: "label_count", LABELS_TAG: str(due.count)}
    return tags | ({PUSHED_TAG: pushed_by} if pushed_by else {})


def record_label_count_launch(
    *,
    con: Connection,
    due: LabelCountDue,
    dagster_run_id: str | None = None,
    pushed_by: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Record the launch of ``due``'s retrain in ``retraining_events`` (decision
    ``launched``; the run id when the launcher knows it, else the run links itself)."""
    assert due.run_key is not None, "record a launch only when the rule fired"
    reason = f"{due.reason}; pushed by the {pushed_by.upper()}" if pushed_by else due.reason
    retraining.record(
        con=con,
        trigger="label_count",
        decision="launched",
        reason=reason,
        labels_since_training=due.count,
        run_key=due.run_key,
        dagster_run_id=dagster_run_id,
        details={"newest_label_id": due.newest_label_id, "threshold": due.threshold}
        | ({"pushed": pushed_by} if pushed_by else {})
        | (details or {}),
    )
