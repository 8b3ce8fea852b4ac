"""Test support for the data-side assets: a real DuckDB store filled with real frames.

Frames come from ``data/samples/vtest.avi`` (768x576, people walking), written as JPEGs
where the agent would have stored them; rows go in with one pandas insert per table, as
the API does. Importable as ``loopdata`` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from support import SAMPLES_DIR, SEED_PT, require

from assets.resources import LoopSettingsResource, StoreResource
from edgeloop.annotations import REVIEWED_BOXES
from edgeloop.datasets import DatasetVersion
from edgeloop.registry import (
    MODEL_ARTIFACT_DIR,
    ensure_experiment,
    mlflow_client,
    move_alias,
    register_model_version,
    write_model_dir,
)
from edgeloop.settings import LoopSettings
from edgeloop.store import AnyStore, labels, queue
from edgeloop.store.batches import tables_from_rows
from edgeloop.store.ingest import insert_batch

VTEST = SAMPLES_DIR / "vtest.avi"
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@lru_cache(maxsize=1)
def _vtest_frames(count: int, step: int) -> tuple[np.ndarray, ...]:
    cap = cv2.VideoCapture(str(require(VTEST)))
    frames: list[np.ndarray] = []
    index = 0
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        if index % step == 0:
            frames.append(frame)
        index += 1
    cap.release()
    assert len(frames) == count, f"vtest.avi gave only {len(frames)} frames"
    return tuple(frames)


def vtest_frames(count: int, step: int = 5) -> list[np.ndarray]:
    """``count`` real frames (768x576 BGR uint8) of vtest.avi, every ``step``-th."""
    return list(_vtest_frames(count, step))


def seed_labeled_dataset(root: Path, *, count: int, step: int, odd_to_train: bool) -> Path:
    """A YOLO dataset at ``root`` (``data.yaml``, ``images/``, ``labels/``) of ``count``
    vtest.avi frames ``step`` apart, labeled with the seed detector's boxes at 1280 px
    (confidence >= 0.5): a stricter reference than the seed at 640 px, so scores on it are
    real and imperfect. Every frame is val, or with ``odd_to_train`` the odd ones are train
    (to calibrate or fit on); with no train frames the yaml's train is the val images.

    Call ``configure_offline_environment`` first; skips when ``make data`` has not fetched
    the seed."""
    from ultralytics import YOLO

    model = YOLO(str(require(SEED_PT)))
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
    for i, frame in enumerate(vtest_frames(count, step=step)):
        split, stem = ("train" if odd_to_train and i % 2 else "val"), f"vtest_{i * step:05d}"
        assert cv2.imwrite(str(root / "images" / split / f"{stem}.jpg"), frame)
        boxes = model.predict(frame, imgsz=1280, conf=0.5, device="cpu", verbose=False)[0].boxes
        (root / "labels" / split / f"{stem}.txt").write_text(
            "".join(
                f"{int(c)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n"
                for (cx, cy, w, h), c in zip(boxes.xywhn.tolist(), boxes.cls.tolist(), strict=True)
            )
        )
    train = "images/train" if odd_to_train else "images/val"
    (root / "data.yaml").write_text(
        f"path: {root}\ntrain: {train}\nval: images/val\nnames:\n  0: Normal\n  1: Fall\n"
    )
    return root


@dataclass
class Loop:
    """A tmp data dir with its settings, store and the Dagster resources on it."""

    data_dir: Path
    settings: LoopSettings
    store: AnyStore
    loop_resource: LoopSettingsResource
    store_resource: StoreResource
    frames: list[dict] = field(default_factory=list)
    detections: list[dict] = field(default_factory=list)

    def add_frames(
        self,
        camera_id: str,
        images: list[np.ndarray] | None = None,
        *,
        count: int | None = None,
        start: datetime = T0,
        every: timedelta = timedelta(seconds=1),
        features: pd.DataFrame | None = None,
        boxes_per_frame: int = 3,
        confidence: float = 0.55,
        model_version: str = "1",
    ) -> list[str]:
        """Insert frames (JPEGs written when ``images`` given) and their detections.

        Boxes are fixed people-sized boxes at different places on the 768x576 frame;
        confidences step around ``confidence``. Returns the frame keys.
        """
        n = len(images) if images is not None else int(count or 0)
        frame_rows, det_rows = [], []
        keys = []
        for i in range(n):
            key = f"{camera_id}:{start.timestamp():.0f}:{i:05d}"
            keys.append(key)
            jpeg_path = None
            if images is not None:
                path = self.settings.frames_dir / camera_id / f"{key.replace(':', '_')}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                assert cv2.imwrite(str(path), images[i])
                jpeg_path = str(path)
            captured = start + i * every
            dets = []
            for b in range(boxes_per_frame):
                x1, y1 = 60 + 220 * b, 120 + 40 * (i % 3)
                conf = round(confidence + 0.05 * ((i + b) % 4) - 0.05, 3)
                dets.append(
                    {
                        "detection_id": f"{key}:{b}",
                        "frame_key": key,
                        "camera_id": camera_id,
                        "captured_at": captured,
                        "class_id": 0,
                        "class_name": "Normal",
                        "confidence": conf,
                        "x1": float(x1),
                        "y1": float(y1),
                        "x2": float(x1 + 90),
                        "y2": float(y1 + 220),
                        "uncertain": 0.4 < conf < 0.7,
                        "model_version": model_version,
                    }
                )
            feats = features.iloc[i] if features is not None else None
            frame_rows.append(
                {
                    "frame_key": key,
                    "camera_id": camera_id,
                    "frame_index": i,
                    "captured_at": captured,
                    "received_at": captured + timedelta(seconds=2),
                    "width": 768,
                    "height": 576,
                    "brightness": float(feats["brightness"]) if feats is not None else 110.0,
                    "contrast": float(feats["contrast"]) if feats is not None else 50.0,
                    "sharpness": float(feats["sharpness"]) if feats is not None else 300.0,
                    "saturation": float(feats["saturation"]) if feats is not None else 40.0,
                    "detection_count": int(feats["detection_count"])
                    if feats is not None
                    else len(dets),
                    "mean_confidence": float(feats["mean_confidence"])
                    if feats is not None
                    else float(np.mean([d["confidence"] for d in dets]))
                    if dets
                    else None,
                    "inference_ms": 30.0,
                    "model_version": model_version,
                    "agent_id": "test-agent",
                    "jpeg_path": jpeg_path,
                }
            )
            det_rows.extend(dets)
        batch = tables_from_rows(frame_rows, det_rows)
        with self.store.connect() as con:
            insert_batch(
                con=con, frames=batch.frames, detections=batch.detections, queue_items=batch.queue
            )
        self.frames.extend(frame_rows)
        self.detections.extend(det_rows)
        return keys

    def queue(self, frame_keys: list[str], *, priority: float = 0.0) -> None:
        """Put frames in the labeling queue as pending (as the API does on ingest)."""
        by_key = {f["frame_key"]: f for f in self.frames}
        rows = [
            {
                "frame_key": key,
                "camera_id": by_key[key]["camera_id"],
                "priority": priority,
                "uncertain_count": 1,
                "created_at": by_key[key]["received_at"],
                "updated_at": by_key[key]["received_at"],
            }
            for key in frame_keys
        ]
        with self.store.connect() as con:
            queue.insert_items(con=con, items=tables_from_rows([], queue=rows).queue)

    def label(
        self,
        frame_key: str,
        boxes: list[dict],
        *,
        at: datetime,
        labeler: str = "tester",
    ) -> None:
        """Record a reviewed label for a frame (``boxes``: bbox_xyxy px, class_name, class_id),
        through its queue item (queued first when it is not), as an edit when it is labeled."""
        camera = next(f["camera_id"] for f in self.frames if f["frame_key"] == frame_key)
        with self.store.connect() as con:
            item = queue.item_for_frame(con=con, frame_key=frame_key)
        if item is None:
            self.queue([frame_key])
        with self.store.connect() as con:
            item = queue.item_for_frame(con=con, frame_key=frame_key)
            assert item is not None
            labels.create(
                con=con,
                item_id=int(item["item_id"]),
                frame_key=frame_key,
                camera_id=camera,
                boxes=REVIEWED_BOXES.validate_python(boxes),
                labeler=labeler,
                labeled_at=at,
                edit=item["status"] == "labeled",
            )

    def drift_report(self, *, window_frames: int, min_window_frames: int = 30) -> dict[str, Any]:
        """Materialize ``assets.drift.drift_report`` on this loop's store, each camera's
        reference and current windows ``window_frames`` frames (a camera with fewer than
        ``min_window_frames`` skipped); the materialization's metadata
        (``parse_drift_metadata`` reads each camera's result from it)."""
        import dagster as dg

        from assets.drift import drift_report

        config = {"window_frames": window_frames, "min_window_frames": min_window_frames}
        result = dg.materialize(
            [drift_report],
            resources={"store": self.store_resource},
            run_config={"ops": {"drift_report": {"config": config}}},
        )
        return dict(result.asset_materializations_for_node("drift_report")[0].metadata)


def frame_features(
    rng: np.random.Generator, n: int, *, brightness: float = 120.0, sharpness: float = 300.0
) -> pd.DataFrame:
    """``n`` frames' drift features (``assets.drift.FEATURES``, for ``Loop.add_frames``)
    drawn from ``rng``: brightness (sd 8) and sharpness (sd 30, Laplacian variance) around
    the given means, contrast, saturation, detection count and mean confidence steady."""
    return pd.DataFrame(
        {
            "brightness": rng.normal(brightness, 8, n).clip(0, 255),
            "contrast": rng.normal(50, 5, n).clip(0),
            "sharpness": rng.normal(sharpness, 30, n).clip(0),
            "saturation": rng.normal(40, 4, n).clip(0, 255),
            "detection_count": rng.poisson(5, n),
            "mean_confidence": rng.normal(0.6, 0.05, n).clip(0, 1),
        }
    )


def make_loop(tmp_path: Path, *, database_url: str | None = None) -> Loop:
    """A loop on a fresh data folder under ``tmp_path``; its tables in the DuckDB file there,
    or in the PostgreSQL database ``database_url`` (``conftest.postgres_database``)."""
    data_dir = tmp_path / "data"
    loop_resource = LoopSettingsResource(data_dir=str(data_dir), database_url=database_url)
    settings = loop_resource.settings()
    return Loop(
        data_dir=data_dir,
        settings=settings,
        store=settings.store(),
        loop_resource=loop_resource,
        store_resource=StoreResource(loop=loop_resource),
    )


def register_model(
    settings: LoopSettings,
    *,
    pt_path: Path,
    onnx_path: Path,
    class_names: list[str],
    alias: str | None = None,
    reason: str = "registered by a test",
    metrics: dict[str, float] | None = None,
    imgsz: int = 640,
) -> str:
    """Register model files as a new version of ``settings.model_name`` in the loop's MLflow
    store, laid out as ``edgeloop init`` registers the seed (``model/`` with ``best.pt``,
    ``best.onnx``, ``model.json``), and point ``alias`` at it when given (a
    ``model_deployments`` row by actor ``test``). Returns the new version (``"1"``, ...).
    """
    client = mlflow_client(settings)
    run_id = client.create_run(ensure_experiment(client, settings)).info.run_id
    model_dir = write_model_dir(
        settings.data_dir / "test-models" / run_id,
        pt_path=pt_path,
        onnx_path=onnx_path,
        class_names=class_names,
        imgsz=imgsz,
    )
    client.log_artifacts(run_id, str(model_dir), MODEL_ARTIFACT_DIR)
    client.set_terminated(run_id)
    version = register_model_version(
        client, model_name=settings.model_name, run_id=run_id, description=reason
    )
    if alias:
        move_alias(
            client,
            settings.store(),
            model_name=settings.model_name,
            alias=alias,
            version=str(version.version),
            actor="test",
            reason=reason,
            action="register",
            metrics=metrics,
        )
    return str(version.version)


def unversioned_dataset(root: Path, class_names: list[str], **fields: Any) -> DatasetVersion:
    """A ``DatasetVersion`` of the YOLO folder ``root`` that no data repo committed (md5 0s,
    commit ``test``); ``fields`` set the rest (splits, label cutoff and count)."""
    return DatasetVersion(
        version=fields.pop("version", "v1"),
        data_yaml=root / "data.yaml",
        root=root,
        dvc_md5="0" * 32,
        git_commit="test",
        class_names=class_names,
        **fields,
    )
