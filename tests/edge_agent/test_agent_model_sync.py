"""Model sync against an httpx.MockTransport: download on sha change, cache when unreachable, bad sha."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest

from edge_agent.detectors import ModelError
from edge_agent.model_sync import CURRENT_FILE, ModelSync, resolve_model
from edge_agent.shipper import make_client


class FakeModelApi:
    def __init__(self, onnx: bytes, version: str = "3") -> None:
        self.mode = "up"
        self.onnx = onnx
        self.announced_sha: str | None = None
        self.version = version
        self.downloads = 0
        self.auth: list[str | None] = []
        self.move_to: tuple[bytes, str] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.auth.append(request.headers.get("Authorization"))
        if self.mode == "down":
            raise httpx.ConnectError("connection refused", request=request)
        if self.mode == "none":
            return httpx.Response(404, json={"detail": "no production model"})
        if self.mode == "503":
            return httpx.Response(503, json={"detail": "No production model registered"})
        if self.mode == "401":
            return httpx.Response(401, json={"detail": "bad token"})
        if request.url.path == "/api/models/production":
            return httpx.Response(
                200,
                json={
                    "name": "edgeloop-detector",
                    "version": self.version,
                    "sha256": self.announced_sha or hashlib.sha256(self.onnx).hexdigest(),
                    "onnx_url": f"/api/models/edgeloop-detector/{self.version}/model.onnx",
                    "class_names": ["Normal", "Fall"],
                    "imgsz": 640,
                },
            )
        if request.url.path == f"/api/models/edgeloop-detector/{self.version}/model.onnx":
            if self.move_to is not None:  # production moves just as the agent downloads
                self.onnx, self.version, self.move_to = self.move_to[0], self.move_to[1], None
                return httpx.Response(409, json={"detail": "production is now another version"})
            self.downloads += 1
            return httpx.Response(200, content=self.onnx)
        return httpx.Response(404)


def make_sync(tmp_path: Path, api: FakeModelApi) -> ModelSync:
    client = make_client("http://api.test", "tok", 5.0, httpx.MockTransport(api))
    return ModelSync(client, tmp_path / "models")


def test_downloads_when_the_cache_differs_then_reuses_it(tmp_path: Path) -> None:
    api = FakeModelApi(b"model-v3" * 1000)
    model = make_sync(tmp_path, api).sync()
    assert model is not None and model.origin == "api" and model.version == "3"
    assert model.path.read_bytes() == api.onnx
    assert model.class_names == ["Normal", "Fall"] and model.imgsz == 640
    record = json.loads((tmp_path / "models" / CURRENT_FILE).read_text())
    assert record["model"]["version"] == "3" and record["file"] == model.path.name
    assert set(api.auth) == {"Bearer tok"}
    # Same sha on the next start: no second download.
    again = make_sync(tmp_path, api).sync()
    assert again is not None and again.path == model.path and api.downloads == 1
    # A new production model: downloaded, made current, the old file removed.
    api.onnx, api.version = b"model-v4" * 1000, "4"
    newer = make_sync(tmp_path, api).sync()
    assert newer is not None and newer.version == "4" and api.downloads == 2
    assert not model.path.exists()
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == sorted(
        [CURRENT_FILE, newer.path.name]
    )


def test_unreachable_api_uses_the_cache(tmp_path: Path, caplog) -> None:
    api = FakeModelApi(b"cached" * 100)
    cached = make_sync(tmp_path, api).sync()
    api.mode = "down"
    model = make_sync(tmp_path, api).sync()
    assert model is not None and model.origin == "cache" and model.path == cached.path  # type: ignore[union-attr]
    assert "using the cached model version 3" in caplog.text


def test_corrupt_cache_is_not_used(tmp_path: Path) -> None:
    api = FakeModelApi(b"cached" * 100)
    cached = make_sync(tmp_path, api).sync()
    assert cached is not None
    cached.path.write_bytes(b"bit rot")
    api.mode = "down"
    assert make_sync(tmp_path, api).sync() is None


def test_no_api_no_cache_no_local_model_is_a_clear_error(tmp_path: Path) -> None:
    api = FakeModelApi(b"x")
    api.mode = "down"
    with pytest.raises(ModelError, match="--model PATH"):
        resolve_model(make_sync(tmp_path, api), None)


@pytest.mark.parametrize("mode", ["none", "503"])
def test_no_production_model_falls_back_to_the_local_file(tmp_path: Path, mode: str) -> None:
    api = FakeModelApi(b"x")
    api.mode = mode
    local = tmp_path / "local.onnx"
    local.write_bytes(b"local model")
    model = resolve_model(make_sync(tmp_path, api), local)
    assert model.origin == "local" and model.path == local
    assert model.version == "local-" + hashlib.sha256(b"local model").hexdigest()[:12]


def test_bad_sha_is_an_error_and_leaves_nothing_behind(tmp_path: Path) -> None:
    api = FakeModelApi(b"tampered")
    api.announced_sha = "0" * 64
    with pytest.raises(ModelError, match="sha256"):
        make_sync(tmp_path, api).sync()
    assert [p.name for p in (tmp_path / "models").iterdir()] == []


def test_bad_sha_keeps_a_good_cached_model(tmp_path: Path) -> None:
    api = FakeModelApi(b"good" * 10)
    good = make_sync(tmp_path, api).sync()
    api.onnx, api.version, api.announced_sha = b"tampered", "4", "1" * 64
    model = make_sync(tmp_path, api).sync()
    assert good is not None and model is not None
    assert (model.path, model.version, model.origin) == (good.path, "3", "cache")


def test_refused_token_is_an_error(tmp_path: Path) -> None:
    api = FakeModelApi(b"x")
    api.mode = "401"
    with pytest.raises(ModelError, match="TOKEN"):
        make_sync(tmp_path, api).sync()


def test_check_for_update_downloads_only_a_new_sha(tmp_path: Path) -> None:
    api = FakeModelApi(b"v3")
    sync = make_sync(tmp_path, api)
    current = sync.sync()
    assert current is not None
    assert sync.check_for_update(current.sha256) is None
    api.onnx, api.version = b"v4", "4"
    update = sync.check_for_update(current.sha256)
    assert update is not None and update.version == "4" and update.path.read_bytes() == b"v4"
    api.mode = "down"
    assert sync.check_for_update(update.sha256) is None


def test_production_moving_during_the_download_fetches_the_new_one(tmp_path: Path) -> None:
    api = FakeModelApi(b"v3")
    api.move_to = (b"v4", "4")
    model = make_sync(tmp_path, api).sync()
    assert model is not None and model.version == "4" and model.path.read_bytes() == b"v4"
