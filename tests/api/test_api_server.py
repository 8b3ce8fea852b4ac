"""Integration: real uvicorn on loopback; ingest a real video frame and label it over HTTP."""

from __future__ import annotations

import json
import time

import cv2
import httpx
import pytest
from api_support import AGENT, LABELER, LiveServer, batch, detection, frame
from support import SAMPLES_DIR, require

from edgeloop.store import Store


def vtest_jpeg(index: int = 40) -> bytes:
    """Frame ``index`` of vtest.avi (768x576, people walking) as JPEG."""
    capture = cv2.VideoCapture(str(require(SAMPLES_DIR / "vtest.avi")))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, image = capture.read()
    capture.release()
    assert ok and image.shape == (576, 768, 3)
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buffer.tobytes()


@pytest.mark.integration
def test_ingest_and_label_over_http(live_server: LiveServer) -> None:
    payload = batch(
        frame(
            "vtest:000040",
            camera_id="vtest",
            index=40,
            width=768,
            height=576,
            detections=[detection(372, 160, 420, 290, 0.52), detection(96, 250, 150, 400, 0.81)],
            jpeg=vtest_jpeg(40),
        ),
        frame("vtest:000041", camera_id="vtest", index=41, width=768, height=576),
    )
    with httpx.Client(base_url=live_server.base_url, timeout=30) as http:
        ack = http.post("/api/ingest", json=payload, headers=AGENT)
        assert ack.status_code == 200, ack.text
        assert ack.json() == {
            "accepted": 2,
            "duplicates": 0,
            "detections": 2,
            "queued": 1,
            "conflicts": 0,
        }
        replay = http.post("/api/ingest", json=payload, headers=AGENT).json()
        assert replay["duplicates"] == 2

        item = http.get("/api/labeling-queue/next", headers=LABELER).json()
        assert item["frame_key"] == "vtest:000040"
        image = http.get(item["frame_url"], headers=LABELER)
        assert image.content[:3] == b"\xff\xd8\xff"
        label = http.post(
            f"/api/labeling-queue/{item['item_id']}/label",
            json={"boxes": [{"bbox_xyxy": [370, 158, 421, 292], "class_name": "Normal"}]},
            headers=LABELER,
        )
        assert label.status_code == 201, label.text
        health = http.get("/api/health", headers=LABELER).json()
        assert health["counts"]["reviewed_labels"] == 1
        assert health["counts"]["queue_pending"] == 0

        # Once ingest is idle the API releases the DuckDB file: another process opens it.
        time.sleep(1.0)
        with Store(live_server.data_dir / "edgeloop.duckdb", lock_timeout_s=5).connect() as con:
            boxes = con.execute("SELECT boxes FROM reviewed_labels").fetchone()
        assert boxes is not None
        assert json.loads(boxes[0])[0]["bbox_xyxy"] == [370, 158, 421, 292]
        # ...and the API reopens it on the next request.
        assert http.get("/api/labeling-queue?status=labeled", headers=LABELER).json()["count"] == 1
