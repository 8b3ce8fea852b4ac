"""A loop host's work on one data folder, run as its own process by
``test_data_folder_moves.py`` (``python data_folder_site.py build|retrain``), with
``EDGELOOP_DATA_DIR`` and ``DAGSTER_HOME`` naming the folder, as a user starts the stack.

- ``build``: what a site holds after a while (after ``edgeloop init``): frames of
  vtest.avi ingested through the API, labeled through the labeling API, the detections,
  drift and crop-embedding assets, and one retrain (dataset version -> fine-tune ->
  evaluation -> promotion) through the code location's real ``retrain_job``.
- ``retrain``: more frames and labels, a drift report, and a retrain.

Sizes are the smallest the code location accepts (``EDGELOOP_PIPELINES_*`` set by the
test): 1 epoch at 160 px; about 16 labeled frames per version.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta

import cv2
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import ApiSettings
from edgeloop.settings import get_settings

TOKENS = {"agent-token": "agent", "labeler-token": "labeler"}
CAMERA = "cam-site"


def _jpeg(index: int) -> bytes:
    """Frame ``index`` of vtest.avi (768x576) as JPEG bytes."""
    settings = get_settings()
    cap = cv2.VideoCapture(str(settings.samples_dir / "vtest.avi"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, image = cap.read()
    cap.release()
    assert ok, f"vtest.avi has no frame {index}"
    ok, buffer = cv2.imencode(".jpg", image)
    assert ok
    return bytes(buffer.tobytes())


def _frame(index: int, captured_at: datetime) -> dict[str, object]:
    """One wire-version-1 frame with three uncertain people-sized detections and its JPEG."""
    import base64

    detections = []
    for b in range(3):
        x1, y1 = 60 + 220 * b, 120 + 10 * (index % 5)
        confidence = 0.45 + 0.05 * ((index + b) % 4)
        detections.append(
            {
                "bbox_xyxy": [x1, y1, x1 + 90, y1 + 220],
                "class_id": 0,
                "class_name": "Normal",
                "confidence": confidence,
                "uncertain": True,
            }
        )
    return {
        "frame_key": f"{CAMERA}:{index:05d}",
        "camera_id": CAMERA,
        "frame_index": index,
        "captured_at": captured_at.isoformat(),
        "width": 768,
        "height": 576,
        "quality": {
            "brightness": 100.0 + index % 7,
            "contrast": 40.0 + index % 5,
            "sharpness": 250.0 + index % 11,
            "saturation": 30.0 + index % 3,
        },
        "inference_ms": 30.0,
        "model_version": "1",
        "detections": detections,
        "jpeg": base64.b64encode(_jpeg(index)).decode(),
    }


def ingest_and_label(indices: range) -> None:
    """Send the frames ``indices`` through ``/api/ingest`` and label every queued one
    through the labeling API, accepting its proposed boxes."""
    settings = ApiSettings(
        loop=get_settings(),
        tokens=TOKENS,  # type: ignore[arg-type]
        warm_registry=False,
        push_retrain=False,
        dagster_url="http://127.0.0.1:9",  # nothing listens: the test launches the runs
    )
    now = datetime.now(UTC)  # captured one frame a second up to now: after earlier labels
    with TestClient(create_app(settings)) as client:
        frames = [
            _frame(i, now - timedelta(seconds=len(indices) - n)) for n, i in enumerate(indices)
        ]
        batch = {"wire_version": "1", "agent_id": "site-agent", "sent_at": now.isoformat()}
        answer = client.post(
            "/api/ingest",
            json=batch | {"frames": frames},
            headers={"Authorization": "Bearer agent-token"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["queued"] == len(frames), answer.text
        labeler = {"Authorization": "Bearer labeler-token"}
        for _ in frames:
            item = client.get("/api/labeling-queue/next", headers=labeler)
            assert item.status_code == 200, item.text
            boxes = [
                {"bbox_xyxy": box["bbox_xyxy"], "class_name": box["class_name"]}
                for box in item.json()["proposed_boxes"]
            ]
            label = client.post(
                f"/api/labeling-queue/{item.json()['item_id']}/label",
                json={"boxes": boxes},
                headers=labeler,
            )
            assert label.status_code == 201, label.text


def run_assets(names: list[str], *, retrain: bool) -> None:
    """Materialize ``names`` and then, when ``retrain``, run ``retrain_job``, in process on
    the data folder's Dagster instance with the code location's run config."""
    import dagster as dg

    from edgeloop.cli.headless import materialize
    from pipelines.definitions import defs
    from pipelines.jobs import RETRAIN_JOB, retrain_run_config, run_config
    from pipelines.settings import get_pipeline_settings

    pipeline_settings = get_pipeline_settings()
    instance = dg.DagsterInstance.get()
    configured = tuple(n for n in names if n in type(pipeline_settings).model_fields)
    materialize(defs, names, instance, run_config=run_config(pipeline_settings, configured))
    if retrain:
        outcome = defs.resolve_job_def(RETRAIN_JOB).execute_in_process(
            instance=instance, run_config=retrain_run_config(pipeline_settings)
        )
        assert outcome.success, f"retrain_job run {outcome.run_id} failed"


def main(step: str) -> None:
    if step == "build":
        ingest_and_label(range(0, 320, 16))  # 20 frames
        run_assets(
            ["detections", "drift_report", "labeling_queue", "crop_embeddings"], retrain=True
        )
    elif step == "retrain":
        ingest_and_label(range(330, 430, 20))  # 5 more
        run_assets(["detections", "drift_report"], retrain=True)
    else:
        raise SystemExit(f"unknown step {step!r}: build or retrain")
    print(json.dumps({"step": step, "ok": True}))


if __name__ == "__main__":
    main(sys.argv[1])
