"""Jinja filters of the console's templates: how numbers, shares, ages and times read."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

DASH = "–"
METRIC_KEYS = ("mAP50", "mAP50-95", "precision", "recall")
"""Gate metrics shown for a version, when its alias move recorded them."""


def num(value: float | None, digits: int = 1) -> str:
    """``value`` with ``digits`` decimals; a dash for None."""
    return DASH if value is None else f"{value:.{digits}f}"


def pct(value: float | None) -> str:
    """A share in [0, 1] as a percentage with one decimal (``0.251`` -> ``25.1 %``)."""
    return DASH if value is None else f"{100 * value:.1f} %"


def age(seconds: float | None) -> str:
    """An age in s as people read it: ``4 s ago``, ``3 min ago``, ``2.5 h ago``, ``3 d ago``."""
    if seconds is None:
        return DASH
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86_400:.0f} d ago"


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


def metrics(values: dict[str, Any]) -> str:
    """The held-out numbers of an alias move: candidate vs production gate metrics (the
    ``model_promotion`` asset's record), else any flat numbers recorded."""
    if not values:
        return DASH
    candidate, production = values.get("candidate"), values.get("production")
    if isinstance(candidate, dict):
        parts = []
        for key in METRIC_KEYS:
            if key in candidate:
                was = production.get(key) if isinstance(production, dict) else None
                parts.append(
                    f"{key} {candidate[key]:.4f}"
                    + (f" (prod {was:.4f})" if isinstance(was, int | float) else "")
                )
        evidence = values.get("evidence")
        gain = evidence.get("gain_mAP50-95") if isinstance(evidence, dict) else None
        if isinstance(gain, dict) and {"point", "low", "high"} <= set(gain):
            parts.append(
                f"gain mAP50-95 {gain['point']:+.4f} [{gain['low']:+.4f}, {gain['high']:+.4f}]"
            )
        if values.get("val_images") is not None:
            parts.append(f"{values['val_images']} held-out images")
        return "; ".join(parts) or DASH
    flat = [
        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
        for k, v in values.items()
        if isinstance(v, int | float | str)
    ]
    return "; ".join(flat) or DASH
