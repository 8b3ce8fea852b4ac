"""What the audit sample found and how fast each labeler works: the figures behind
``GET /api/review/audit`` and the console's review panel (``/console/review``), computed
once here for both.

The confident-mistake rate is (wrong + wrong class) over the audited confident detections
(``edgeloop.store.verdicts``: only the audit sample's rows, which a hash chose without
looking at the detections); the miss rate is missed over audited frames with no detection.
Each comes with its 95 % Wilson interval (``edgeloop.audit.wilson``). Throughput is read
from the labels themselves (``edgeloop.store.label_work``, ``edgeloop.audit.throughput``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from api import review_models as schemas
from api.settings import ApiSettings
from edgeloop.audit import IDLE_GAP_S, PRE_LABEL_TOLERANCE_PX, Proportion, throughput, wilson
from edgeloop.store import AnyStore, label_work, verdicts

WINDOWS: dict[str, timedelta | None] = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "all": None,
}
"""``AuditWindow`` -> how far back from now (None: everything)."""


def _rate(p: Proportion) -> schemas.RatePublic:
    return schemas.RatePublic(k=p.k, n=p.n, rate=p.rate, low=p.low, high=p.high)


def since_of(window: schemas.AuditWindow, now: datetime) -> datetime | None:
    """The window's start, UTC (None for ``all``)."""
    span = WINDOWS[window]
    return None if span is None else now - span


def _audit(
    counts: dict[str, Any],
    settings: ApiSettings,
    window: schemas.AuditWindow,
    since: datetime | None,
) -> schemas.AuditPublic:
    classes = [
        schemas.AuditClassPublic(
            class_name=c["class_name"],
            wrong=c["wrong"],
            wrong_class=c["wrong_class"],
            mistakes=_rate(wilson(c["wrong"] + c["wrong_class"], c["audited"])),
        )
        for c in counts["classes"]
    ]
    mistakes = sum(c.wrong + c.wrong_class for c in classes)
    audited = sum(c["audited"] for c in counts["classes"])
    return schemas.AuditPublic(
        window=window,
        since=since,
        audit_share=settings.loop.audit_share,
        confident_at=settings.loop.uncertainty_high,
        mistakes=_rate(wilson(mistakes, audited)),
        classes=classes,
        misses=_rate(wilson(counts["frames"]["missed"], counts["frames"]["audited"])),
    )


def audit_report(
    store: AnyStore,
    settings: ApiSettings,
    *,
    window: schemas.AuditWindow,
    now: datetime | None = None,
) -> schemas.AuditPublic:
    """The confident-mistake rate (overall and per model class) and the miss rate of the
    audited verdicts reviewed in the window, with n and 95 % Wilson intervals."""
    since = since_of(window, now or datetime.now(UTC))
    with store.connect() as con:
        counts = verdicts.audit_counts(con=con, since=since)
    return _audit(counts, settings, window, since)


def review_stats(
    store: AnyStore,
    settings: ApiSettings,
    *,
    window: schemas.AuditWindow,
    now: datetime | None = None,
) -> schemas.ReviewStatsPublic:
    """The audit report and each labeler's throughput over the window, busiest first (one
    connection)."""
    since = since_of(window, now or datetime.now(UTC))
    with store.connect() as con:
        counts = verdicts.audit_counts(con=con, since=since)
        work = label_work.submits(con=con, since=since)
    labelers = [
        schemas.LabelerThroughputPublic(labeler=name, **vars(throughput(submits)))
        for name, submits in work.items()
    ]
    labelers.sort(key=lambda r: (-r.items, r.labeler))
    return schemas.ReviewStatsPublic(
        audit=_audit(counts, settings, window, since),
        labelers=labelers,
        idle_gap_s=IDLE_GAP_S,
        tolerance_px=PRE_LABEL_TOLERANCE_PX,
    )
