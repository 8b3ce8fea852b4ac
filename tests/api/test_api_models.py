"""Model endpoints against a real MLflow sqlite store (registered versions, aliases)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from api_support import AGENT, LABELER, TOKENS, ingest, queued_frame
from fastapi.testclient import TestClient
from loopdata import register_model

from api.main import create_app
from api.settings import ApiSettings
from edgeloop.offline import configure_offline_environment
from edgeloop.registry import (
    PRODUCTION,
    STAGING,
)
from edgeloop.rules import UNCERTAINTY_HIGH, UNCERTAINTY_LOW
from edgeloop.settings import LoopSettings, get_settings

CLASS_NAMES = ["Normal", "Fall", "Sitting"]


@dataclass(frozen=True)
class Registered:
    settings: LoopSettings
    onnx_bytes: bytes


def _register(
    settings: LoopSettings, work: Path, *, onnx: bytes, metrics: dict[str, float], alias: str
) -> str:
    work.mkdir(parents=True)
    pt, onnx_path = work / "best.pt", work / "best.onnx"
    pt.write_bytes(b"not really torch weights")
    onnx_path.write_bytes(onnx)
    return register_model(
        settings,
        pt_path=pt,
        onnx_path=onnx_path,
        class_names=CLASS_NAMES,
        alias=alias,
        reason=f"{alias} for the API tests",
        metrics=metrics,
    )


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Registered:
    """Version 1 (production, a tiny fake ONNX file) and 2 (staging) in a real MLflow store."""
    root = tmp_path_factory.mktemp("registry")
    configure_offline_environment(root / "ultralytics")
    settings = LoopSettings(data_dir=root / "data")
    onnx = b"\x08\x07fake-onnx-model" * 64
    assert (
        _register(settings, root / "v1", onnx=onnx, metrics={"mAP50": 0.61}, alias=PRODUCTION)
        == "1"
    )
    assert (
        _register(settings, root / "v2", onnx=onnx + b"2", metrics={"mAP50": 0.66}, alias=STAGING)
        == "2"
    )
    return Registered(settings=settings, onnx_bytes=onnx)


@pytest.fixture
def model_client(registered: Registered) -> Iterator[TestClient]:
    settings = ApiSettings(loop=registered.settings, tokens=TOKENS, warm_registry=False)  # type: ignore[arg-type]
    with TestClient(create_app(settings)) as client:
        yield client


def test_production_model_for_agents(model_client: TestClient, registered: Registered) -> None:
    response = model_client.get("/api/models/production", headers=AGENT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == "1"
    assert body["alias"] == "production"
    assert body["class_names"] == CLASS_NAMES
    assert body["imgsz"] == 640
    assert body["sha256"] == hashlib.sha256(registered.onnx_bytes).hexdigest()
    assert (body["uncertainty_low"], body["uncertainty_high"]) == (
        UNCERTAINTY_LOW,
        UNCERTAINTY_HIGH,
    )

    onnx = model_client.get(body["onnx_url"], headers=AGENT)
    assert onnx.status_code == 200
    assert onnx.content == registered.onnx_bytes
    assert onnx.headers["x-model-version"] == "1"
    assert onnx.headers["x-model-sha256"] == body["sha256"]


def test_production_model_carries_the_loops_uncertainty_band(
    registered: Registered, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The band agents apply is the loop host's one setting, EDGELOOP_UNCERTAINTY_LOW/HIGH."""
    monkeypatch.setenv("EDGELOOP_DATA_DIR", str(registered.settings.data_dir))
    monkeypatch.setenv("EDGELOOP_UNCERTAINTY_LOW", "0.3")
    monkeypatch.setenv("EDGELOOP_UNCERTAINTY_HIGH", "0.85")
    get_settings.cache_clear()
    settings = ApiSettings(tokens=TOKENS, warm_registry=False)  # type: ignore[arg-type]
    with TestClient(create_app(settings)) as client:
        response = client.get("/api/models/production", headers=AGENT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == "1"
    assert (body["uncertainty_low"], body["uncertainty_high"]) == (0.3, 0.85)


def test_an_unchanged_production_model_is_an_empty_304(model_client: TestClient) -> None:
    first = model_client.get("/api/models/production", headers=AGENT)
    etag = first.headers["etag"]
    again = model_client.get("/api/models/production", headers={**AGENT, "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    stale = model_client.get(
        "/api/models/production", headers={**AGENT, "If-None-Match": '"not-the-current-one"'}
    )
    assert stale.status_code == 200 and stale.json() == first.json()
    anything = model_client.get("/api/models/production", headers={**AGENT, "If-None-Match": "*"})
    assert anything.status_code == 304


def test_onnx_download_needs_the_agent_role(model_client: TestClient) -> None:
    response = model_client.get("/api/models/production/onnx", headers=LABELER)
    assert response.status_code == 403
    assert "'agent'" in response.json()["detail"]


def test_onnx_of_a_moved_alias_is_409(model_client: TestClient) -> None:
    response = model_client.get("/api/models/production/onnx?version=7", headers=AGENT)
    assert response.status_code == 409
    assert "production is now version 1" in response.json()["detail"]


def test_model_status(model_client: TestClient) -> None:
    body = model_client.get("/api/model-status", headers=LABELER).json()
    assert body["production"]["version"] == "1"
    assert body["production"]["metrics"] == {"mAP50": 0.61}
    assert body["staging"]["version"] == "2"
    assert body["staging"]["metrics"] == {"mAP50": 0.66}
    assert [(d["alias"], d["version"]) for d in body["recent_deployments"]] == [
        ("staging", "2"),
        ("production", "1"),
    ]


def test_health_names_the_production_version(model_client: TestClient) -> None:
    assert (
        model_client.get("/api/health", headers=LABELER).json()["production_model_version"] == "1"
    )


def test_labels_use_the_production_class_names(model_client: TestClient) -> None:
    ingest(model_client, queued_frame("cam-9:1", 1))
    item = model_client.get("/api/labeling-queue/next", headers=LABELER).json()
    assert item["class_names"] == CLASS_NAMES
    response = model_client.post(
        f"/api/labeling-queue/{item['item_id']}/label",
        json={"boxes": [{"bbox_xyxy": [100, 50, 180, 230], "class_name": "Sitting"}]},
        headers=LABELER,
    )
    assert response.status_code == 201, response.text
    assert response.json()["boxes"][0]["class_id"] == 2


def test_no_production_model_is_503_saying_edgeloop_init(registered: Registered) -> None:
    other = registered.settings.model_copy(update={"model_name": "never-registered"})
    settings = ApiSettings(loop=other, tokens=TOKENS, warm_registry=False)  # type: ignore[arg-type]
    with TestClient(create_app(settings)) as client:
        response = client.get("/api/models/production", headers=AGENT)
        assert response.status_code == 503
        assert "edgeloop init" in response.json()["detail"]
        assert client.get("/api/models/production/onnx", headers=AGENT).status_code == 503
        status = client.get("/api/model-status", headers=AGENT).json()
        assert status["production"] is None
