"""Helpers of the API tests: tokens per role, batch builders, real JPEGs.

Importable as ``api_support`` (pytest puts a test file's folder on sys.path).
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.deps import get_registry
from api.main import create_app
from api.settings import ApiSettings
from edgeloop.cli.services import Service, free_port, start_api
from edgeloop.orchestration import DATA_DIR_KEY, STACK_TAG
from edgeloop.registry import ModelNotFoundError
from edgeloop.settings import LoopSettings
from edgeloop.store import AnyStore, alerts

TOKENS = {"agent-token": "agent", "labeler-token": "labeler", "admin-token": "admin"}
AGENT = {"Authorization": "Bearer agent-token"}
LABELER = {"Authorization": "Bearer labeler-token"}
ADMIN = {"Authorization": "Bearer admin-token"}

WIDTH, HEIGHT = 640, 480

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
"""Debian's Chromium, and the flags that keep it from reaching for the network (without
them it opens connections this machine refuses, many at a time)."""
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
)


@contextlib.contextmanager
def chromium_page(width: int, height: int) -> Iterator[object]:
    """A fresh page (no saved token) in headless Chromium, ``width`` x ``height`` px."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            yield context.new_page()
        finally:
            browser.close()


def start_test_api(loop_settings: LoopSettings, *, warm_registry: bool) -> Service:
    """``start_api`` (real uvicorn in its own process group) with the tests' tokens and a
    Dagster URL where nothing listens; use it as a context manager."""
    return start_api(
        loop_settings,
        extra_env={
            "EDGELOOP_API_TOKENS": json.dumps(TOKENS),
            "EDGELOOP_API_WARM_REGISTRY": "true" if warm_registry else "false",
            "EDGELOOP_API_DAGSTER_URL": f"http://127.0.0.1:{free_port()}",
        },
    )


@dataclass(frozen=True)
class LiveServer:
    """A real uvicorn serving ``api.main:create_app --factory`` on a loopback port."""

    base_url: str
    data_dir: Path
    process: subprocess.Popen[bytes]


def jpeg_bytes(width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> bytes:
    """A real JPEG (cv2.imencode) of a grey frame with a few filled rectangles."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 90, np.uint8)
    for _ in range(3):
        x, y = int(rng.integers(0, width - 80)), int(rng.integers(0, height - 120))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(image, (x, y), (x + 60, y + 110), color, -1)
    ok, buffer = cv2.imencode(".jpg", image)
    assert ok
    return buffer.tobytes()


def detection(
    x1: float, y1: float, x2: float, y2: float, confidence: float, class_name: str = "Normal"
) -> dict[str, Any]:
    return {
        "bbox_xyxy": [x1, y1, x2, y2],
        "class_id": {"Normal": 0, "Fall": 1}.get(class_name, 0),
        "class_name": class_name,
        "confidence": confidence,
        "uncertain": 0.4 < confidence < 0.7,
    }


def frame(
    key: str,
    *,
    camera_id: str = "cam-1",
    index: int = 0,
    detections: list[dict[str, Any]] | None = None,
    jpeg: bytes | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
    captured_at: datetime | None = None,
    inference_ms: float = 25.0,
) -> dict[str, Any]:
    """One FrameRecord as JSON-ready dict (jpeg base64-encoded)."""
    record: dict[str, Any] = {
        "frame_key": key,
        "camera_id": camera_id,
        "frame_index": index,
        "captured_at": (
            captured_at or datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=index)
        ).isoformat(),
        "width": width,
        "height": height,
        "quality": {"brightness": 100.0, "contrast": 40.0, "sharpness": 250.0, "saturation": 30.0},
        "inference_ms": inference_ms,
        "model_version": "1",
        "detections": detections or [],
    }
    if jpeg is not None:
        record["jpeg"] = base64.b64encode(jpeg).decode()
    return record


def batch(*frames: dict[str, Any], agent_id: str = "agent-1") -> dict[str, Any]:
    return {
        "wire_version": "1",
        "agent_id": agent_id,
        "sent_at": datetime(2026, 1, 1, tzinfo=UTC).isoformat(),
        "frames": list(frames),
    }


def own_stack(app: FastAPI) -> dict[str, str]:
    """The job metadata this app's own code location shows: its stack id and data folder
    (``pipelines/jobs.py``), what a stand-in launcher answers to ``job_metadata``."""
    loop = app.state.settings.loop
    return {STACK_TAG: loop.stack_id(), DATA_DIR_KEY: str(loop.data_dir.resolve())}


class NoModelRegistry:
    """Registry stub: no version carries any alias (unit tests only)."""

    model_name = "edgeloop-detector"

    def version(self, alias: str) -> None:
        return None

    def files(self, alias: str) -> Any:
        raise ModelNotFoundError(
            f"no version of 'edgeloop-detector' has the alias {alias!r}; run `edgeloop init`"
        )

    def class_names(self, alias: str, *, marker: object) -> list[str]:
        return list(self.files(alias).class_names)


def api_settings_for(loop: LoopSettings, **fields: Any) -> ApiSettings:
    """The API's settings for a test on ``loop``: the tokens of ``TOKENS``, no registry
    warm-up and a Dagster URL where nothing listens (5 s timeout); ``fields`` override any."""
    values: dict[str, Any] = {
        "loop": loop,
        "tokens": TOKENS,
        "warm_registry": False,
        "dagster_url": f"http://127.0.0.1:{free_port()}",
        "dagster_timeout_s": 5,
    }
    return ApiSettings(**(values | fields))


def app_without_registry(settings: ApiSettings) -> FastAPI:
    """``create_app(settings)`` with the MLflow registry swapped for ``NoModelRegistry``
    (a fresh MLflow store takes seconds to create; most tests need no model)."""
    app = create_app(settings)
    app.dependency_overrides[get_registry] = NoModelRegistry
    return app


def client_on(loop: LoopSettings) -> TestClient:
    """A ``TestClient`` (enter it to run the app's lifespan) of the app on ``loop``, with
    ``api_settings_for``'s settings and no registry."""
    return TestClient(app_without_registry(api_settings_for(loop)))


def ingest(client: TestClient, *frames: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/ingest", json=batch(*frames), headers=AGENT)
    assert response.status_code == 200, response.text
    return dict(response.json())


def queued_frame(
    key: str, index: int = 0, confidence: float = 0.55, **kwargs: Any
) -> dict[str, Any]:
    """A frame with one uncertain and one confident detection, and its JPEG."""
    return frame(
        key,
        index=index,
        detections=[
            detection(100, 50, 180, 230, confidence),
            detection(300, 100, 380, 300, 0.92, "Fall"),
        ],
        jpeg=jpeg_bytes(seed=index),
        **kwargs,
    )


def raise_drift_alert(
    store: AnyStore, camera_id: str, share: float, *, at: datetime | None = None
) -> int:
    """A critical drift alert on ``camera_id`` worded as the drift sensor words one
    (``edgeloop.alerts.evaluate``): drift share ``share`` ([0, 1]) against 0.3, frames from
    model version 3, raised at ``at`` (default now); its ``alert_id``."""
    with store.connect() as con:
        alert_id = alerts.raise_alert(
            con=con,
            camera_id=camera_id,
            kind="drift",
            severity="critical",
            summary=f"camera {camera_id} drifted: drift share {share:.2f} > 0.3",
            description=f"{share:.0%} of camera {camera_id}'s frame features drifted",
            value=share,
            threshold=0.3,
            model_version="3",
            now=at,
        )
    assert alert_id is not None, f"an alert on {camera_id} was live already"
    return alert_id
