"""Drift alerts: when to raise one, and its webhook delivery.

The rules (seed 001: "show alert if drift_share > 0.3"):
- ``drift``: a camera's drift share is above ``edgeloop.rules.DRIFT_SHARE``;
- ``class_mix``: a camera's detection class mix in the week after a production promotion
  differs from the week before by more than ``LoopSettings.alert_class_mix_shift`` (total
  variation distance, ``class_mix_shift``).

``evaluate`` applies them to one drift report's per-camera results (``drift_sensor``'s
input), raising each alert once and clearing those whose condition no longer holds
(``edgeloop.store.alerts``); ``deliver_pending`` then POSTs the new ones to
``LoopSettings.alert_webhook_url`` with httpx, retried by tenacity, and records on each
alert whether it was sent or why it failed. Delivery never raises: a receiver that is down
marks the alerts failed.

Payloads (``LoopSettings.alert_webhook_format``):
- ``alertmanager``: the Alertmanager webhook receiver format, version 4
  (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config):
  ``{"version": "4", "status": "firing", "receiver", "groupKey", "truncatedAlerts",
  "alerts": [{"status", "labels": {"alertname", "camera_id", "severity", "kind"},
  "annotations": {"summary", "description"}, "startsAt", "endsAt", "generatorURL",
  "fingerprint"}], "groupLabels", "commonLabels", "commonAnnotations", "externalURL"}``;
  ``endsAt`` is ``0001-01-01T00:00:00Z`` for a firing alert, as Alertmanager sends it.
- ``json``: ``{"source": "edgeloop", "alerts": [<the /api/alerts row of each alert>]}``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import tenacity

from edgeloop.rules import DRIFT_SHARE
from edgeloop.settings import MODEL_NAME
from edgeloop.store import alerts as store_alerts
from edgeloop.store import analytics, deployments
from edgeloop.store.connection import Connection

if TYPE_CHECKING:
    from edgeloop.settings import LoopSettings
    from edgeloop.store import AnyStore

logger = logging.getLogger(__name__)

ALERTNAMES = {"drift": "EdgeloopCameraDrift", "class_mix": "EdgeloopClassMixShift"}
"""Alertmanager's ``alertname`` label of each alert kind (``edgeloop.store.alerts.KINDS``)."""
ZERO_TIME = "0001-01-01T00:00:00Z"
"""Alertmanager's ``endsAt`` of an alert that has not ended."""
RECEIVER = "edgeloop"


def class_mix_shift(before: Mapping[str, float], after: Mapping[str, float]) -> float | None:
    """Total variation distance between two class mixes: half the sum over classes of the
    absolute change in each class's share of detections, in [0, 1] (0: same mix, 1: no
    class in common). ``before``/``after`` map class name -> detections; None when either
    has none."""
    total_before, total_after = sum(before.values()), sum(after.values())
    if total_before <= 0 or total_after <= 0:
        return None
    names = set(before) | set(after)
    return 0.5 * sum(
        abs(before.get(n, 0) / total_before - after.get(n, 0) / total_after) for n in names
    )


CLASS_MIX_WINDOW = timedelta(days=7)
"""The class-mix windows before and after a promotion."""


def promotion_class_mix(*, con: Connection, camera_id: str, now: datetime) -> dict[str, Any] | None:
    """The class mix of ``camera_id``'s detections in the week before and the week after
    (up to ``now``) the newest move of the production alias: ``promoted_version``,
    ``promoted_at``, ``before``/``after`` (class -> detections) and ``class_mix_shift``
    ([0, 1], None when either week has no detection); None when production never moved."""
    moves = [
        m
        for m in deployments.recent(con=con, model_name=MODEL_NAME, limit=50)
        if m["alias"] == "production"
    ]
    if not moves:
        return None
    at = moves[0]["created_at"]
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    mixes = []
    for since, until in ((at - CLASS_MIX_WINDOW, at), (at, min(at + CLASS_MIX_WINDOW, now))):
        rows = (
            analytics.class_mix(con=con, since=since, until=until, camera_id=camera_id)
            if until > since
            else []
        )
        mixes.append({str(r["class_name"]): int(r["detections"]) for r in rows})
    return {
        "promoted_version": str(moves[0]["version"]),
        "promoted_at": at.isoformat(),
        "before": mixes[0],
        "after": mixes[1],
        "class_mix_shift": class_mix_shift(mixes[0], mixes[1]),
    }


def _delivery_status(loop: LoopSettings) -> str:
    return "pending" if loop.alert_webhook_url else "disabled"


def evaluate(
    *,
    con: Connection,
    loop: LoopSettings,
    cameras: Mapping[str, Mapping[str, Any]],
    now: datetime | None = None,
) -> list[int]:
    """Raise or clear each camera's alerts from one drift report's results.

    Args:
        cameras: camera -> ``{"drift_share": float, "min_p_value", "model_version",
            "class_mix_shift": float | None, "promoted_version": str | None}``
            (``assets.drift.parse_drift_metadata``).

    Returns:
        The ids of the alerts raised (none for a condition a live alert already covers).
    """
    raised: list[int] = []
    delivery = _delivery_status(loop)
    for camera, result in sorted(cameras.items()):
        share = float(result["drift_share"])
        if share > DRIFT_SHARE:
            p = result.get("min_p_value")
            version = result.get("model_version")
            alert_id = store_alerts.raise_alert(
                con=con,
                camera_id=camera,
                kind="drift",
                severity="critical" if share >= 2 * DRIFT_SHARE else "warning",
                summary=f"camera {camera} drifted: drift share {share:.2f} > {DRIFT_SHARE:g}",
                description=(
                    f"{share:.0%} of camera {camera}'s frame features drifted against its "
                    f"reference window (min p-value {p:.3g})"
                    if p is not None
                    else f"{share:.0%} of camera {camera}'s frame features drifted"
                )
                + (f"; frames from model version {version}" if version else ""),
                value=share,
                threshold=DRIFT_SHARE,
                model_version=version,
                details={k: result.get(k) for k in ("min_p_value", "p_values")},
                delivery_status=delivery,
                now=now,
            )
            raised += [alert_id] if alert_id is not None else []
        else:
            store_alerts.clear(con=con, camera_id=camera, kind="drift", now=now)
        shift = result.get("class_mix_shift")
        if shift is None:
            continue
        promoted = result.get("promoted_version")
        if shift > loop.alert_class_mix_shift:
            alert_id = store_alerts.raise_alert(
                con=con,
                camera_id=camera,
                kind="class_mix",
                summary=(
                    f"camera {camera}: detection class mix shifted {shift:.2f} after "
                    f"version {promoted} was promoted"
                ),
                description=(
                    f"The share of each class among camera {camera}'s detections changed by "
                    f"a total variation distance of {shift:.2f} (threshold "
                    f"{loop.alert_class_mix_shift:g}) between the week before and the week "
                    f"after model version {promoted} became production"
                ),
                value=shift,
                threshold=loop.alert_class_mix_shift,
                model_version=promoted,
                details={"class_mix": result.get("class_mix")},
                delivery_status=delivery,
                now=now,
            )
            raised += [alert_id] if alert_id is not None else []
        else:
            store_alerts.clear(con=con, camera_id=camera, kind="class_mix", now=now)
    return raised


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _labels(alert: Mapping[str, Any]) -> dict[str, str]:
    return {
        "alertname": ALERTNAMES[alert["kind"]],
        "camera_id": str(alert["camera_id"]),
        "severity": str(alert["severity"]),
        "kind": str(alert["kind"]),
    }


def _common(dicts: Sequence[Mapping[str, str]]) -> dict[str, str]:
    first = dict(dicts[0]) if dicts else {}
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in dicts)}


def alertmanager_payload(
    alerts: Sequence[Mapping[str, Any]], *, loop: LoopSettings
) -> dict[str, Any]:
    """Alerts (``edgeloop.store.alerts`` rows) as one Alertmanager webhook body (version 4,
    module docstring); the console's alerts panel is each alert's ``generatorURL``."""
    console = f"{loop.api_url.rstrip('/')}/console/alerts"
    items: list[dict[str, Any]] = []
    all_labels: list[dict[str, str]] = []
    all_annotations: list[dict[str, str]] = []
    for alert in alerts:
        labels = _labels(alert)
        all_labels.append(labels)
        annotations = {
            "summary": str(alert["summary"]),
            "description": str(alert["description"]),
        }
        all_annotations.append(annotations)
        fingerprint = hashlib.sha256(
            f"{labels['alertname']}|{alert['camera_id']}|{alert['alert_id']}".encode()
        ).hexdigest()[:16]
        items.append(
            {
                "status": "firing",
                "labels": labels,
                "annotations": annotations,
                "startsAt": _iso(alert["raised_at"]),
                "endsAt": ZERO_TIME,
                "generatorURL": f"{console}?alert_id={alert['alert_id']}",
                "fingerprint": fingerprint,
            }
        )
    common = _common(all_labels)
    group = {"alertname": common["alertname"]} if "alertname" in common else {}
    group_key = "{}:{" + ", ".join(f'{k}="{v}"' for k, v in group.items()) + "}"
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": RECEIVER,
        "groupLabels": group,
        "commonLabels": common,
        "commonAnnotations": _common(all_annotations),
        "externalURL": console,
        "alerts": items,
    }


def public_alert(alert: Mapping[str, Any]) -> dict[str, Any]:
    """One alert as JSON-ready values (times as ISO 8601): the ``json`` payload's items."""
    return {k: (_iso(v) if isinstance(v, datetime) else v) for k, v in alert.items()}


def payload(alerts: Sequence[Mapping[str, Any]], *, loop: LoopSettings) -> dict[str, Any]:
    """The webhook body in ``loop.alert_webhook_format``."""
    if loop.alert_webhook_format == "alertmanager":
        return alertmanager_payload(alerts, loop=loop)
    return {"source": "edgeloop", "alerts": [public_alert(a) for a in alerts]}


@dataclass(frozen=True)
class Delivery:
    """One webhook POST's outcome: ``delivered`` (a 2xx answer), the ``attempts`` made and
    the last ``error`` (None when delivered)."""

    delivered: bool
    attempts: int
    error: str | None = None


def post(body: Mapping[str, Any], *, loop: LoopSettings, wait_s: float = 0.5) -> Delivery:
    """POST ``body`` as JSON to ``loop.alert_webhook_url``, up to
    ``loop.alert_webhook_attempts`` times with exponential back-off starting at ``wait_s``
    seconds (tenacity), each with ``loop.alert_webhook_timeout_s``. A non-2xx answer or a
    transport error counts as a failed attempt. Never raises."""
    url = loop.alert_webhook_url
    if not url:
        return Delivery(False, 0, "no webhook configured (EDGELOOP_ALERT_WEBHOOK_URL)")
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(loop.alert_webhook_attempts),
        wait=tenacity.wait_exponential(multiplier=wait_s, max=30),
        retry=tenacity.retry_if_exception_type(httpx.HTTPError),
        reraise=True,
    )
    attempts = 0
    try:
        with httpx.Client(timeout=loop.alert_webhook_timeout_s) as client:
            for attempt in retrying:
                with attempt:
                    attempts += 1
                    client.post(url, json=body).raise_for_status()
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
        logger.warning("alert webhook %s failed after %s attempts: %s", url, attempts, error)
        return Delivery(False, attempts, error)
    return Delivery(True, attempts)


def deliver_pending(*, store: AnyStore, loop: LoopSettings, wait_s: float = 0.5) -> Delivery | None:
    """POST every alert whose delivery is pending, in one body, and record the outcome on
    each (``sent``, or ``failed`` with the attempts and last error). The store is not held
    open while posting. Returns the delivery, or None when nothing was pending or no
    webhook is configured."""
    if not loop.alert_webhook_url:
        return None
    with store.connect() as con:
        pending = store_alerts.pending_delivery(con=con)
    if not pending:
        return None
    outcome = post(payload(pending, loop=loop), loop=loop, wait_s=wait_s)
    with store.connect() as con:
        store_alerts.record_delivery(
            con=con,
            alert_ids=[int(a["alert_id"]) for a in pending],
            delivered=outcome.delivered,
            attempts=outcome.attempts,
            error=outcome.error,
        )
    return outcome
