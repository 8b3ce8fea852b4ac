"""Jinja filters of the console's templates: how numbers, shares, ages and times read."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from edgeloop.registry import HELDOUT_KEYS

DASH = "–"
SCIENTIFIC_BELOW = 1e-3
"""p-values below this read in scientific notation (``1.7e-76``), not as ``0.0000``."""


def num(value: float | None, digits: int = 1) -> str:
    """``value`` with ``digits`` decimals; a dash for None."""
    return DASH if value is None else f"{value:.{digits}f}"


def pvalue(value: float | None) -> str:
    """A p-value in [0, 1]: three significant digits (``0.05``, ``0.312``), and below
    ``SCIENTIFIC_BELOW`` in scientific notation (``1.7e-76``); ``0`` as it is."""
    if value is None:
        return DASH
    if value == 0 or value >= SCIENTIFIC_BELOW:
        return f"{value:.3g}"
    return f"{value:.1e}"


def pct(value: float | None) -> str:
    """A share in [0, 1] as a percentage with one decimal (``0.251`` -> ``25.1 %``)."""
    return DASH if value is None else f"{100 * value:.1f} %"


def age(seconds: float | None) -> str:
    """An age in s as people read it: ``4 s ago``, ``3 min ago``, ``2.5 h ago``, ``3 d ago``."""
    return DASH if seconds is None else f"{duration(seconds)} ago"


def duration(seconds: float | None) -> str:
    """A span of time in s as people read it: ``45 s``, ``5 min``, ``2.5 h``, ``3 d``."""
    if seconds is None:
        return DASH
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.0f} d"


def when(value: datetime | None) -> str:
    """A time as ``YYYY-MM-DD HH:MM:SS UTC``."""
    if value is None:
        return DASH
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def version(value: str | None) -> str:
    """A model version as people read it: ``v3`` for a registry version (digits), any other
    name as it is (an agent's own model file is ``local-<sha256 prefix>``, not ``vlocal-…``)."""
    if not value:
        return DASH
    return f"v{value}" if value.isdigit() else value


def size(value: int | None) -> str:
    """Bytes as B / KiB / MiB / GiB."""
    if value is None:
        return DASH
    amount = float(value)
    for unit in ("B", "KiB", "MiB"):
        if amount < 1024:
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GiB"


def evaluation(value: Any) -> str:
    """A version's held-out evaluation (``schemas.VersionEvaluationPublic``) in one line:
    its gate metrics with production's beside them, the gain intervals, the image count and
    the version it was compared with; a dash for a version never evaluated."""
    if value is None:
        return DASH
    parts = []
    for key in HELDOUT_KEYS:
        if key in value.metrics:
            was = value.production_metrics.get(key)
            parts.append(
                f"{key} {value.metrics[key]:.4f}"
                + (f" (prod {was:.4f})" if was is not None else "")
            )
    parts.extend(f"gain {name} {gain}" for name, gain in value.gains.items())
    if value.heldout_images is not None:
        parts.append(f"{value.heldout_images} held-out images")
    if value.compared_with:
        parts.append(f"vs v{value.compared_with}")
    return "; ".join(parts) or DASH
