"""What one run of the agent did: the ``AgentReport``, its latency figures, the progress line.

The runner counts into an ``AgentReport`` as frames pass (``count_frame``, ``set_model``)
and, before each progress line and at the end of the run, refreshes the figures derived
from the run so far (``refresh``: rates, latency means and percentiles, the source's and
the shipper's counters).
"""

from __future__ import annotations

import logging
import statistics
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_agent.frame_source import FrameSource
    from edge_agent.shipper import ShipStats
    from edge_agent.spool import Spool
    from edge_agent.uncertainty import UncertaintyBand

logger = logging.getLogger(__name__)

LATENCY_WINDOW = 10_000
"""Inference times kept for the p50/p95 figures (the most recent frames)."""


class LatencyStats:
    """The detector's stage times over a run, ms: sums for the means, and the most recent
    ``LATENCY_WINDOW`` inference times for p50/p95 (``statistics.quantiles``, inclusive)."""

    def __init__(self) -> None:
        self.count = 0
        self.inference_sum = 0.0
        self.preprocess_sum = 0.0
        self.postprocess_sum = 0.0
        self.recent: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def add(self, preprocess_ms: float, inference_ms: float, postprocess_ms: float) -> None:
        self.count += 1
        self.preprocess_sum += preprocess_ms
        self.inference_sum += inference_ms
        self.postprocess_sum += postprocess_ms
        self.recent.append(inference_ms)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (1-99) of the recent inference times, ms; 0 before any frame."""
        if not self.recent:
            return 0.0
        if len(self.recent) == 1:
            return self.recent[0]
        return statistics.quantiles(self.recent, n=100, method="inclusive")[round(q) - 1]

    def mean(self, total: float) -> float:
        """``total`` (one of the ``*_sum`` fields) per frame, ms; 0 before any frame."""
        return total / self.count if self.count else 0.0


@dataclass
class AgentReport:
    """What one run of the agent did. Times in ms unless named otherwise.

    Attributes:
        frames: frames processed (detected, measured, batched).
        skipped_frames: frames skipped: not readable or decodable by the source, or
            failed in the pipeline (the agent logs it and goes on with the next frame).
        skipped_by_reason: the same by reason (``edge_agent.frame_source.SKIP_*``, and
            ``pipeline error: <ExceptionType>``).
        dropped_frames: live frames dropped because the agent was busy.
        reconnects: times a live source was reopened after it broke.
        jpegs_fitted: frame JPEGs downscaled or re-encoded to fit the wire's limits.
        spool_dropped_batches, spool_dropped_frames, spool_dropped_bytes: what the spool's
            disk cap dropped, oldest first.
        elapsed_s: wall time from the first frame request to the last frame processed, s.
        frames_per_s: frames / elapsed_s.
        inference_ms_mean, inference_ms_p50, inference_ms_p95: ``session.run`` time per frame.
        preprocess_ms_mean, postprocess_ms_mean: the detector's other two stages.
        detections: detections over all frames; uncertain_detections: those in the band.
        uncertain_frames: frames with at least one uncertain detection (sent with a JPEG).
        batches_sent, batches_spooled, batches_replayed, batches_rejected: see ``ShipStats``.
        spool_pending: batches still in the spool at the end (sent on the next start).
        model_version: version of the model that processed the last frame.
        execution_provider: the ONNX Runtime execution provider it ran on (None: a
            backend without one).
        uncertainty_low, uncertainty_high: the uncertainty band that model flagged
            detections with, [0, 1]; None when the detector was given (it flags them itself).
        uncertainty_source: where that band came from (``UncertaintyBand.source``).
        stopped_by: ``"end of source"``, ``"max_frames"``, ``"interrupted"`` (Ctrl-C, or
            SIGTERM under ``edgeloop agent``) or ``"stopped"`` (``AgentRunner.stop()``).
    """

    frames: int = 0
    skipped_frames: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    dropped_frames: int = 0
    reconnects: int = 0
    jpegs_fitted: int = 0
    elapsed_s: float = 0.0
    frames_per_s: float = 0.0
    inference_ms_mean: float = 0.0
    inference_ms_p50: float = 0.0
    inference_ms_p95: float = 0.0
    preprocess_ms_mean: float = 0.0
    postprocess_ms_mean: float = 0.0
    detections: int = 0
    uncertain_detections: int = 0
    uncertain_frames: int = 0
    batches_sent: int = 0
    batches_spooled: int = 0
    batches_replayed: int = 0
    batches_rejected: int = 0
    spool_pending: int = 0
    spool_dropped_batches: int = 0
    spool_dropped_frames: int = 0
    spool_dropped_bytes: int = 0
    model_version: str = ""
    execution_provider: str | None = None
    uncertainty_low: float | None = None
    uncertainty_high: float | None = None
    uncertainty_source: str = ""
    stopped_by: str = "end of source"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def count_frame(self, detections: int, uncertain: int) -> None:
        """Count one processed frame with ``detections`` detections, ``uncertain`` of them
        in the uncertainty band."""
        self.frames += 1
        self.detections += detections
        self.uncertain_detections += uncertain
        self.uncertain_frames += bool(uncertain)

    def set_model(
        self, version: str, band: UncertaintyBand | None, execution_provider: str | None = None
    ) -> None:
        """Record the model now processing frames, its band and the accelerator it runs on
        (an ONNX Runtime execution provider); a None band (a given detector, which flags
        detections itself) leaves the band fields as they are."""
        self.model_version = version
        self.execution_provider = execution_provider
        if band is not None:
            self.uncertainty_low = band.low
            self.uncertainty_high = band.high
            self.uncertainty_source = band.source

    def refresh(
        self,
        latency: LatencyStats,
        elapsed_s: float,
        *,
        source: FrameSource | None,
        ship: ShipStats | None,
        pipeline_skips: Counter[str] | None = None,
        spool: Spool | None = None,
    ) -> None:
        """Set the figures derived from the run so far: rates and latency from ``latency``
        over ``elapsed_s`` seconds; skipped frames from ``source`` plus the runner's
        ``pipeline_skips`` (by reason); dropped frames and reconnects from ``source``;
        batch counts from ``ship``; cap drops from ``spool`` (each left as it is when None)."""
        self.elapsed_s = elapsed_s
        self.frames_per_s = self.frames / elapsed_s if elapsed_s > 0 else 0.0
        self.inference_ms_mean = latency.mean(latency.inference_sum)
        self.inference_ms_p50 = latency.percentile(50)
        self.inference_ms_p95 = latency.percentile(95)
        self.preprocess_ms_mean = latency.mean(latency.preprocess_sum)
        self.postprocess_ms_mean = latency.mean(latency.postprocess_sum)
        if source is not None or pipeline_skips is not None:
            reasons: Counter[str] = Counter()
            if source is not None:
                reasons.update(source.skipped_by_reason)
                self.dropped_frames = source.dropped
                self.reconnects = source.reconnects
            reasons.update(pipeline_skips or {})
            self.skipped_by_reason = dict(sorted(reasons.items()))
            self.skipped_frames = sum(reasons.values())
        if spool is not None:
            self.spool_dropped_batches = spool.dropped_batches
            self.spool_dropped_frames = spool.dropped_frames
            self.spool_dropped_bytes = spool.dropped_bytes
        if ship is not None:
            self.batches_sent, self.batches_spooled = ship.sent, ship.spooled
            self.batches_replayed, self.batches_rejected = ship.replayed, ship.rejected

    def log_progress(self, camera_id: str) -> None:
        """Log one INFO line of the run so far (call ``refresh`` first)."""
        logger.info(
            "camera %s: %d frames, %.2f frames/s, inference %.1f ms (p50 %.1f, p95 %.1f), "
            "%d uncertain frames, batches sent %d / spooled %d / replayed %d / rejected %d, "
            "%d frames skipped%s, %d reconnects, %d spooled batches dropped at the cap",
            camera_id,
            self.frames,
            self.frames_per_s,
            self.inference_ms_mean,
            self.inference_ms_p50,
            self.inference_ms_p95,
            self.uncertain_frames,
            self.batches_sent,
            self.batches_spooled,
            self.batches_replayed,
            self.batches_rejected,
            self.skipped_frames,
            self.skipped_reasons_text(prefix=" (", suffix=")"),
            self.reconnects,
            self.spool_dropped_batches,
        )

    def skipped_reasons_text(self, prefix: str = "", suffix: str = "") -> str:
        """``"2 empty file, 1 undecodable image"`` wrapped in prefix/suffix; "" when none."""
        if not self.skipped_by_reason:
            return ""
        text = ", ".join(f"{n} {reason}" for reason, n in self.skipped_by_reason.items())
        return f"{prefix}{text}{suffix}"
