"""Model sync against an httpx.MockTransport: download on sha change, cache when unreachable,
bad sha, and the loop host's uncertainty band kept with the cached model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from edge_agent.detectors import ModelError
from edge_agent.model_sync import CURRENT_FILE, ModelSync, resolve_model
from edge_agent.shipper import make_client

if TYPE_CHECKING:  # the fixture's class lives in this folder's conftest.py
    from conftest import ModelApi


def make_sync(tmp_path: Path, api: ModelApi) -> ModelSync:
    client = make_client("http://api.test", "tok", 5.0, httpx.MockTransport(api))
    return ModelSync(client, tmp_path / "models")


def test_downloads_when_the_cache_differs_then_reuses_it(
    tmp_path: Path, model_api: type[ModelApi]
) -> None:
    api = model_api(b"model-v3" * 1000)
    model = make_sync(tmp_path, api).sync()
    assert model is not None and model.origin == "api" and model.version == "3"
    assert model.path.read_bytes() == api.onnx
    assert model.class_names == ["Normal", "Fall"] and model.imgsz == 640
    record = json.loads((tmp_path / "models" / CURRENT_FILE).read_text())
    assert record["model"]["version"] == "3" and record["file"] == model.path.name
    assert {r.headers["Authorization"] for r in api.requests} == {"Bearer tok"}
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


def test_unreachable_api_uses_the_cache(tmp_path: Path, model_api: type[ModelApi], caplog) -> None:
    api = model_api(b"cached" * 100)
    cached = make_sync(tmp_path, api).sync()
    api.mode = "down"
    model = make_sync(tmp_path, api).sync()
    assert model is not None and model.origin == "cache" and model.path == cached.path  # type: ignore[union-attr]
    assert "using the cached model version 3" in caplog.text


def test_corrupt_cache_is_not_used(tmp_path: Path, model_api: type[ModelApi]) -> None:
    api = model_api(b"cached" * 100)
    cached = make_sync(tmp_path, api).sync()
    assert cached is not None
    cached.path.write_bytes(b"bit rot")
    api.mode = "down"
    assert make_sync(tmp_path, api).sync() is None


def test_no_api_no_cache_no_local_model_is_a_clear_error(
    tmp_path: Path, model_api: type[ModelApi]
) -> None:
    api = model_api(b"x")
    api.mode = "down"
    with pytest.raises(ModelError, match="--model PATH"):
        resolve_model(make_sync(tmp_path, api), None)


@pytest.mark.parametrize("mode", ["404", "503"])
def test_no_production_model_falls_back_to_the_local_file(
    tmp_path: Path, model_api: type[ModelApi], mode: str
) -> None:
    api = model_api(b"x")
    api.mode = mode
    local = tmp_path / "local.onnx"
    local.write_bytes(b"local model")
    model = resolve_model(make_sync(tmp_path, api), local)
    assert model.origin == "local" and model.path == local
    assert model.version == "local-" + hashlib.sha256(b"local model").hexdigest()[:12]


def test_bad_sha_is_an_error_and_leaves_nothing_behind(
    tmp_path: Path, model_api: type[ModelApi]
) -> None:
    api = model_api(b"tampered")
    api.announced_sha = "0" * 64
    with pytest.raises(ModelError, match="sha256"):
        make_sync(tmp_path, api).sync()
    assert [p.name for p in (tmp_path / "models").iterdir()] == []


def test_bad_sha_keeps_a_good_cached_model(tmp_path: Path, model_api: type[ModelApi]) -> None:
    api = model_api(b"good" * 10)
    good = make_sync(tmp_path, api).sync()
    api.onnx, api.version, api.announced_sha = b"tampered", "4", "1" * 64
    model = make_sync(tmp_path, api).sync()
    assert good is not None and model is not None
    assert (model.path, model.version, model.origin) == (good.path, "3", "cache")


def test_refused_token_is_an_error(tmp_path: Path, model_api: type[ModelApi]) -> None:
    api = model_api(b"x")
    api.mode = "401"
    with pytest.raises(ModelError, match="TOKEN"):
        make_sync(tmp_path, api).sync()


def test_check_for_update_downloads_only_a_new_sha(
    tmp_path: Path, model_api: type[ModelApi]
) -> None:
    api = model_api(b"v3")
    sync = make_sync(tmp_path, api)
    current = sync.sync()
    assert current is not None
    assert sync.check_for_update(current) is None
    api.onnx, api.version = b"v4", "4"
    update = sync.check_for_update(current)
    assert update is not None and update.version == "4" and update.path.read_bytes() == b"v4"
    api.mode = "down"
    assert sync.check_for_update(update) is None


def test_update_checks_are_conditional_requests(tmp_path: Path, model_api: type[ModelApi]) -> None:
    api = model_api(b"v3")
    sync = make_sync(tmp_path, api)
    current = sync.sync()
    assert current is not None
    assert sync.check_for_update(current) is None
    checks = [r for r in api.requests if r.url.path == "/api/models/production"]
    assert "If-None-Match" not in checks[0].headers
    assert checks[-1].headers["If-None-Match"]  # the second check named the first answer
    api.onnx, api.version = b"v4", "4"  # a new model: the ETag no longer matches
    update = sync.check_for_update(current)
    assert update is not None and update.version == "4"
    assert api.downloads == 2


def test_the_loop_hosts_band_is_cached_with_the_model(
    tmp_path: Path, model_api: type[ModelApi]
) -> None:
    api = model_api(b"v3" * 100)
    api.band = (0.3, 0.6)
    model = make_sync(tmp_path, api).sync()
    assert model is not None and model.uncertainty_band == (0.3, 0.6)
    # The loop host changes its band, same model file: recorded on the next start, no download.
    api.band = (0.5, 0.8)
    model = make_sync(tmp_path, api).sync()
    assert model is not None and model.uncertainty_band == (0.5, 0.8) and api.downloads == 1
    # An offline restart keeps the loop host's latest band.
    api.mode = "down"
    cached = make_sync(tmp_path, api).sync()
    assert cached is not None and cached.origin == "cache"
    assert cached.uncertainty_band == (0.5, 0.8)


def test_a_new_band_alone_is_an_update(tmp_path: Path, model_api: type[ModelApi]) -> None:
    api = model_api(b"v3")
    sync = make_sync(tmp_path, api)
    current = sync.sync()
    assert current is not None and current.uncertainty_band == (0.4, 0.7)
    api.band = (0.2, 0.5)
    update = sync.check_for_update(current)
    assert update is not None and update.uncertainty_band == (0.2, 0.5)
    assert update.path == current.path and update.version == "3" and api.downloads == 1
    assert sync.check_for_update(update) is None


def test_an_api_that_sends_no_band_leaves_it_unknown(
    tmp_path: Path, model_api: type[ModelApi]
) -> None:
    api = model_api(b"v3")
    api.band = None  # an API from before the band was on the wire
    model = make_sync(tmp_path, api).sync()
    assert model is not None and model.uncertainty_band is None
    record = json.loads((tmp_path / "models" / CURRENT_FILE).read_text())
    assert "uncertainty_low" not in record["model"]  # not the wire model's default
    api.mode = "down"
    cached = make_sync(tmp_path, api).sync()
    assert cached is not None and cached.uncertainty_band is None


def test_production_moving_during_the_download_fetches_the_new_one(
    tmp_path: Path, model_api: type[ModelApi]
) -> None:
    api = model_api(b"v3")
    api.move_to = (b"v4", "4")
    model = make_sync(tmp_path, api).sync()
    assert model is not None and model.version == "4" and model.path.read_bytes() == b"v4"
