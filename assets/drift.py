"""The ``drift_report`` asset: per-camera data drift of frame features, with Evidently.

Features (per frame, from the agent): brightness, contrast, sharpness, saturation
(``edgeloop.wire.FrameQuality``), detection_count and mean_confidence.

Windows, per camera (N = ``window_frames``):
- reference: the N latest frames captured at or before the last training run's label
  cutoff (``training_runs.label_cutoff``) — what the production model was trained
  around, so drift clears once a retrain has seen the new conditions; with no training
  run yet, or a camera with too few frames before the cutoff, its N earliest frames.
  (``reference="earliest"`` always uses the earliest frames.)
- current: the camera's N latest frames captured after the reference window.
A camera with fewer than ``min_window_frames`` in either window is skipped (listed in the
metadata with the reason).

Each feature is tested with the two-sample Kolmogorov–Smirnov test (``num_method="ks"``;
``cat_method="chisquare"``), so every feature gets a p-value — Evidently otherwise
switches to distances at >= 1000 rows. Verdict: ``edgeloop.rules.camera_drifted``
(any p < 0.05 or drift share > 0.30, the seed's rule). Evidently is given the loop's own
thresholds (``DRIFT_P_VALUE`` per feature, ``DRIFT_SHARE`` for the dataset), so its HTML
report states the threshold the console and the drift sensor use, not its default 0.5.

Per model version (issue 19): each frame carries the model version that produced its
detections, so each report records the version behind most frames of each window
(``model_version``, ``reference_model_version``: different when a promotion happened
between them) and, when the current window holds frames of more than one version, the drift
of each version's frames against the same reference (``model_versions``). And per camera, the
class-mix shift (total variation distance, ``edgeloop.alerts.class_mix_shift``) between the
week before and the week after the newest production promotion: what ``drift_sensor``
raises ``class_mix`` alerts on.
"""

import json
import logging
import math
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import dagster as dg
from pydantic import Field

from assets._markdown import md_table
from assets.detections import detections
from assets.drift_versions import VersionSplit, split_by_version
from assets.resources import StoreResource
from edgeloop.alerts import promotion_class_mix
from edgeloop.rules import DRIFT_P_VALUE, DRIFT_SHARE, camera_drifted
from edgeloop.settings import REPORTS_PREFIX
from edgeloop.store import drift as drift_reports
from edgeloop.store import frames as store_frames
from edgeloop.store import training_runs

if TYPE_CHECKING:  # pandas is imported where used: the code location loads in every run
    import pandas as pd

logger = logging.getLogger(__name__)

FEATURES = store_frames.QUALITY_FEATURES
"""Per-frame drift features (columns of ``frames``)."""


@dataclass(frozen=True)
class CameraDrift:
    """One camera's drift result.

    Attributes:
        drift_share: share of tested features that drifted (p < ``DRIFT_P_VALUE``), [0, 1].
        p_values: feature -> KS p-value, for the features tested.
        min_p_value: smallest p-value, None when no feature was tested.
        drifted: the seed's verdict (``edgeloop.rules.camera_drifted``).
        untested: features left out (empty in a window, e.g. mean_confidence with no detections).
    """

    drift_share: float
    p_values: dict[str, float]
    min_p_value: float | None
    drifted: bool
    untested: list[str] = field(default_factory=list)

    @property
    def drifted_features(self) -> list[str]:
        return sorted(f for f, p in self.p_values.items() if p < DRIFT_P_VALUE)


def drift_from_report(
    report: Mapping[str, Any], features: Sequence[str] = FEATURES, untested: Sequence[str] = ()
) -> CameraDrift:
    """Read drift share and per-feature p-values from an Evidently 0.7 snapshot's ``dict()``.

    Expects the metrics of ``DataDriftPreset(num_method="ks", ...)``: one
    ``DriftedColumnsCount`` (value ``{"count", "share"}``) and one ``ValueDrift`` per
    column (value: the p-value).

    Raises:
        ValueError: the report lacks the drift-count metric (not a DataDriftPreset report).
    """
    share: float | None = None
    p_values: dict[str, float] = {}
    for metric in report.get("metrics", []):
        config = metric.get("config", {})
        kind = str(config.get("type", ""))
        if kind.endswith(":DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif kind.endswith(":ValueDrift") and config.get("column") in features:
            value = float(metric["value"])
            if not math.isnan(value):
                p_values[str(config["column"])] = value
    if share is None:
        raise ValueError("the report has no DriftedColumnsCount metric; run DataDriftPreset")
    min_p = min(p_values.values()) if p_values else None
    return CameraDrift(
        drift_share=share,
        p_values=p_values,
        min_p_value=min_p,
        drifted=camera_drifted(share, min_p),
        untested=list(untested),
    )


def select_windows(
    frames: "pd.DataFrame",
    *,
    window: int,
    min_frames: int,
    cutoff: "pd.Timestamp | None",
) -> "tuple[pd.DataFrame, pd.DataFrame, str] | str":
    """Split one camera's frames into (reference, current, how the reference was chosen).

    Args:
        frames: the camera's frames with ``captured_at`` and the feature columns.
        window: N, the most frames in each window.
        min_frames: the fewest frames a window may have.
        cutoff: the last training run's label cutoff, or None (then: earliest frames).

    Returns:
        ``(reference, current, reference_kind)``, or a reason string when the camera is skipped.
    """
    frames = frames.sort_values("captured_at", kind="stable").reset_index(drop=True)
    reference: pd.DataFrame | None = None
    kind = "earliest"
    if cutoff is not None:
        before = frames[frames["captured_at"] <= cutoff]
        if len(before) >= min_frames:
            reference, kind = before.tail(window), "before training cutoff"
    if reference is None:
        reference = frames.head(window)
    rest = frames.iloc[int(reference.index.max()) + 1 :] if len(reference) else frames
    current = rest.tail(window)
    if len(reference) < min_frames or len(current) < min_frames:
        return (
            f"too few frames: {len(frames)} in all, reference {len(reference)}, "
            f"current {len(current)} (need {min_frames} in each window)"
        )
    return reference, current, kind


def run_drift(
    reference: "pd.DataFrame", current: "pd.DataFrame", features: Sequence[str] = FEATURES
) -> tuple[Any, CameraDrift]:
    """Run Evidently's DataDriftPreset (KS tests) on the features, with the loop's
    thresholds: a feature drifts at p < ``DRIFT_P_VALUE``, and the report's dataset-drift
    line uses ``DRIFT_SHARE`` (Evidently's test is share >= threshold, the seed's rule
    share > 0.30: they differ only at a share of exactly 0.3, which 1 to 6 features never give).

    Features with no values in either window are left out (Evidently refuses empty
    columns) and listed as ``untested``.

    Returns:
        (the Evidently snapshot — ``save_html`` it, the parsed ``CameraDrift``).

    Raises:
        ValueError: no feature has values in both windows.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    tested = [f for f in features if reference[f].notna().any() and current[f].notna().any()]
    untested = [f for f in features if f not in tested]
    if not tested:
        raise ValueError(f"no drift feature has values in both windows (features {list(features)})")
    definition = DataDefinition(numerical_columns=tested)
    report = Report(
        [
            DataDriftPreset(
                columns=tested,
                num_method="ks",
                cat_method="chisquare",
                num_threshold=DRIFT_P_VALUE,
                cat_threshold=DRIFT_P_VALUE,
                drift_share=DRIFT_SHARE,
            )
        ],
    )
    with warnings.catch_warnings():
        # numpy warns on constant columns (std 0) inside Evidently's summaries; harmless.
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = report.run(
            reference_data=Dataset.from_pandas(
                reference[tested].astype("float64"), data_definition=definition
            ),
            current_data=Dataset.from_pandas(
                current[tested].astype("float64"), data_definition=definition
            ),
        )
    return snapshot, drift_from_report(snapshot.dict(), tested, untested)


def parse_drift_metadata(metadata: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-camera drift results from a ``drift_report`` materialization's metadata.

    Reads the flat keys ``<camera>/drift_share``, ``<camera>/min_p_value``,
    ``<camera>/drifted`` and ``<camera>/p_value/<feature>``, and where present
    ``<camera>/model_version``, ``<camera>/class_mix_shift`` and
    ``<camera>/promoted_version``; values may be Dagster ``MetadataValue``s (their
    ``.value`` is used) or plain numbers.

    Returns:
        camera -> ``{"drift_share": float, "min_p_value": float | None, "drifted": bool,
        "p_values": {feature: float}}`` (and the optional keys, as read).
    """
    cameras: dict[str, dict[str, Any]] = {}
    for key, raw in metadata.items():
        value = getattr(raw, "value", raw)
        camera, _, rest = key.partition("/")
        if not rest or camera.startswith("dagster"):
            continue
        if rest in ("drift_share", "min_p_value", "drifted"):
            entry = cameras.setdefault(camera, {"p_values": {}, "min_p_value": None})
            entry[rest] = bool(value) if rest == "drifted" else float(value)
        elif rest in ("model_version", "promoted_version", "class_mix_shift"):
            entry = cameras.setdefault(camera, {"p_values": {}, "min_p_value": None})
            entry[rest] = float(value) if rest == "class_mix_shift" else str(value)
        elif rest.startswith("p_value/"):
            entry = cameras.setdefault(camera, {"p_values": {}, "min_p_value": None})
            entry["p_values"][rest.removeprefix("p_value/")] = float(value)
    return {c: e for c, e in cameras.items() if "drift_share" in e}


class DriftReportConfig(dg.Config):
    """Drift windows."""

    window_frames: int = Field(
        200, ge=10, description="N: the most frames in the reference and in the current window."
    )
    min_window_frames: int = Field(
        30, ge=5, description="A camera with fewer frames than this in a window is skipped."
    )
    reference: Literal["training_cutoff", "earliest"] = Field(
        "training_cutoff",
        description=(
            "training_cutoff: frames before the last training run's label cutoff (earliest "
            "frames when none); earliest: always the camera's earliest frames."
        ),
    )


def _report_key(camera: str, stamp: str, api_url: str) -> tuple[str, str]:
    """The object key of a camera's HTML report (``reports/drift/<camera>/<stamp>.html``, in
    the data folder or object storage: ``LoopSettings.objects``), and the API URL that
    serves it (absolute: the link opens from the Dagster UI, on another port)."""
    key = f"{REPORTS_PREFIX}drift/{camera}/{stamp}.html"
    return key, f"{api_url.rstrip('/')}/{key}"


@dg.asset(group_name="monitoring", deps=[detections], kinds={"evidently", "duckdb"})
def drift_report(
    context: dg.AssetExecutionContext, config: DriftReportConfig, store: StoreResource
) -> dg.MaterializeResult:
    """Per-camera data drift of frame features (KS p-values, drift share, verdict), with HTML reports."""
    settings = store.loop.settings()
    db = store.store()
    with db.connect() as con:
        frames = store_frames.quality_features(con=con, features=FEATURES, model_version=True)
        last_cutoff = training_runs.latest_label_cutoff(con=con)
    if frames.empty:
        raise dg.Failure(description="no frames stored yet: nothing to compute drift on")
    cutoff = None
    if config.reference == "training_cutoff" and last_cutoff is not None:
        import pandas as pd

        cutoff = pd.Timestamp(last_cutoff)
        if frames["captured_at"].dt.tz is not None and cutoff.tz is None:
            cutoff = cutoff.tz_localize(frames["captured_at"].dt.tz)
    computed_at = datetime.now(UTC)
    stamp = computed_at.strftime("%Y%m%dT%H%M%S%fZ")

    results: dict[str, CameraDrift] = {}
    windows: dict[str, tuple[int, int, str]] = {}
    reports: dict[str, tuple[str, str]] = {}
    splits: dict[str, VersionSplit] = {}
    mixes: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for camera, group in frames.groupby("camera_id", sort=True):
        camera = str(camera)
        picked = select_windows(
            group, window=config.window_frames, min_frames=config.min_window_frames, cutoff=cutoff
        )
        if isinstance(picked, str):
            skipped[camera] = picked
            continue
        reference, current, kind = picked
        try:
            snapshot, result = run_drift(reference, current)
        except ValueError as exc:
            skipped[camera] = str(exc)
            continue
        key, url = _report_key(camera, stamp, settings.api_url)
        with tempfile.TemporaryDirectory() as scratch:
            html = Path(scratch) / "report.html"
            snapshot.save_html(str(html))
            settings.objects().put(key, html.read_bytes())
        results[camera] = result
        splits[camera] = split_by_version(
            reference,
            current,
            min_frames=config.min_window_frames,
            drift_share=lambda ref, cur: run_drift(ref, cur)[1].drift_share,
        )
        windows[camera] = (len(reference), len(current), kind)
        reports[camera] = (key, url)
        context.log.info(
            "%s: drift share %.2f, min p %s, drifted=%s",
            camera,
            result.drift_share,
            result.min_p_value,
            result.drifted,
        )

    with db.connect() as con:
        for camera in results:
            mix = promotion_class_mix(con=con, camera_id=camera, now=computed_at)
            if mix is not None:
                mixes[camera] = mix

    if results:
        import pandas as pd

        rows = pd.DataFrame(
            {
                "camera_id": list(results),
                "computed_at": [computed_at] * len(results),
                "reference_frames": [windows[c][0] for c in results],
                "current_frames": [windows[c][1] for c in results],
                "drift_share": [r.drift_share for r in results.values()],
                "min_p_value": [r.min_p_value for r in results.values()],
                "drifted": [r.drifted for r in results.values()],
                "p_values": [json.dumps(r.p_values) for r in results.values()],
                # An object key (relative to the data folder, or in object storage), so a
                # copied or moved folder keeps its links and every replica reads it.
                "report_path": [reports[c][0] for c in results],
                "model_version": [splits[c].model_version for c in results],
                "reference_model_version": [splits[c].reference_model_version for c in results],
                "model_versions": [json.dumps(splits[c].versions) for c in results],
            }
        )
        with db.connect() as con:
            drift_reports.insert(con=con, rows=rows)

    metadata: dict[str, dg.RawMetadataValue] = {
        "cameras_evaluated": len(results),
        "cameras_skipped": len(skipped),
        "drifted_cameras": ", ".join(c for c, r in results.items() if r.drifted) or "none",
        "window_frames": config.window_frames,
        "reference": config.reference,
        "computed_at": computed_at.isoformat(),
        "summary": dg.MetadataValue.md(
            md_table(
                [
                    "camera",
                    "drifted",
                    "drift share",
                    "min p-value",
                    *FEATURES,
                    "reference",
                    "report",
                ],
                [
                    [
                        camera,
                        r.drifted,
                        r.drift_share,
                        r.min_p_value,
                        *[r.p_values.get(f) for f in FEATURES],
                        f"{windows[camera][0]} vs {windows[camera][1]} ({windows[camera][2]})",
                        f"[html]({reports[camera][1]})",
                    ]
                    for camera, r in results.items()
                ],
            )
        ),
        "cameras": dg.MetadataValue.json(
            {
                camera: {
                    "drift_share": r.drift_share,
                    "min_p_value": r.min_p_value,
                    "drifted": r.drifted,
                    "p_values": r.p_values,
                    "untested": r.untested,
                    "report_path": str(reports[camera][0]),
                    "report_url": reports[camera][1],
                    "model_version": splits[camera].model_version,
                    "reference_model_version": splits[camera].reference_model_version,
                    "model_versions": splits[camera].versions,
                    "class_mix": mixes.get(camera),
                }
                for camera, r in results.items()
            }
        ),
    }
    if skipped:
        metadata["skipped"] = dg.MetadataValue.md(
            md_table(["camera", "why"], sorted(skipped.items()))
        )
    for camera, r in results.items():
        metadata[f"{camera}/drift_share"] = r.drift_share
        if r.min_p_value is not None:
            metadata[f"{camera}/min_p_value"] = r.min_p_value
        metadata[f"{camera}/drifted"] = r.drifted
        for feature, p in r.p_values.items():
            metadata[f"{camera}/p_value/{feature}"] = p
        if splits[camera].model_version is not None:
            metadata[f"{camera}/model_version"] = dg.MetadataValue.text(
                str(splits[camera].model_version)
            )
        mix = mixes.get(camera)
        if mix is not None and mix["class_mix_shift"] is not None:
            metadata[f"{camera}/class_mix_shift"] = mix["class_mix_shift"]
            metadata[f"{camera}/promoted_version"] = dg.MetadataValue.text(mix["promoted_version"])
        metadata[f"{camera}/report"] = dg.MetadataValue.text(reports[camera][0])
        metadata[f"{camera}/report_url"] = dg.MetadataValue.url(reports[camera][1])
    return dg.MaterializeResult(metadata=metadata)
