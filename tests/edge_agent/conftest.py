"""Fixtures for the edge agent's tests: sample media, the seed ONNX model, a recording API."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support import SEED_PT, require

from edgeloop.wire import FrameQuality, FrameRecord, IngestBatch

PREBUILT_ONNX = Path("/tmp/seed/seed.onnx")


@pytest.fixture(scope="session")
def seed_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed detector as an fp32 ONNX file (reused from /tmp/seed, else exported from best.pt)."""
    if PREBUILT_ONNX.is_file() and PREBUILT_ONNX.stat().st_size > 1_000_000:
        return PREBUILT_ONNX
    require(SEED_PT)
    work = tmp_path_factory.mktemp("seed")
    from edgeloop.offline import configure_offline_environment

    configure_offline_environment(work / "ultralytics")
    from ultralytics import YOLO

    pt = work / "seed.pt"
    shutil.copyfile(SEED_PT, pt)
    exported = YOLO(str(pt)).export(format="onnx", imgsz=640, simplify=False, dynamic=False)
    return Path(exported)


def _make_batch(*indices: int, camera: str = "cam1", jpeg: bytes | None = None) -> IngestBatch:
    now = datetime.now(UTC)
    frames = [
        FrameRecord(
            frame_key=f"{camera}:src:{i}",
            camera_id=camera,
            frame_index=i,
            captured_at=now,
            width=64,
            height=48,
            quality=FrameQuality(brightness=1, contrast=2, sharpness=3, saturation=4),
            inference_ms=1.0,
            model_version="1",
            jpeg=jpeg,
        )
        for i in indices
    ]
    return IngestBatch(agent_id="agent", sent_at=now, frames=frames)


@pytest.fixture
def make_batch() -> Callable[..., IngestBatch]:
    """``make_batch(0, 1, jpeg=...)``: a valid IngestBatch with one tiny frame per index."""
    return _make_batch


class RecordingApi:
    """A tiny real HTTP server standing in for the edgeloop API.

    Records every ``POST /api/ingest`` body, answers an ``IngestAck`` (deduplicating by
    ``frame_key`` as the API does), and serves ``GET /api/models/production`` and the model
    file when a model is set (404 otherwise). ``stop()`` and ``start()`` kill and restart it
    on the same port.
    """

    def __init__(self) -> None:
        self.batches: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.stored: set[str] = set()
        self.model: dict[str, Any] | None = None
        self.model_bytes: bytes = b""
        self.model_downloads = 0
        self.lock = threading.Lock()
        self.port = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_model(self, path: Path, version: str = "7") -> None:
        self.model_bytes = path.read_bytes()
        self.model = {
            "name": "edgeloop-detector",
            "version": version,
            "sha256": hashlib.sha256(self.model_bytes).hexdigest(),
            "onnx_url": f"/api/models/edgeloop-detector/{version}/model.onnx",
            "class_names": ["Normal", "Fall"],
            "imgsz": 640,
        }

    @property
    def frames(self) -> list[dict[str, Any]]:
        with self.lock:
            return [f for b in self.batches for f in b["frames"]]

    def start(self) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if api.model is None:
                    self._json(404, {"detail": "no production model"})
                elif self.path == "/api/models/production":
                    self._json(200, api.model)
                elif self.path == api.model["onnx_url"]:
                    api.model_downloads += 1
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(api.model_bytes)))
                    self.end_headers()
                    self.wfile.write(api.model_bytes)
                else:
                    self._json(404, {"detail": "not found"})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path != "/api/ingest":
                    self._json(404, {"detail": "not found"})
                    return
                batch = json.loads(body)
                with api.lock:
                    api.batches.append(batch)
                    api.headers.append({k.lower(): v for k, v in self.headers.items()})
                    keys = [f["frame_key"] for f in batch["frames"]]
                    new = [k for k in keys if k not in api.stored]
                    api.stored.update(keys)
                self._json(
                    200,
                    {
                        "accepted": len(new),
                        "duplicates": len(keys) - len(new),
                        "detections": 0,
                        "queued": 0,
                    },
                )

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def recording_api() -> Iterator[RecordingApi]:
    api = RecordingApi()
    api.start()
    yield api
    api.stop()
