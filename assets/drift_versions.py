"""The drift report's model-version dimension: one camera's drift windows split by the
model version that produced each frame's detections (``assets/drift.py``)."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class VersionSplit:
    """One camera's windows by model version.

    Attributes:
        model_version: the version behind most frames of the current window (None: unknown).
        reference_model_version: the same for the reference window.
        versions: version -> ``{"frames": n, "drift_share": [0, 1] | None}`` over the current
            window; a drift share only when the window holds several versions and this one
            has at least ``min_frames`` frames (its frames against the whole reference).
    """

    model_version: str | None
    reference_model_version: str | None
    versions: dict[str, dict[str, Any]]

    @property
    def changed(self) -> bool:
        """The current window's model is not the reference window's (a promotion, a rollback)."""
        return self.model_version != self.reference_model_version


def _dominant(frames: "pd.DataFrame") -> str | None:
    if "model_version" not in frames or frames.empty:
        return None
    counts = frames["model_version"].astype(str).value_counts()
    return str(counts.index[0])


def split_by_version(
    reference: "pd.DataFrame",
    current: "pd.DataFrame",
    *,
    min_frames: int,
    drift_share: Callable[["pd.DataFrame", "pd.DataFrame"], float],
) -> VersionSplit:
    """The windows by ``model_version`` (``VersionSplit``); each version's own drift
    (``drift_share(reference, its frames)``, which may raise ValueError: then None) runs
    only when the current window holds more than one version."""
    versions: dict[str, dict[str, Any]] = {}
    if "model_version" in current:
        groups = dict(tuple(current.groupby(current["model_version"].astype(str), sort=True)))
        for version, frames in groups.items():
            share: float | None = None
            if len(groups) > 1 and len(frames) >= min_frames:
                try:
                    share = drift_share(reference, frames)
                except ValueError:
                    share = None
            versions[str(version)] = {"frames": len(frames), "drift_share": share}
    return VersionSplit(_dominant(current), _dominant(reference), versions)
