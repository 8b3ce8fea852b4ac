"""Fixtures for the edge agent's tests: sample media, the seed ONNX model, stand-ins for the API.

``ingest_api`` and ``model_api`` are ``httpx.MockTransport`` handlers (in-process, fast);
``recording_api`` is a real HTTP server on a loopback port.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

# With --import-mode=importlib this folder is not on sys.path: make the test modules'
# shared fakes (fake_detector) importable, as tests/api/conftest.py does for api_support.
sys.path.insert(0, str(Path(__file__).parent))

from loopback import JsonHandler, LoopbackServer

from edgeloop.wire import FrameQuality, FrameRecord, IngestBatch, parse_ingest_batch


def as_v1(body: bytes) -> dict[str, Any]:
    """An ingest body (wire version 1 or 2, as ``edgeloop.wire.parse_ingest_batch`` reads
    it) as version 1's JSON: one object per frame, so tests read ``batch["frames"]``."""
    batch = parse_ingest_batch(body)
    v1 = IngestBatch(agent_id=batch.agent_id, sent_at=batch.sent_at, frames=batch.frames)
    return dict(v1.model_dump(mode="json"))


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


class FakeApi:
    """An ``httpx.MockTransport`` handler standing in for the edgeloop API.

    ``mode`` says how it answers: ``"up"`` hands the request to ``answer``; ``"down"``
    refuses the connection, ``"timeout"`` times out; an HTTP status (``"401"``, ``"404"``,
    ``"422"``, ``"503"``) is answered with the API's ``{"detail": ...}`` from ``DETAILS``.
    Every request is kept in ``requests``.
    """

    DETAILS: ClassVar[dict[str, Any]] = {
        "401": "bad token",
        "404": "no production model",
        "422": [{"msg": "bbox outside the frame"}],
        "503": "database busy",
    }

    def __init__(self) -> None:
        self.mode = "up"
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.mode == "down":
            raise httpx.ConnectError("connection refused", request=request)
        if self.mode == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if self.mode != "up":
            return httpx.Response(int(self.mode), json={"detail": self.DETAILS[self.mode]})
        return self.answer(request)

    def answer(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"detail": "not found"})


class IngestApi(FakeApi):
    """``POST /api/ingest``: keeps each batch (JSON, in ``batches``) and acknowledges it."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[dict[str, Any]] = []

    @property
    def stored(self) -> list[int]:
        """Indices of the frames received, in arrival order."""
        return [f["frame_index"] for b in self.batches for f in b["frames"]]

    def answer(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/api/ingest":  # e.g. the heartbeat: an API without the route
            return super().answer(request)
        self.batches.append(as_v1(request.content))
        frames = self.batches[-1]["frames"]
        return httpx.Response(
            200, json={"accepted": len(frames), "duplicates": 0, "detections": 0, "queued": 0}
        )


@pytest.fixture
def ingest_api() -> IngestApi:
    return IngestApi()


class ModelApi(FakeApi):
    """``GET /api/models/production`` and the ONNX file it names.

    Attributes:
        onnx, version: the production model's bytes and version.
        band: the uncertainty band sent with it; None sends none (an API from before it).
        An ``ETag`` goes with the model; ``If-None-Match`` naming it gets an empty 304.
        announced_sha: a sha256 to announce instead of the file's (a tampered download).
        move_to: ``(onnx, version)`` production moves to while the next download starts (409).
    """

    def __init__(self, onnx: bytes, version: str = "3") -> None:
        super().__init__()
        self.onnx = onnx
        self.version = version
        self.band: tuple[float, float] | None = (0.4, 0.7)
        self.announced_sha: str | None = None
        self.downloads = 0
        self.move_to: tuple[bytes, str] | None = None

    def answer(self, request: httpx.Request) -> httpx.Response:
        onnx_url = f"/api/models/edgeloop-detector/{self.version}/model.onnx"
        if request.url.path == "/api/models/production":
            model: dict[str, Any] = {
                "name": "edgeloop-detector",
                "version": self.version,
                "sha256": self.announced_sha or hashlib.sha256(self.onnx).hexdigest(),
                "onnx_url": onnx_url,
                "class_names": ["Normal", "Fall"],
                "imgsz": 640,
            }
            if self.band is not None:
                model["uncertainty_low"], model["uncertainty_high"] = self.band
            etag = '"' + hashlib.sha256(json.dumps(model).encode()).hexdigest()[:16] + '"'
            if request.headers.get("If-None-Match") == etag:  # as the API: RFC 9110 13.1.2
                return httpx.Response(304, headers={"ETag": etag})
            return httpx.Response(200, json=model, headers={"ETag": etag})
        if request.url.path == onnx_url:
            if self.move_to is not None:  # production moves just as the agent downloads
                self.onnx, self.version, self.move_to = self.move_to[0], self.move_to[1], None
                return httpx.Response(409, json={"detail": "production is now another version"})
            self.downloads += 1
            return httpx.Response(200, content=self.onnx)
        return super().answer(request)


@pytest.fixture
def model_api() -> type[ModelApi]:
    """``model_api(onnx_bytes, version="3")``: a ``ModelApi`` serving that model."""
    return ModelApi


class RecordingApi(LoopbackServer):
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
        api = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if api.model is None:
                    self.send_json(404, {"detail": "no production model"})
                elif self.path == "/api/models/production":
                    self.send_json(200, api.model)
                elif self.path == api.model["onnx_url"]:
                    api.model_downloads += 1
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(api.model_bytes)))
                    self.end_headers()
                    self.wfile.write(api.model_bytes)
                else:
                    self.send_json(404, {"detail": "not found"})

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path != "/api/ingest":
                    self.send_json(404, {"detail": "not found"})
                    return
                batch = as_v1(body)
                with api.lock:
                    api.batches.append(batch)
                    api.headers.append({k.lower(): v for k, v in self.headers.items()})
                    keys = [f["frame_key"] for f in batch["frames"]]
                    new = [k for k in keys if k not in api.stored]
                    api.stored.update(keys)
                self.send_json(
                    200,
                    {
                        "accepted": len(new),
                        "duplicates": len(keys) - len(new),
                        "detections": 0,
                        "queued": 0,
                    },
                )

        super().__init__(Handler)

    def set_model(
        self, path: Path, version: str = "7", band: tuple[float, float] | None = None
    ) -> None:
        """Serve ``path`` as production ``version``, with the uncertainty ``band`` when given."""
        self.model_bytes = path.read_bytes()
        self.model = {
            "name": "edgeloop-detector",
            "version": version,
            "sha256": hashlib.sha256(self.model_bytes).hexdigest(),
            "onnx_url": f"/api/models/edgeloop-detector/{version}/model.onnx",
            "class_names": ["Normal", "Fall"],
            "imgsz": 640,
        }
        if band is not None:
            self.model["uncertainty_low"], self.model["uncertainty_high"] = band

    @property
    def frames(self) -> list[dict[str, Any]]:
        with self.lock:
            return [f for b in self.batches for f in b["frames"]]


@pytest.fixture
def recording_api() -> Iterator[RecordingApi]:
    api = RecordingApi()
    api.start()
    yield api
    api.stop()
