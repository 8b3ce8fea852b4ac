"""Frame JPEGs through the object store, the same on the data folder and on S3-compatible
storage (a real ``moto_server``): stored create-exclusive at ingest, served back to the
labeling page, and, when the store is down, a clear 503 with nothing of the batch stored,
then recovery without a restart (issue 16)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import (
    ADMIN,
    AGENT,
    LABELER,
    batch,
    client_on,
    detection,
    frame,
    jpeg_bytes,
)
from servers import free_port, require_server, s3_server

from api.jpegs import jpeg_key
from edgeloop.settings import LoopSettings
from edgeloop.store import Store

BUCKET = "edgeloop-frames"


def _use_endpoint(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "edgeloop-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "edgeloop-test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(params=["data folder", "s3"])
def loop(
    request: pytest.FixtureRequest,
    isolated_data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[LoopSettings]:
    if request.param == "data folder":
        yield LoopSettings(data_dir=isolated_data_dir)
        return
    require_server("s3")
    with s3_server(tmp_path / "moto") as endpoint:
        endpoint.client().create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
        _use_endpoint(monkeypatch, endpoint.port)
        yield LoopSettings(data_dir=isolated_data_dir, object_store_url=f"s3://{BUCKET}/site-a")


def _frame(key: str, index: int, *, seed: int | None = None) -> dict[str, object]:
    """A frame with an uncertain detection (so it is queued) and a real JPEG."""
    return frame(
        key,
        index=index,
        detections=[detection(100, 50, 180, 230, 0.55)],
        jpeg=jpeg_bytes(seed=index if seed is None else seed),
    )


def _stored_keys(loop: LoopSettings) -> list[str]:
    with Store(loop.duckdb_path).connect() as con:
        return [r[0] for r in con.execute("SELECT frame_key FROM frames ORDER BY 1").fetchall()]


def test_a_jpeg_is_stored_once_and_served_back(loop: LoopSettings) -> None:
    jpeg = jpeg_bytes(seed=1)
    with client_on(loop) as client:
        ack = client.post("/api/ingest", json=batch(_frame("cam-1:1", 1, seed=1)), headers=AGENT)
        assert ack.status_code == 200, ack.text
        assert ack.json()["accepted"] == 1
        served = client.get("/api/frames/cam-1:1.jpg", headers=LABELER)
        assert served.status_code == 200 and served.content == jpeg
        # The same key with another JPEG is a conflict; the stored JPEG is unchanged.
        other = client.post("/api/ingest", json=batch(_frame("cam-1:1", 1, seed=2)), headers=AGENT)
        assert other.status_code == 200 and other.json()["conflicts"] == 1
        assert client.get("/api/frames/cam-1:1.jpg", headers=LABELER).content == jpeg
    assert loop.objects().get(jpeg_key("cam-1", "cam-1:1")) == jpeg
    assert list(loop.objects().keys("frames/")) == [jpeg_key("cam-1", "cam-1:1")]


def test_an_object_store_outage_is_a_503_and_recovers_without_a_restart(
    isolated_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_server("s3")
    port = free_port()
    _use_endpoint(monkeypatch, port)
    loop = LoopSettings(data_dir=isolated_data_dir, object_store_url=f"s3://{BUCKET}/site-b")
    with client_on(loop) as client:
        with s3_server(tmp_path / "moto-1", port=port) as endpoint:
            endpoint.client().create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
            first = client.post("/api/ingest", json=batch(_frame("cam-1:1", 1)), headers=AGENT)
            assert first.status_code == 200, first.text

        # The endpoint is down: the batch is refused as a whole, with a reason, not a 500.
        down = client.post("/api/ingest", json=batch(_frame("cam-1:2", 2)), headers=AGENT)
        assert down.status_code == 503, down.text
        assert "could not be stored" in down.json()["detail"]
        assert _stored_keys(loop) == ["cam-1:1"]
        assert client.get("/api/frames/cam-1:1.jpg", headers=LABELER).status_code == 503

        # Back (moto restarts empty): the same API process stores the batch sent again.
        with s3_server(tmp_path / "moto-2", port=port) as endpoint:
            endpoint.client().create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
            again = client.post("/api/ingest", json=batch(_frame("cam-1:2", 2)), headers=AGENT)
            assert again.status_code == 200, again.text
            assert again.json()["accepted"] == 1
            assert client.get("/api/frames/cam-1:2.jpg", headers=LABELER).status_code == 200
    assert _stored_keys(loop) == ["cam-1:1", "cam-1:2"]


def test_a_drift_report_is_served_from_the_object_store_and_nothing_outside_it(
    loop: LoopSettings,
) -> None:
    """Reports are object keys under ``reports/``: a replica serves one another process
    wrote; a path that climbs out of ``reports/`` is a 404, never a file of the host."""
    html = b"<html><body>drift share 0.5</body></html>"
    loop.objects().put("reports/drift/cam-1/20260301T120000Z.html", html)
    (loop.data_dir / "api-tokens.json").parent.mkdir(parents=True, exist_ok=True)
    (loop.data_dir / "api-tokens.json").write_text("{}")
    with client_on(loop) as client:
        served = client.get("/reports/drift/cam-1/20260301T120000Z.html", headers=ADMIN)
        assert served.status_code == 200 and served.content == html
        assert client.get("/reports/drift/cam-1/absent.html", headers=ADMIN).status_code == 404
        for hostile in ("/reports/../api-tokens.json", "/reports/%2e%2e/api-tokens.json"):
            assert client.get(hostile, headers=ADMIN).status_code == 404
