"""Audit sampling and the review figures it yields: which frames a person checks although
the model was sure of them, the confident-mistake rate with its interval, and how fast each
labeler works.

Standard library only: the edge agent imports ``in_audit_sample`` to send the JPEG of a
sampled frame (it otherwise sends one only with an uncertain detection).

**The sample** is a share of *frames*, chosen by a hash of the frame key: the first
``AUDIT_HASH_DIGITS`` hex digits of ``md5(frame_key)``, read as a number in [0, 1), below the
share. Nothing random is kept anywhere, so every API replica, the agent and a rerun agree on
the sample, and the database computes the same rule (``audit_sample_sql``: ``left(md5(..), 8)``
compared as text, which orders equal-length lowercase hex as numbers, on DuckDB and
PostgreSQL alike). In a sampled frame every *confident* detection (confidence at or above the
uncertainty band's upper edge, ``LoopSettings.uncertainty_high``) is audited; a sampled frame
with no detection is audited for missed objects. A detection's frame decides, so the whole
frame is looked at once; detections of one frame are not independent, which the interval
below ignores (a design effect of clustering, small while frames hold few detections).
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

AUDIT_SHARE = 0.02
"""Default of ``LoopSettings.audit_share`` (``EDGELOOP_AUDIT_SHARE``) and of the agent's
``EDGELOOP_AGENT_AUDIT_SHARE``: the share of frames audited. Source: issue 18 ("a small,
settable share", e.g. 0.02). At 2 %, a camera with one confident detection a second yields
about 1,700 audit crops a day: enough for a 95 % interval of about ±1 point around a 5 %
mistake rate within a day, while adding one JPEG per 50 frames to the agent's uploads."""

AUDIT_HASH_DIGITS = 8
"""Hex digits of ``md5(frame_key)`` the sample reads: 32 bits, share resolution 2.3e-10."""

WILSON_Z = 1.959963984540054
"""Standard normal quantile of 0.975: a two-sided 95 % interval."""

IDLE_GAP_S = 300.0
"""A gap longer than this between a labeler's submits is a break, not work time, s: the
labeling queue's claim lease (``EDGELOOP_API_CLAIM_LEASE_S``, Label Studio's 300 s task lock)
is how long an item may take before the loop hands it to someone else."""

PRE_LABEL_TOLERANCE_PX = 1.0
"""A reviewed box within this many px (each coordinate) of a pre-label's box, of the same
class, leaves the pre-label unchanged: the API clamps boxes to the frame, and the page
rounds to whole pixels."""


def audit_hash(frame_key: str) -> str:
    """The frame's sample hash: the first ``AUDIT_HASH_DIGITS`` lowercase hex digits of
    ``md5(frame_key)`` (UTF-8)."""
    return hashlib.md5(frame_key.encode(), usedforsecurity=False).hexdigest()[:AUDIT_HASH_DIGITS]


def audit_threshold(share: float) -> str | None:
    """The hash bound of ``share`` in [0, 1]: a frame is sampled when ``audit_hash < bound``
    (as text); None when ``share`` takes every frame (1.0).

    Raises:
        ValueError: ``share`` outside [0, 1].
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"audit share must be in [0, 1], got {share}")
    bound = math.floor(share * 16**AUDIT_HASH_DIGITS)
    return None if bound >= 16**AUDIT_HASH_DIGITS else f"{bound:0{AUDIT_HASH_DIGITS}x}"


def in_audit_sample(frame_key: str, share: float) -> bool:
    """True when the frame is in the audit sample at ``share`` (see the module doc)."""
    bound = audit_threshold(share)
    return bound is None or audit_hash(frame_key) < bound


def audit_sample_sql(column: str, share: float) -> tuple[str, list[str]]:
    """``in_audit_sample`` over the frame-key column ``column`` as a SQL condition and its
    parameters (DuckDB and PostgreSQL alike: ``md5`` gives lowercase hex on both)."""
    bound = audit_threshold(share)
    if bound is None:
        return "TRUE", []
    return f"left(md5({column}), {AUDIT_HASH_DIGITS}) < ?", [bound]


@dataclass(frozen=True)
class Proportion:
    """``k`` of ``n`` with the Wilson score interval (95 %); rate and bounds None when n = 0."""

    k: int
    n: int
    rate: float | None
    low: float | None
    high: float | None


def wilson(k: int, n: int, z: float = WILSON_Z) -> Proportion:
    """``k`` successes of ``n`` trials with the Wilson score interval (Wilson 1927; the
    interval Agresti & Coull 1998 recommend over the normal one for small n or rates near 0).

    Raises:
        ValueError: ``k`` outside [0, n].
    """
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return Proportion(k, n, None, None, None)
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Proportion(k, n, p, max(0.0, centre - half), min(1.0, centre + half))


Box = tuple[tuple[float, float, float, float], str]
"""A box as ``((x1, y1, x2, y2) px of the original frame, class_name)``."""


def changed_pre_labels(pre_labels: Sequence[Box], reviewed: Sequence[Box]) -> int:
    """How many of the model's boxes shown on the page (``pre_labels``, clamped to the frame
    as the API clamps them) the reviewer changed: moved, resized, reclassed or rejected. A
    pre-label is unchanged when a reviewed box not matched already has its class and lies
    within ``PRE_LABEL_TOLERANCE_PX`` of it on each coordinate (matched greedily, in order)."""
    unused = list(reviewed)
    changed = 0
    for bbox, name in pre_labels:
        match = next(
            (
                i
                for i, (other, other_name) in enumerate(unused)
                if other_name == name
                and all(
                    abs(a - b) <= PRE_LABEL_TOLERANCE_PX for a, b in zip(bbox, other, strict=True)
                )
            ),
            None,
        )
        if match is None:
            changed += 1
        else:
            unused.pop(match)
    return changed


@dataclass(frozen=True)
class Submit:
    """One labeler's submit: the labels stored at one instant (a grid page stores several).

    Attributes:
        at: when, UTC.
        items: labels stored (frames).
        boxes: boxes in them.
        pre_labels / changed: model boxes shown on those frames / changed by the labeler.
    """

    at: datetime
    items: int
    boxes: int
    pre_labels: int
    changed: int


@dataclass(frozen=True)
class Throughput:
    """A labeler's pace over a window (see ``throughput``); rates None when nothing was timed."""

    items: int
    boxes: int
    timed_items: int
    active_s: float
    items_per_hour: float | None
    boxes_per_hour: float | None
    median_s_per_item: float | None
    pre_labels: int
    changed_share: float | None


def throughput(submits: Sequence[Submit]) -> Throughput:
    """Items and boxes per hour, median seconds per item and the share of pre-labels changed,
    from one labeler's submits in time order.

    A submit's work time is the gap since their previous submit, counted only when at most
    ``IDLE_GAP_S`` (a longer gap is a break; the first submit of a session has no measured
    time). Each item of a submit takes ``gap / items`` seconds; per-hour rates are timed items
    (and their boxes) over the summed gaps, so breaks do not dilute them.
    """
    active_s = 0.0
    timed_items = timed_boxes = 0
    per_item: list[float] = []
    previous: datetime | None = None
    for submit in submits:
        if previous is not None:
            gap = (submit.at - previous).total_seconds()
            if 0 < gap <= IDLE_GAP_S:
                active_s += gap
                timed_items += submit.items
                timed_boxes += submit.boxes
                per_item += [gap / submit.items] * submit.items
        previous = submit.at
    pre_labels = sum(s.pre_labels for s in submits)
    return Throughput(
        items=sum(s.items for s in submits),
        boxes=sum(s.boxes for s in submits),
        timed_items=timed_items,
        active_s=active_s,
        items_per_hour=timed_items * 3600 / active_s if active_s else None,
        boxes_per_hour=timed_boxes * 3600 / active_s if active_s else None,
        median_s_per_item=statistics.median(per_item) if per_item else None,
        pre_labels=pre_labels,
        changed_share=sum(s.changed for s in submits) / pre_labels if pre_labels else None,
    )
