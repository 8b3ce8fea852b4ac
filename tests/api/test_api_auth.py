"""Bearer tokens and roles: who may read, ingest, label, fetch models and trigger retraining."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from api_support import ADMIN, AGENT, LABELER, batch, frame
from fastapi.testclient import TestClient

from api.auth import Principal, authenticate, load_principals
from api.main import create_app
from api.settings import ApiSettings
from edgeloop.settings import LoopSettings
from edgeloop.store import SCHEMA_VERSION, AnyStore
from edgeloop.tokens import create_token, ensure_tokens_file, revoke_token


def test_health_without_a_token_is_liveness_only(client: TestClient) -> None:
    response = client.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["scope"] == "liveness"
    assert body["counts"] is None  # nothing about the data to an anonymous caller
    assert body["store"] is None and body["store_backend"] is None and body["duckdb"] is None
    assert body["schema_version"] is None


@pytest.mark.backends
def test_health_with_a_token_shows_the_store(client: TestClient, store: AnyStore) -> None:
    body = client.get("/api/health", headers=LABELER).json()
    assert body["status"] == "ok"
    assert body["scope"] == "full"
    assert body["store"] is True and body["duckdb"] is True  # `duckdb`: the old name
    assert body["store_backend"] == store.dialect
    assert body["schema_version"] == SCHEMA_VERSION
    assert body["production_model_version"] is None
    assert body["counts"]["frames"] == 0


def test_health_with_an_unknown_token_is_401(client: TestClient) -> None:
    response = client.get("/api/health", headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code == 401
    assert response.json()["detail"] == "invalid bearer token"


@pytest.mark.parametrize(
    "path", ["/api/metrics", "/api/labeling-queue", "/api/inspection-logs", "/metrics"]
)
def test_reads_need_a_token(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "missing bearer token" in response.json()["detail"]


def test_unknown_token_is_401(client: TestClient) -> None:
    response = client.get("/api/metrics", headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["detail"] == "invalid bearer token"


def test_any_role_may_read(client: TestClient) -> None:
    for headers in (AGENT, LABELER, ADMIN):
        assert client.get("/api/metrics", headers=headers).status_code == 200


def test_labeler_may_not_ingest(client: TestClient) -> None:
    response = client.post("/api/ingest", json=batch(frame("cam-1:0")), headers=LABELER)
    assert response.status_code == 403
    assert "needs the role 'agent'" in response.json()["detail"]
    assert "'labeler'" in response.json()["detail"]


def test_agent_may_not_label_or_trigger(client: TestClient) -> None:
    response = client.post(
        "/api/labeling-queue/1/label", json={"boxes": [], "no_object": True}, headers=AGENT
    )
    assert response.status_code == 403
    assert "needs the role 'labeler'" in response.json()["detail"]
    response = client.post("/api/retraining/trigger", headers=LABELER)
    assert response.status_code == 403
    assert "needs the role 'admin'" in response.json()["detail"]


def test_admin_may_ingest(client: TestClient) -> None:
    response = client.post("/api/ingest", json=batch(frame("cam-1:0")), headers=ADMIN)
    assert response.status_code == 200


def test_token_cookie_works_for_get_only(client: TestClient) -> None:
    client.cookies.set("edgeloop_token", "labeler-token")
    try:
        assert client.get("/api/metrics").status_code == 200
        # A cookie never authenticates a write (no cross-site request can label).
        response = client.post("/api/labeling-queue/1/skip")
        assert response.status_code == 401
    finally:
        client.cookies.clear()


def test_ensure_tokens_file_creates_an_empty_private_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "api-tokens.json"
    assert ensure_tokens_file(path) == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"format": 2, "tokens": []}
    create_token(path, name="alice", role="labeler")
    # A second call keeps the tokens.
    assert [e.name for e in ensure_tokens_file(path)] == ["alice"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (json.dumps({"t0k": {"role": "root"}}), "needs a role among"),
        (json.dumps({"t0k": {"role": "agent", "name": 7}}), "must be a string"),
        (json.dumps(["t0k"]), "must be a JSON object"),
        ('{"t0k": ', "is not valid JSON"),
        (json.dumps({"format": 2, "tokens": [{"name": "a", "role": "agent"}]}), "sha256 must be"),
        (json.dumps({"format": 2, "tokens": [{"name": "a", "role": "x"}]}), "needs a role among"),
        (json.dumps({"format": 9, "tokens": []}), "unknown format 9"),
        (
            json.dumps(
                {"format": 2, "tokens": [{"name": "a", "role": "agent", "sha256": "0" * 64}] * 2}
            ),
            "token names used twice: a",
        ),
    ],
)
def test_malformed_tokens_file_is_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "api-tokens.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        ensure_tokens_file(path)
    assert path.read_text() == content  # never rewritten


def test_principal_camera_scope() -> None:
    anywhere = Principal(name="fleet", role="agent")
    gate = Principal(name="gate-host", role="agent", cameras=frozenset({"gate-1"}))
    assert anywhere.may_send("gate-1") and anywhere.may_send("dock-2")
    assert gate.may_send("gate-1")
    assert not gate.may_send("dock-2")


def test_app_reads_a_legacy_file_hashes_it_and_names_the_labeler(
    loop_settings: LoopSettings,
) -> None:
    tokens_file = loop_settings.data_dir / "api-tokens.json"
    tokens_file.parent.mkdir(parents=True, exist_ok=True)
    tokens_file.write_text(json.dumps({"s3cret": {"role": "labeler", "name": "alice"}}))
    settings = ApiSettings(loop=loop_settings, warm_registry=False)
    principals = load_principals(settings)
    assert [(p.name, p.role) for p in principals.values()] == [("alice", "labeler")]
    assert "s3cret" not in tokens_file.read_text()
    with TestClient(create_app(settings)) as client:
        assert (
            client.get("/api/metrics", headers={"Authorization": "Bearer s3cret"}).status_code
            == 200
        )


def test_agent_token_cameras_reach_the_principal(loop_settings: LoopSettings) -> None:
    path = loop_settings.data_dir / "api-tokens.json"
    token = create_token(path, name="gate-host", role="agent", cameras=["gate-1", "gate-2"])
    principals = load_principals(ApiSettings(loop=loop_settings, warm_registry=False))
    principal = authenticate(principals, token)
    assert principal == Principal(
        name="gate-host", role="agent", cameras=frozenset({"gate-1", "gate-2"})
    )
    assert authenticate(principals, token + "x") is None


def test_app_creates_an_empty_tokens_file_and_sees_new_tokens_without_restart(
    loop_settings: LoopSettings,
) -> None:
    settings = ApiSettings(loop=loop_settings, warm_registry=False)
    path = loop_settings.data_dir / "api-tokens.json"
    with TestClient(create_app(settings)) as client:
        assert json.loads(path.read_text()) == {"format": 2, "tokens": []}
        token = create_token(path, name="alice", role="labeler")
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/metrics", headers=headers).status_code == 200
        revoke_token(path, "alice")
        assert client.get("/api/metrics", headers=headers).status_code == 401


def test_a_broken_tokens_file_refuses_every_token_until_fixed(
    loop_settings: LoopSettings,
) -> None:
    path = loop_settings.data_dir / "api-tokens.json"
    token = create_token(path, name="alice", role="labeler")
    principals = load_principals(ApiSettings(loop=loop_settings, warm_registry=False))
    assert authenticate(principals, token) is not None
    good = path.read_text()
    path.write_text(good[:-10])  # a hand edit gone wrong
    assert authenticate(principals, token) is None
    path.write_text(good)
    assert authenticate(principals, token) is not None


def test_openapi_documents_401_and_403_where_a_token_is_needed(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    secured = {
        (path, method): operation["responses"]
        for path, operations in paths.items()
        for method, operation in operations.items()
        if operation.get("security")
    }
    assert ("/api/ingest", "post") in secured
    assert ("/metrics", "get") in secured
    # /api/health takes a token optionally (liveness without one): 401 for a bad one, no 403.
    health = secured.pop(("/api/health", "get"))
    assert {"401", "503"} <= health.keys()
    for (path, method), responses in secured.items():
        assert {"401", "403"} <= responses.keys(), f"{method.upper()} {path}"
    assert "WWW-Authenticate" in secured[("/api/ingest", "post")]["401"]["headers"]
