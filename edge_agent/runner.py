"""The agent's loop: capture → detect → quality → FrameRecord → batch → ship.

Per frame, in the calling thread: the detector's three timed stages (preprocess →
inference → postprocess), the frame's quality features, and a JPEG of the frame when at
least one detection is uncertain (the labeling queue needs the image; confident frames
travel without it). A detection is uncertain when its confidence lies in the uncertainty
band: the loop host's (``EDGELOOP_UNCERTAINTY_LOW/HIGH``, sent with the production model
and cached with it), unless ``EDGELOOP_AGENT_UNCERTAINTY_LOW/HIGH`` override it locally
(see ``edge_agent.uncertainty``). Frames are batched and handed to a ship worker thread, which
serialises and POSTs them (or spools them when the API is unavailable), so network time
and JSON encoding overlap the next frames' inference. Its queue holds 4 batches; when a
slow API fills it, the loop waits (a live source drops frames meanwhile) rather than
letting batches pile up in memory. A batch is sent when it holds ``batch_frames`` frames
or, checked as each frame arrives, when its first frame is ``flush_interval_s`` old.

Frame keys (the API's idempotency key, stable for the same frame of the same source):
``{camera_id}:{source_id}:{frame_index}``, where ``source_id`` is a short hash of the
file's name and size for a video file (of each image's name and size for an image
directory), and the UTC time the stream was opened for a live source (see
``edge_agent.capture``). Re-running the agent on the same file therefore re-sends the same
keys, which the API skips as duplicates; a restarted live stream gets new keys.

Stops at ``max_frames``, at the end of a file, or on Ctrl-C; the partial batch is
flushed and the ship worker drained (what cannot be delivered stays in the spool) first.
What the run did (counts, timings, the model and band in use): ``edge_agent.report``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

import httpx
import numpy as np

from edge_agent.capture import Frame, FrameSource, open_source
from edge_agent.detectors import Detector, OnnxDetector
from edge_agent.model_sync import ModelFile, ModelSync, resolve_model
from edge_agent.quality import frame_quality
from edge_agent.report import AgentReport, LatencyStats
from edge_agent.settings import AgentSettings
from edge_agent.shipper import Shipper, make_client
from edge_agent.spool import Spool
from edge_agent.uncertainty import BAND_LOCAL_OVERRIDE, UncertaintyBand, uncertainty_band
from edgeloop.wire import FrameRecord, IngestBatch

logger = logging.getLogger(__name__)


def frame_key(camera_id: str, source_id: str, frame_index: int) -> str:
    """The frame's idempotency key: ``{camera_id}:{source_id}:{frame_index}`` (see the module docstring)."""
    return f"{camera_id}:{source_id}:{frame_index}"


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """(H, W, 3) uint8 BGR → JPEG bytes at ``quality`` (1-100, OpenCV's scale).

    Raises:
        ValueError: OpenCV could not encode the image.
    """
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"cv2.imencode could not encode a {image.shape} image as JPEG")
    return buf.tobytes()


class _ShipWorker(threading.Thread):
    """Ships batches from a bounded queue; replays the spool when idle; drains on stop."""

    def __init__(self, shipper: Shipper, maxsize: int = 4, idle_s: float = 1.0) -> None:
        super().__init__(name="edgeloop-ship", daemon=True)
        self.shipper = shipper
        self.queue: queue.Queue[IngestBatch | None] = queue.Queue(maxsize=maxsize)
        self.idle_s = idle_s
        self.error: BaseException | None = None

    def submit(self, batch: IngestBatch) -> None:
        if self.error is not None:
            raise RuntimeError(f"the ship worker failed: {self.error}") from self.error
        self.queue.put(batch)

    def stop(self) -> None:
        self.queue.put(None)
        self.join()
        if self.error is not None:
            raise RuntimeError(f"the ship worker failed: {self.error}") from self.error

    def run(self) -> None:
        while True:
            try:
                batch = self.queue.get(timeout=self.idle_s)
            except queue.Empty:
                self._guard(self.shipper.replay)
                continue
            if batch is None:
                self._guard(lambda: self.shipper.replay(ignore_backoff=True))
                return
            self._guard(lambda b=batch: self.shipper.ship(b))  # type: ignore[misc]

    def _guard(self, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception as exc:  # the spool itself failed (disk full, permissions): stop loudly
            logger.exception("shipping failed; stopping the agent")
            self.error = exc


def load_detector(model: ModelFile, settings: AgentSettings, band: UncertaintyBand) -> OnnxDetector:
    """An ``OnnxDetector`` for ``model`` with the thresholds from ``settings`` and ``band``.

    Raises:
        edge_agent.detectors.ModelError: the file is not a usable YOLO ONNX export.
    """
    return OnnxDetector(
        model.path,
        class_names=model.class_names,
        version=model.version,
        imgsz=model.imgsz or settings.imgsz,
        conf_threshold=settings.conf_threshold,
        iou_threshold=settings.iou_threshold,
        max_detections=settings.max_detections,
        uncertainty_low=band.low,
        uncertainty_high=band.high,
        intra_op_threads=settings.intra_op_threads,
    )


class AgentRunner:
    """Runs the agent's loop for one camera.

    Args:
        settings: the agent's settings.
        detector: use this detector instead of resolving one through the API, the cache
            and ``model_path`` (tests and benchmarks); no model updates then.
        transport: httpx transport for every API call (tests: ``httpx.MockTransport``).

    Raises (from ``run``):
        edge_agent.capture.SourceError: the source cannot be opened.
        edge_agent.detectors.ModelError: no usable model (see ``resolve_model``).
    """

    def __init__(
        self,
        settings: AgentSettings,
        *,
        detector: Detector | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self._transport = transport
        self._detector = detector
        self._model: ModelFile | None = None
        self._next_detector: Detector | None = None
        self._next_band: UncertaintyBand | None = None
        self._swap_lock = threading.Lock()
        self._stop = threading.Event()
        self.report = AgentReport()
        self.shipper: Shipper | None = None
        self.source: FrameSource | None = None

    def _client(self) -> httpx.Client:
        s = self.settings
        return make_client(str(s.api_url), s.token_value, s.request_timeout_s, self._transport)

    def _resolve_detector(self) -> tuple[Detector, UncertaintyBand | None]:
        if self._detector is not None:
            return self._detector, None
        with self._client() as client:
            model = resolve_model(
                ModelSync(client, self.settings.model_cache_dir), self.settings.model_path
            )
        logger.info(
            "running model version %s (%s, from %s)", model.version, model.path, model.origin
        )
        return self._load(model)

    def _load(self, model: ModelFile) -> tuple[OnnxDetector, UncertaintyBand]:
        """``model``'s detector and band, logged; a local override that differs from the
        loop host's band is a warning (this camera's uncertain frames differ from the fleet's)."""
        band = uncertainty_band(model, self.settings)
        detector = load_detector(model, self.settings, band)
        self._model = model
        loop = model.uncertainty_band
        if (
            band.source == BAND_LOCAL_OVERRIDE
            and loop is not None
            and loop != (band.low, band.high)
        ):
            logger.warning(
                "the local uncertainty band override %g–%g wins over the loop host's %g–%g; "
                "unset %s and %s to follow the loop host",
                band.low,
                band.high,
                *loop,
                self.settings.env_var("uncertainty_low"),
                self.settings.env_var("uncertainty_high"),
            )
        else:
            logger.info("uncertainty band %s", band)
        return detector, band

    def _watch_models(self, interval_s: float) -> None:
        """Background thread: every ``interval_s`` ask the API whether the production model
        (its file, version or uncertainty band) changed, and prepare the swap."""
        with self._client() as client:
            sync = ModelSync(client, self.settings.model_cache_dir)
            while not self._stop.wait(interval_s):
                assert self._model is not None  # the watcher starts after _resolve_detector
                model = sync.check_for_update(self._model)
                if model is None:
                    continue
                try:
                    detector, band = self._load(model)
                except Exception:  # whatever fails, the current model keeps running
                    logger.exception(
                        "cannot load model version %s; keeping the current one", model.version
                    )
                    continue
                with self._swap_lock:
                    self._next_detector, self._next_band = detector, band
                logger.info("model version %s ready; switching at the next frame", model.version)

    def stop(self) -> None:
        """Ask a running ``run`` to stop after the current frame (thread-safe)."""
        self._stop.set()

    def run(self, frames: Iterable[Frame] | None = None) -> AgentReport:
        """Run until the source ends, ``max_frames`` frames, ``stop()`` or Ctrl-C.

        Args:
            frames: frames to process instead of opening ``settings.source`` (benchmarks,
                tests); each ``Frame.image`` is (H, W, 3) uint8 BGR.

        Returns:
            The run's ``AgentReport`` (also kept as ``self.report``).
        """
        s = self.settings
        if frames is None:
            self.source = open_source(s.source, s.fps, replay=s.replay, start_frame=s.start_frame)
            frames = self.source
        try:
            detector, band = self._resolve_detector()
        except BaseException:
            if self.source is not None:
                self.source.close()
            raise
        spool = Spool(s.spool_dir)
        if len(spool):
            logger.info(
                "%d batches from an earlier run wait in %s; replaying them first",
                len(spool),
                spool.pending_dir,
            )
        self.shipper = Shipper(self._client(), spool)
        worker = _ShipWorker(self.shipper)
        worker.start()
        watcher = None
        if self._detector is None and s.model_check_interval_s:
            watcher = threading.Thread(
                target=self._watch_models,
                args=(s.model_check_interval_s,),
                name="edgeloop-models",
                daemon=True,
            )
            watcher.start()
        report = self.report
        report.set_model(detector.version, band)
        stats = LatencyStats()
        batch: list[FrameRecord] = []
        batch_started = 0.0
        started = last_log = time.monotonic()
        iterator: Iterator[Frame] = iter(frames)
        try:
            for frame in iterator:
                with self._swap_lock:
                    if self._next_detector is not None:
                        detector.close()
                        detector, self._next_detector = self._next_detector, None
                        report.set_model(detector.version, self._next_band)
                record = self._process(frame, detector, stats)
                if not batch:
                    batch_started = time.monotonic()
                batch.append(record)
                now = time.monotonic()
                if len(batch) >= s.batch_frames or now - batch_started >= s.flush_interval_s:
                    worker.submit(self._batch(batch))
                    batch = []
                if now - last_log >= s.log_interval_s:
                    last_log = now
                    report.refresh(
                        stats, now - started, source=self.source, ship=self.shipper.stats
                    )
                    report.log_progress(s.camera_id)
                if s.max_frames is not None and report.frames >= s.max_frames:
                    report.stopped_by = "max_frames"
                    break
                if self._stop.is_set():
                    report.stopped_by = "stopped"
                    break
        except KeyboardInterrupt:
            report.stopped_by = "interrupted"
            logger.info("interrupted; flushing %d frames and draining the ship queue", len(batch))
        finally:
            elapsed = time.monotonic() - started
            self._stop.set()
            try:
                if batch:
                    worker.submit(self._batch(batch))
            finally:
                try:
                    worker.stop()  # ships (or spools) everything queued; raises if shipping failed
                finally:
                    if self.source is not None:
                        self.source.close()
                    self.shipper.close()
                    if watcher is not None:
                        watcher.join(timeout=1.0)
            report.refresh(stats, elapsed, source=self.source, ship=self.shipper.stats)
            report.spool_pending = len(spool)
        if report.spool_pending:
            logger.warning(
                "%d batches are still in the spool %s; they are sent when the agent next runs",
                report.spool_pending,
                spool.pending_dir,
            )
        report.log_progress(s.camera_id)
        return report

    def _process(self, frame: Frame, detector: Detector, stats: LatencyStats) -> FrameRecord:
        s = self.settings
        image = frame.image
        detections, times = detector.detect_timed(image)
        stats.add(times.preprocess_ms, times.inference_ms, times.postprocess_ms)
        quality = frame_quality(image)
        uncertain = sum(d.uncertain for d in detections)
        jpeg = None
        if uncertain:
            try:
                jpeg = encode_jpeg(image, s.jpeg_quality)
            except ValueError:
                logger.exception(
                    "frame %d: JPEG encoding failed; sending it without the image",
                    frame.frame_index,
                )
        self.report.count_frame(len(detections), uncertain)
        height, width = image.shape[:2]
        return FrameRecord(
            frame_key=frame_key(s.camera_id, frame.source_id, frame.frame_index),
            camera_id=s.camera_id,
            frame_index=frame.frame_index,
            captured_at=frame.captured_at,
            width=width,
            height=height,
            quality=quality,
            inference_ms=times.inference_ms,
            model_version=detector.version,
            detections=detections,
            jpeg=jpeg,
        )

    def _batch(self, frames: list[FrameRecord]) -> IngestBatch:
        return IngestBatch(
            agent_id=self.settings.agent_id, sent_at=datetime.now(UTC), frames=frames
        )


def run_agent(
    settings: AgentSettings, *, transport: httpx.BaseTransport | None = None
) -> AgentReport:
    """Run the agent with ``settings`` until its source ends (see ``AgentRunner``)."""
    return AgentRunner(settings, transport=transport).run()
