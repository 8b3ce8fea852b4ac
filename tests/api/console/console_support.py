"""Helpers of the console tests: a store filled with known rows at known times.

Importable as ``console_support`` (pytest puts a test file's folder on sys.path). Rows go
in through the store's own writers (``ingest.insert_batch`` with Arrow tables,
``agents.upsert``, ``labels.create``, ``drift.insert``, ``deployments.record``,
``retraining.record``), so the numbers the console shows can be checked against them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from edgeloop.annotations import REVIEWED_BOXES
from edgeloop.settings import MODEL_NAME
from edgeloop.store import (
    Store,
    agents,
    deployments,
    drift,
    ingest,
    labels,
    queue,
    retraining,
)
from edgeloop.wire import AgentHeartbeat

WIDTH, HEIGHT = 768, 576


@dataclass
class Fleet:
    """What was inserted: frames and detections per camera, for checking the console."""

    frames: list[dict[str, Any]] = field(default_factory=list)
    detections: list[dict[str, Any]] = field(default_factory=list)

    def of(self, camera_id: str, since: datetime) -> tuple[list[dict], list[dict]]:
        """The camera's frames and detections captured at or after ``since``."""
        return (
            [f for f in self.frames if f["camera_id"] == camera_id and f["captured_at"] >= since],
            [
                d
                for d in self.detections
                if d["camera_id"] == camera_id and d["captured_at"] >= since
            ],
        )


def add_frames(
    store: Store,
    fleet: Fleet,
    camera_id: str,
    *,
    start: datetime,
    confidences: list[list[float]],
    every: timedelta = timedelta(seconds=10),
    model_version: str = "1",
    inference_ms: float = 30.0,
    jpeg_paths: list[str | None] | None = None,
    class_names: list[list[str]] | None = None,
    low: float = 0.4,
    high: float = 0.7,
) -> list[str]:
    """Insert one frame per entry of ``confidences`` (its detections' confidences), every
    ``every`` from ``start``, queueing frames with an uncertain detection; returns keys."""
    frame_rows, det_rows, queue_rows = [], [], []
    keys = []
    for i, confs in enumerate(confidences):
        key = f"{camera_id}:{start.timestamp():.0f}:{i:05d}"
        keys.append(key)
        captured = start + i * every
        names = class_names[i] if class_names else ["Normal"] * len(confs)
        dets = [
            {
                "detection_id": f"{key}:{b}",
                "frame_key": key,
                "camera_id": camera_id,
                "captured_at": captured,
                "class_id": 0 if names[b] == "Normal" else 1,
                "class_name": names[b],
                "confidence": conf,
                "x1": 100.0 + 200 * b,
                "y1": 120.0,
                "x2": 190.0 + 200 * b,
                "y2": 340.0,
                "uncertain": low < conf < high,
                "model_version": model_version,
            }
            for b, conf in enumerate(confs)
        ]
        frame_rows.append(
            {
                "frame_key": key,
                "camera_id": camera_id,
                "frame_index": i,
                "captured_at": captured,
                "received_at": captured + timedelta(seconds=1),
                "width": WIDTH,
                "height": HEIGHT,
                "brightness": 110.0,
                "contrast": 50.0,
                "sharpness": 300.0,
                "saturation": 40.0,
                "detection_count": len(dets),
                "mean_confidence": sum(confs) / len(confs) if confs else None,
                "inference_ms": inference_ms,
                "model_version": model_version,
                "agent_id": f"agent-{camera_id}",
                "jpeg_path": jpeg_paths[i] if jpeg_paths else None,
            }
        )
        if any(d["uncertain"] for d in dets):
            queue_rows.append(
                {
                    "frame_key": key,
                    "camera_id": camera_id,
                    "priority": 0.5,
                    "uncertain_count": sum(d["uncertain"] for d in dets),
                    "created_at": captured + timedelta(seconds=1),
                    "updated_at": captured + timedelta(seconds=1),
                }
            )
        det_rows.extend(dets)
    frames_t = pa.Table.from_pandas(pd.DataFrame(frame_rows), preserve_index=False)
    dets_t = pa.Table.from_pylist(det_rows) if det_rows else _empty_detections()
    queue_t = pa.Table.from_pylist(queue_rows) if queue_rows else _empty_queue()
    with store.connect() as con:
        ingest.insert_batch(con=con, frames=frames_t, detections=dets_t, queue_items=queue_t)
    fleet.frames.extend(frame_rows)
    fleet.detections.extend(det_rows)
    return keys


def _empty_detections() -> pa.Table:
    return pa.table({"frame_key": pa.array([], pa.string())})


def _empty_queue() -> pa.Table:
    return pa.table({"frame_key": pa.array([], pa.string())})


def heartbeat(
    camera_id: str, *, agent_id: str | None = None, model_version: str | None = "1", **fields: Any
) -> AgentHeartbeat:
    """A valid heartbeat; ``fields`` override any value."""
    now = fields.pop("sent_at", None) or pd.Timestamp.now(tz="UTC").to_pydatetime()
    values: dict[str, Any] = {
        "agent_id": agent_id or f"agent-{camera_id}",
        "camera_id": camera_id,
        "host": f"host-{camera_id}",
        "agent_version": "0.1.0",
        "sent_at": now,
        "started_at": now - timedelta(hours=1),
        "model_version": model_version,
        "source_connected": True,
        "reconnects": 0,
        "frames_processed": 1000,
        "frames_skipped": 2,
        "frames_per_s": 9.5,
        "inference_ms_p50": 31.5,
        "inference_ms_p95": 48.25,
        "execution_provider": "CPUExecutionProvider",
        "spool_batches": 2,
        "spool_bytes": 65_536,
        "spool_dropped_batches": 0,
    }
    return AgentHeartbeat(**(values | fields))


def store_heartbeat(store: Store, beat: AgentHeartbeat, *, received_at: datetime) -> None:
    with store.connect() as con:
        agents.upsert(con=con, heartbeat=beat, received_at=received_at)


def label_pending(
    store: Store, *, count: int, labeler: str, at: datetime, every: timedelta = timedelta(0)
) -> list[str]:
    """Label the first ``count`` pending items as ``labeler``, the first at ``at`` and each
    next ``every`` later; their frame keys."""
    boxes = REVIEWED_BOXES.validate_python(
        [{"bbox_xyxy": [100.0, 120.0, 190.0, 340.0], "class_id": 0, "class_name": "Normal"}]
    )
    with store.connect() as con:
        items = queue.list_items(con=con, status="pending", camera_id=None, limit=count, offset=0)[
            0
        ]
        for i, item in enumerate(items):
            labels.create(
                con=con,
                item_id=item["item_id"],
                frame_key=item["frame_key"],
                camera_id=item["camera_id"],
                boxes=boxes,
                labeler=labeler,
                labeled_at=at + i * every,
            )
    return [item["frame_key"] for item in items]


def add_drift(
    store: Store,
    camera_id: str,
    *,
    at: datetime,
    p_values: dict[str, float],
    report_path: str | None = None,
    **columns: Any,
) -> None:
    """A drift report row of ``camera_id`` computed at ``at``, 100 frames each side: the
    drift share from ``p_values`` (a feature drifted below 0.05, the camera above a share of
    0.3); ``columns`` set the rest (``model_version``, ``reference_model_version``,
    ``model_versions`` as JSON)."""
    share = sum(p < 0.05 for p in p_values.values()) / len(p_values)
    row = {
        "camera_id": camera_id,
        "computed_at": at,
        "reference_frames": 100,
        "current_frames": 100,
        "drift_share": share,
        "min_p_value": min(p_values.values()),
        "drifted": share > 0.3,
        "p_values": json.dumps(p_values),
        "report_path": report_path,
    } | columns
    with store.connect() as con:
        drift.insert(con=con, rows=pd.DataFrame([row]))


def add_event(store: Store, **fields: Any) -> int:
    run_status = fields.pop("run_status", None)
    candidate, outcome = fields.pop("candidate_version", None), fields.pop("outcome", None)
    with store.connect() as con:
        event_id = retraining.record(con=con, **fields)
        if run_status and fields.get("dagster_run_id"):
            retraining.record_run(
                con=con,
                dagster_run_id=fields["dagster_run_id"],
                run_status=run_status,
                candidate_version=candidate,
                outcome=outcome,
            )
    return event_id


def add_retrain_run(
    store: Store,
    *,
    labels: int,
    dagster_run_id: str,
    candidate_version: str,
    outcome: str,
    **fields: Any,
) -> int:
    """A retrain the label count launched at ``labels`` labels, whose Dagster run
    ``dagster_run_id`` succeeded with ``candidate_version`` and ``outcome``; its event id."""
    return add_event(
        store,
        trigger="label_count",
        decision="launched",
        reason=f"{labels} labels reached the threshold",
        labels_since_training=labels,
        run_key=f"labels:{labels}",
        dagster_run_id=dagster_run_id,
        run_status="succeeded",
        candidate_version=candidate_version,
        outcome=outcome,
        **fields,
    )


def add_move(store: Store, *, version: str, alias: str = "production", **fields: Any) -> None:
    with store.connect() as con:
        deployments.record(
            con=con,
            model_name=fields.pop("model_name", MODEL_NAME),
            version=version,
            alias=alias,
            previous_version=fields.pop("previous_version", None),
            action=fields.pop("action", "promote"),
            actor=fields.pop("actor", "test"),
            reason=fields.pop("reason", "test move"),
            **fields,
        )


def demo_jpegs(target: Path, count: int) -> list[str]:
    """``count`` real JPEGs (768x576) cut from ``data/samples/vtest.avi`` into ``target``;
    plain synthetic frames when the sample is missing (``make data`` fetches it)."""
    import cv2
    import numpy as np

    target.mkdir(parents=True, exist_ok=True)
    video = Path(__file__).resolve().parents[3] / "data" / "samples" / "vtest.avi"
    capture = cv2.VideoCapture(str(video)) if video.exists() else None
    paths = []
    for i in range(count):
        image = None
        if capture is not None:
            capture.set(cv2.CAP_PROP_POS_FRAMES, 20 * i)
            ok, image = capture.read()
            image = image if ok else None
        if image is None:
            image = np.full((HEIGHT, WIDTH, 3), 90 + 10 * (i % 5), np.uint8)
        path = target / f"demo-{i:03d}.jpg"
        assert cv2.imwrite(str(path), image)
        paths.append(str(path))
    if capture is not None:
        capture.release()
    return paths


@dataclass
class Console:
    """A running API on ``load_demo``'s data (the ``console`` fixture)."""

    base_url: str
    demo: Demo
    store: Store
    settings: Any


@dataclass
class Demo:
    """What ``load_demo`` put in the store (to check the console's numbers against)."""

    fleet: Fleet
    versions: list[str]
    now: datetime
    evaluation: dict[str, Any] = field(default_factory=dict)
    """The held-out evaluation recorded with v2's staging move (``model_promotion``'s shape)."""


def load_demo(settings: Any, scratch: Path, *, now: datetime) -> Demo:
    """An ``edgeloop demo``-like loop: 3 cameras (two online, one stale), frames with real
    JPEGs over the last 6 hours, labels by two labelers, drift reports with an Evidently-like
    HTML report, retraining events, and a real MLflow registry with v1 in production and
    v2 registered (staging) after a retrain."""
    from registry_support import register_versions

    store = Store(settings.duckdb_path)
    versions = register_versions(settings, scratch, count=2)
    fleet = Fleet()
    jpegs = demo_jpegs(settings.frames_dir / "demo", 24)
    pattern = [[0.91, 0.55], [0.82], [], [0.62, 0.88, 0.47], [0.93], [0.66, 0.71]]
    spans = [  # (how long ago, frames, every, inference ms, JPEGs)
        (timedelta(hours=6), 118, timedelta(minutes=3), 28.0, None),  # history
        (timedelta(minutes=4), 24, timedelta(seconds=10), 30.0, jpegs),  # then densely
    ]
    for camera, offset in (("entrance", 0), ("yard", 3)):
        for ago, count, every, inference_ms, jpeg_paths in spans:
            add_frames(
                store,
                fleet,
                camera,
                start=now - ago,
                confidences=[pattern[(i + offset) % len(pattern)] for i in range(count)],
                every=every,
                jpeg_paths=jpeg_paths,
                inference_ms=inference_ms + offset,
            )
    add_frames(
        store,
        fleet,
        "loading-dock",
        start=now - timedelta(hours=2),
        confidences=[[0.58, 0.9]] * 12,
        every=timedelta(seconds=20),
        inference_ms=55.0,
    )
    store_heartbeat(
        store,
        heartbeat(
            "loading-dock",
            host="edge-03",
            frames_per_s=0.0,
            source_connected=False,
            spool_batches=37,
            spool_bytes=9_400_000,
        ),
        received_at=now - timedelta(hours=1, minutes=58),
    )
    label_pending(
        store, count=14, labeler="alice", at=now - timedelta(hours=3), every=timedelta(seconds=50)
    )
    label_pending(
        store, count=6, labeler="bob", at=now - timedelta(minutes=30), every=timedelta(minutes=1)
    )
    report_dir = settings.reports_dir / "drift"
    report_dir.mkdir(parents=True, exist_ok=True)
    for camera in ("entrance", "yard", "loading-dock"):
        for k in range(12):
            late = camera == "yard" and k >= 9
            p = {
                "brightness": 0.01 if late else 0.3 + 0.05 * (k % 4),
                "contrast": 0.02 if late else 0.6,
                "sharpness": 0.4 + 0.03 * (k % 5),
                "saturation": 0.7,
                "detection_count": 0.25 + 0.1 * (k % 3),
                "mean_confidence": 0.04 if late and k == 11 else 0.5,
            }
            path = None
            if k == 11:
                report = report_dir / f"{camera}.html"
                report.write_text(
                    f"<html><body><h1>Evidently drift report: {camera}</h1></body></html>"
                )
                path = str(report)
            add_drift(
                store,
                camera,
                at=now - timedelta(minutes=30 * (11 - k)),
                p_values=p,
                report_path=path,
            )
    add_retrain_run(
        store,
        labels=20,
        dagster_run_id="8c3e2f1a-demo-run",
        candidate_version=versions[1],
        outcome=f"v{versions[1]} is staging; kept production v{versions[0]}: gain not significant",
        created_at=now - timedelta(hours=2, minutes=50),
    )
    add_event(
        store,
        trigger="drift",
        decision="deferred",
        camera_id="yard",
        reason="yard drifted; no new labels: queue reprioritised",
        labels_since_training=0,
        created_at=now - timedelta(minutes=20),
    )
    from edgeloop.registry import STAGING, mlflow_client, move_alias

    evaluation = {
        "candidate_version": versions[1],
        "production_version": versions[0],
        "candidate": {"mAP50": 0.712, "mAP50-95": 0.448, "precision": 0.81, "recall": 0.66},
        "production": {"mAP50": 0.694, "mAP50-95": 0.431, "precision": 0.8, "recall": 0.64},
        "evidence": {
            "gain_mAP50-95": {"point": 0.017, "low": -0.004, "high": 0.038},
            "corrections_learned": {"count": 3, "n": 10},
            "regressions": {"count": 1, "n": 20},
        },
        "val_images": 40,
        "verdict": "gain not significant",
    }
    move_alias(
        mlflow_client(settings),
        store,
        model_name=settings.model_name,
        alias=STAGING,
        version=versions[1],
        actor="dagster",
        reason="beat production on the held-out set",
        metrics=evaluation,
    )
    return Demo(fleet=fleet, versions=versions, now=now, evaluation=evaluation)


LIVE_HEARTBEATS = {
    "entrance": {"host": "edge-01"},
    "yard": {
        "host": "edge-02",
        "frames_per_s": 11.2,
        "inference_ms_p50": 29.0,
        "inference_ms_p95": 44.0,
        "spool_batches": 0,
        "spool_bytes": 0,
    },
}
"""The demo's online agents: what ``send_heartbeats`` POSTs for each camera."""


def send_heartbeats(base_url: str, agent_token: str) -> None:
    """POST the online agents' heartbeats to a running API, as the agents do every ~10 s."""
    import httpx

    for camera, fields in LIVE_HEARTBEATS.items():
        response = httpx.post(
            f"{base_url}/api/agents/heartbeat",
            json=heartbeat(camera, **fields).model_dump(mode="json"),
            headers={"Authorization": f"Bearer {agent_token}"},
            timeout=30,
        )
        response.raise_for_status()
