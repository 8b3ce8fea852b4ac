"""The console's review panel (issue 18): what the audit sample found (the confident-mistake
rate overall and per class, the miss rate, each with n and a 95 % interval) and each
labeler's pace (items and boxes per hour, median seconds per item, share of pre-labels
changed), over the last 24 h, 7 days or everything (``api.review_stats``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from api.deps import CurrentPrincipal, SettingsDep, StoreDep
from api.review_models import AuditWindow, ReviewStatsPublic
from api.review_stats import review_stats


def review_panel(
    _principal: CurrentPrincipal,
    store: StoreDep,
    settings: SettingsDep,
    window: Annotated[AuditWindow, Query(description="How far back: 24h, 7d or all.")] = "7d",
) -> ReviewStatsPublic:
    """The audit's rates and each labeler's throughput over ``window``, busiest first."""
    return review_stats(store, settings, window=window)
