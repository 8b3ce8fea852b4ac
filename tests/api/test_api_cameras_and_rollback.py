"""Which model a camera ran (frames.model_version + alias history), and the admin rollback
route, against a real DuckDB file and a real MLflow store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from api_support import ADMIN, AGENT, LABELER, TOKENS
from fastapi.testclient import TestClient
from loopdata import T0, make_loop, register_model

from api.main import create_app
from api.settings import ApiSettings
from edgeloop.offline import configure_offline_environment
from edgeloop.registry import PRODUCTION, mlflow_client, move_alias
from edgeloop.store import Store


@pytest.fixture
def loop(tmp_path: Path):  # type: ignore[no-untyped-def]
    configure_offline_environment(tmp_path / "ultralytics")
    loop = make_loop(tmp_path)
    for version in ("1", "2"):
        work = tmp_path / f"v{version}"
        work.mkdir()
        (work / "best.pt").write_bytes(b"weights")
        (work / "best.onnx").write_bytes(b"onnx" + version.encode())
        register_model(
            loop.settings,
            pt_path=work / "best.pt",
            onnx_path=work / "best.onnx",
            class_names=["Normal", "Fall"],
            alias=PRODUCTION if version == "1" else None,
        )
    return loop


@pytest.fixture
def client(loop) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    settings = ApiSettings(loop=loop.settings, tokens=TOKENS, warm_registry=False)  # type: ignore[arg-type]
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _promote_v2(loop, *, actor: str = "test", metrics: dict | None = None) -> None:  # type: ignore[no-untyped-def]
    move_alias(
        mlflow_client(loop.settings),
        Store(loop.settings.duckdb_path),
        model_name=loop.settings.model_name,
        alias=PRODUCTION,
        version="2",
        actor=actor,
        reason="v2 won",
        metrics=metrics,
    )


def test_rollback_route_moves_production_back_and_is_recorded(client, loop) -> None:  # type: ignore[no-untyped-def]
    _promote_v2(loop)
    assert client.get("/api/models/production", headers=AGENT).json()["version"] == "2"
    body = {"reason": "false alarms at night"}
    assert (
        client.post("/api/models/production/rollback", json=body, headers=LABELER).status_code
        == 403
    )

    response = client.post("/api/models/production/rollback", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "model_name": loop.settings.model_name,
        "production_version": "1",
        "rolled_back_from": "2",
    }
    # What agents poll now names v1: they follow within one check interval.
    assert client.get("/api/models/production", headers=AGENT).json()["version"] == "1"
    with loop.store.connect() as con:
        last = con.execute(
            "SELECT version, action, actor, reason FROM model_deployments "
            "ORDER BY deployment_id DESC LIMIT 1"
        ).fetchone()
    assert last == ("1", "rollback", "admin", "false alarms at night")

    nothing_earlier = client.post("/api/models/production/rollback", json=body, headers=ADMIN)
    assert nothing_earlier.status_code == 404
    already = client.post(
        "/api/models/production/rollback", json={**body, "to_version": "1"}, headers=ADMIN
    )
    assert already.status_code == 409
    unknown = client.post(
        "/api/models/production/rollback", json={**body, "to_version": "9"}, headers=ADMIN
    )
    assert unknown.status_code == 404
    assert client.post("/api/models/production/rollback", json={}, headers=ADMIN).status_code == 422
    # A NaN in a body is a 422 naming it, not a 500 (JSON has no NaN to echo back).
    nan = client.post(
        "/api/models/production/rollback",
        content=b'{"reason": NaN}',
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert nan.status_code == 422 and nan.json()["detail"][0]["input"] == "nan"


def test_a_versions_evaluation_stays_with_it_through_rollback_and_promotion(client, loop) -> None:  # type: ignore[no-untyped-def]
    """Issue 20: after a rollback and a hand promotion of v2 again, /api/model-status still
    shows the held-out evaluation v2 was promoted with, not the hand move's
    ``promoted_from``."""
    evaluation = {
        "candidate": {"mAP50": 0.71, "mAP50-95": 0.42},
        "production": {"mAP50": 0.62, "mAP50-95": 0.22},
        "verdict": "promote",
    }
    _promote_v2(loop, actor="model_promotion", metrics=evaluation)
    body = {"reason": "checking the rollback"}
    assert (
        client.post("/api/models/production/rollback", json=body, headers=ADMIN).status_code == 200
    )
    promoted = client.post("/api/models/2/promote", json=body, headers=ADMIN)
    assert promoted.status_code == 200, promoted.text

    status = client.get("/api/model-status", headers=LABELER).json()
    assert status["production"]["version"] == "2"
    assert status["production"]["metrics"] == evaluation
    assert [d["action"] for d in status["recent_deployments"]][:3] == [
        "promote",
        "rollback",
        "promote",
    ]


def test_camera_model_history_answers_which_model_ran_when(client, loop) -> None:  # type: ignore[no-untyped-def]
    loop.add_frames("cam-a", count=3, start=T0, model_version="1")
    loop.add_frames("cam-a", count=2, start=T0 + timedelta(minutes=1), model_version="2")
    loop.add_frames("cam-a", count=4, start=T0 + timedelta(minutes=2), model_version="1")
    loop.add_frames("cam-b", count=1, start=T0, model_version="2")

    response = client.get("/api/cameras/cam-a/models", headers=LABELER)
    assert response.status_code == 200, response.text
    runs = [(r["model_version"], r["frames"]) for r in response.json()["history"]]
    assert runs == [("1", 3), ("2", 2), ("1", 4)]  # the rollback to v1 is a run of its own

    at = (T0 + timedelta(minutes=1, seconds=30)).replace(tzinfo=None).isoformat()
    answer = client.get("/api/cameras/cam-a/models", params={"at": at}, headers=LABELER).json()
    assert answer["version_at"] == "2"
    assert answer["production_at"] is None  # production was first set after these frames
    assert answer["last_frame_before_at"].startswith("2025-06-01T12:01:01")
    before = client.get(
        "/api/cameras/cam-a/models",
        params={"at": (T0 - timedelta(hours=1)).isoformat()},
        headers=LABELER,
    ).json()
    assert before["version_at"] is None
    assert client.get("/api/cameras/cam-z/models", headers=LABELER).status_code == 404

    # The same answer from the CLI.
    from typer.testing import CliRunner

    from edgeloop.cli import app

    result = CliRunner().invoke(app, ["model-history", "cam-a", "--at", at])
    assert result.exit_code == 0, result.output
    assert "camera ran v2" in result.output and "production was not set" in result.output
    missing = CliRunner().invoke(app, ["model-history", "cam-z"])
    assert missing.exit_code == 1 and "no frame from camera cam-z" in missing.output
