"""Prediction batches on the loop host: registered model versions run on uploaded images,
and a batch's images turned into frames for the labeling queue.

``Predictor`` resolves a version (or the alias pointing at one) in the MLflow registry,
loads its ONNX file with the agents' detector (``edgeloop.detection.onnx.OnnxDetector``:
the same letterbox, decoder and class-aware NMS, with its defaults: confidence > 0.25,
NMS IoU 0.45, at most 300 boxes, as the agent's settings default to) and runs it on one
worker thread of its own, so the event loop never waits on inference and two uploads
never compete for the CPU.

``frame_tables`` makes the rows of ``frames`` and ``prediction_logs`` for a batch's images
(camera ``UPLOAD_CAMERA``, frame key ``upload-<batch>-<image>``, the run's detections as
pre-labels), which ``send_to_queue`` writes with ``edgeloop.store.ingest`` as it writes
the agents' frames, then queues each (``edgeloop.store.queue.ensure_item``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request

from api.ingest import build_tables
from api.model_registry import ModelRegistry
from edgeloop.detection.onnx import OnnxDetector
from edgeloop.detection.quality import frame_quality
from edgeloop.registry import PRODUCTION, ModelFiles
from edgeloop.rules import is_uncertain
from edgeloop.settings import LoopSettings
from edgeloop.store import AnyStore, ingest, queue
from edgeloop.store import prediction_batches as batches
from edgeloop.store.batches import IngestTables
from edgeloop.store.connection import transaction
from edgeloop.store.prediction_batches import Run, RunDetection
from edgeloop.uploads import decode_bgr
from edgeloop.wire import Detection, FrameRecord

UPLOAD_CAMERA = "upload"
"""The camera id of frames made from uploaded images."""
UPLOAD_AGENT = "upload"
"""The agent id of frames made from uploaded images."""
DETECTORS_KEPT = 2
"""Model versions kept loaded (a comparison runs two)."""


class Predictor:
    """Runs registered model versions on images, one image at a time, on its own thread.

    Args:
        loop: the loop settings (the uncertainty band flags each detection).
    """

    def __init__(self, loop: LoopSettings) -> None:
        self.loop = loop
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="uploads-predict")
        self._detectors: OrderedDict[str, OnnxDetector] = OrderedDict()

    def resolve(
        self, registry: ModelRegistry, *, model_version: str | None, alias: str | None
    ) -> tuple[ModelFiles, str | None]:
        """The files of ``model_version``, or of the version ``alias`` (default
        ``production``) points at, and the alias used (None when a version was named).

        Raises:
            edgeloop.registry.ModelNotFoundError: no such version, or no version has the alias.
        """
        if model_version is not None:
            return registry.version_files(model_version), None
        alias = alias or PRODUCTION
        return registry.files(alias), alias

    def _detector(self, files: ModelFiles) -> OnnxDetector:
        detector = self._detectors.pop(files.version, None)
        if detector is None:
            detector = OnnxDetector(
                files.onnx_path,
                class_names=files.class_names,
                version=files.version,
                imgsz=files.imgsz,
                uncertainty_low=self.loop.uncertainty_low,
                uncertainty_high=self.loop.uncertainty_high,
            )
        self._detectors[files.version] = detector
        while len(self._detectors) > DETECTORS_KEPT:
            self._detectors.popitem(last=False)[1].close()
        return detector

    def predict(
        self,
        registry: ModelRegistry,
        jpegs: Sequence[bytes],
        *,
        model_version: str | None,
        alias: str | None,
    ) -> Run:
        """Run the chosen model on each stored JPEG (blocking; ``run`` is the async form).

        Raises:
            edgeloop.registry.ModelNotFoundError: as ``resolve``.
            edgeloop.detection.onnx.ModelError: the version's ONNX file is not usable.
            ValueError: a JPEG that OpenCV cannot decode (checked at upload: not expected).
        """
        files, used_alias = self.resolve(registry, model_version=model_version, alias=alias)
        detector = self._detector(files)
        detections: list[RunDetection] = []
        started = time.perf_counter()
        for index, jpeg in enumerate(jpegs):
            image = decode_bgr(jpeg)
            if image is None:
                raise ValueError(f"image {index} cannot be decoded")
            detections.extend(
                RunDetection(
                    image_index=index,
                    class_id=d.class_id,
                    class_name=d.class_name,
                    confidence=d.confidence,
                    bbox_xyxy=d.bbox_xyxy,
                )
                for d in detector.detect(image)
            )
        return Run(
            model_name=files.name,
            model_version=files.version,
            alias=used_alias,
            inference_ms=(time.perf_counter() - started) * 1e3,
            detections=detections,
        )

    async def run(
        self,
        registry: ModelRegistry,
        jpegs: Sequence[bytes],
        *,
        model_version: str | None,
        alias: str | None,
    ) -> Run:
        """``predict`` on the predictor's thread; the event loop stays free meanwhile."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor,
            lambda: self.predict(registry, jpegs, model_version=model_version, alias=alias),
        )

    def close(self) -> None:
        """Stop the worker thread and release the loaded models."""
        self._executor.shutdown(wait=False)
        for detector in self._detectors.values():
            detector.close()
        self._detectors.clear()


_predictor_lock = threading.Lock()


def get_predictor(request: Request) -> Predictor:
    """The app's ``Predictor`` (``app.state.predictor``), made on first use."""
    state = request.app.state
    with _predictor_lock:
        predictor = getattr(state, "predictor", None)
        if predictor is None:
            predictor = Predictor(state.settings.loop)
            state.predictor = predictor
    assert isinstance(predictor, Predictor)
    return predictor


PredictorDep = Annotated[Predictor, Depends(get_predictor)]


def frame_key(batch_id: int, image_index: int) -> str:
    """The frame key an uploaded image gets in the labeling queue: ``upload-<batch>-<image>``."""
    return f"upload-{batch_id}-{image_index}"


def frame_tables(
    *,
    batch: Mapping[str, Any],
    images: Sequence[Mapping[str, Any]],
    jpegs: Sequence[bytes],
    run: Mapping[str, Any],
    detections: Sequence[Mapping[str, Any]],
    loop: LoopSettings,
    received_at: datetime,
) -> IngestTables:
    """The ``frames``, ``prediction_logs`` and ``labeling_queue`` rows of a batch's images
    (``api.ingest.build_tables``), one frame per image: captured at the batch's time, the
    run's detections as its detections (flagged by the loop's uncertainty band), its image
    statistics computed from the stored JPEG, ``jpeg_path`` the stored image's object key.

    Args:
        batch, images, run, detections: rows of ``edgeloop.store.prediction_batches``.
        jpegs: each image's stored JPEG, in image order.
    """
    by_image: dict[int, list[Detection]] = {}
    for d in detections:
        by_image.setdefault(int(d["image_index"]), []).append(
            Detection(
                bbox_xyxy=(d["x1"], d["y1"], d["x2"], d["y2"]),
                class_id=d["class_id"],
                class_name=d["class_name"],
                confidence=d["confidence"],
                uncertain=is_uncertain(
                    d["confidence"], loop.uncertainty_low, loop.uncertainty_high
                ),
            )
        )
    records = []
    for image, jpeg in zip(images, jpegs, strict=True):
        pixels = decode_bgr(jpeg)
        if pixels is None:
            raise ValueError(f"stored image {image['object_key']} cannot be decoded")
        index = int(image["image_index"])
        records.append(
            FrameRecord(
                frame_key=frame_key(int(batch["batch_id"]), index),
                camera_id=UPLOAD_CAMERA,
                frame_index=index,
                captured_at=batch["created_at"],
                width=image["width"],
                height=image["height"],
                quality=frame_quality(pixels),
                inference_ms=0.0,
                model_version=str(run["model_version"]),
                detections=by_image.get(index, []),
            )
        )
    return build_tables(
        records,
        agent_id=UPLOAD_AGENT,
        received_at=received_at,
        jpeg_paths={r.frame_key: i["object_key"] for r, i in zip(records, images, strict=True)},
        uncertainty_low=loop.uncertainty_low,
        uncertainty_high=loop.uncertainty_high,
    )


@dataclass(frozen=True)
class QueuedBatch:
    """What ``send_to_queue`` did: whose boxes became pre-labels, the frames and items."""

    model_version: str
    frame_keys: list[str]
    item_ids: list[int]


def send_to_queue(
    *,
    store: AnyStore,
    loop: LoopSettings,
    batch_id: int,
    model_version: str | None,
    queued_by: str,
) -> QueuedBatch:
    """Make each image of the batch a frame (``frame_tables``; the run of ``model_version``,
    default the batch's first, gives the pre-labels), store the frames as ingest does
    (frames already stored are kept as they are) and queue each frame once (a frame queued
    already keeps its item); the batch's status becomes ``queued``.

    Raises:
        LookupError: no such batch, or no run of ``model_version`` on it.
        ValueError: a stored image cannot be decoded.
        edgeloop.objects.ObjectStoreUnavailableError: the images could not be read.
    """
    with store.connect() as con:
        batch = batches.get(con=con, batch_id=batch_id)
        if batch is None:
            raise LookupError(f"no prediction batch {batch_id}")
        runs = batches.runs(con=con, batch_id=batch_id)
        wanted = model_version or str(runs[0]["model_version"])
        run = next((r for r in runs if r["model_version"] == wanted), None)
        if run is None:
            raise LookupError(f"batch {batch_id} has no run of version {wanted}")
        images = batches.images(con=con, batch_id=batch_id)
        detections = batches.detections(con=con, batch_id=batch_id, model_version=wanted)
    objects = loop.objects()
    now = datetime.now(UTC)
    tables = frame_tables(
        batch=batch,
        images=images,
        jpegs=[objects.get(i["object_key"]) for i in images],
        run=run,
        detections=detections,
        loop=loop,
        received_at=now,
    )
    keys = [frame_key(batch_id, int(i["image_index"])) for i in images]
    with store.connect() as con:
        ingest.insert_batch(
            con=con, frames=tables.frames, detections=tables.detections, queue_items=tables.queue
        )
        with transaction(con):
            item_ids = [
                queue.ensure_item(con=con, frame_key=k, camera_id=UPLOAD_CAMERA, now=now)
                for k in keys
            ]
            batches.mark_queued(con=con, batch_id=batch_id, queued_by=queued_by, now=now)
    return QueuedBatch(model_version=wanted, frame_keys=keys, item_ids=item_ids)
