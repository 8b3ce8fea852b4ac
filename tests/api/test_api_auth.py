"""Bearer tokens and roles: who may read, ingest, label, fetch models and trigger retraining."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from api_support import ADMIN, AGENT, LABELER, batch, frame
from fastapi.testclient import TestClient

from api.auth import load_principals
from api.main import create_app
from api.settings import ApiSettings
from edgeloop.settings import LoopSettings
from edgeloop.store import SCHEMA_VERSION
from edgeloop.tokens import ensure_tokens_file, token_for_role


def test_health_is_public(client: TestClient) -> None:
    response = client.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["duckdb"] is True
    assert body["schema_version"] == SCHEMA_VERSION
    assert body["production_model_version"] is None


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


def test_ensure_tokens_file_creates_one_private_token_per_role(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "api-tokens.json"
    created = ensure_tokens_file(path)
    assert sorted(entry["role"] for entry in created.values()) == ["admin", "agent", "labeler"]
    assert all(len(token) >= 40 for token in created)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == created
    # A second call keeps the tokens.
    assert ensure_tokens_file(path) == created


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (json.dumps({"t0k": {"role": "root"}}), "needs a role among"),
        (json.dumps({"t0k": {"role": "agent", "name": 7}}), "must be a string"),
        (json.dumps(["t0k"]), "must be a JSON object"),
        ('{"t0k": ', "is not valid JSON"),
    ],
)
def test_malformed_tokens_file_is_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "api-tokens.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        ensure_tokens_file(path)
    assert path.read_text() == content  # never rewritten


def test_token_for_role_is_the_first_token_of_exactly_that_role(tmp_path: Path) -> None:
    tokens = {
        "a1": {"role": "admin"},
        "l1": {"role": "labeler", "name": "alice"},
        "l2": {"role": "labeler", "name": "bob"},
    }
    assert token_for_role(tokens, "labeler") == "l1"
    assert token_for_role(tokens, "agent") is None  # the admin token is not handed out
    created = ensure_tokens_file(tmp_path / "api-tokens.json")
    assert created[str(token_for_role(created, "agent"))]["role"] == "agent"


def test_app_reads_the_tokens_file_and_names_the_labeler(loop_settings: LoopSettings) -> None:
    tokens_file = loop_settings.data_dir / "api-tokens.json"
    tokens_file.parent.mkdir(parents=True, exist_ok=True)
    tokens_file.write_text(json.dumps({"s3cret": {"role": "labeler", "name": "alice"}}))
    settings = ApiSettings(loop=loop_settings, warm_registry=False)
    principals = load_principals(settings)
    assert [(p.name, p.role) for p in principals.values()] == [("alice", "labeler")]
    with TestClient(create_app(settings)) as client:
        assert (
            client.get("/api/metrics", headers={"Authorization": "Bearer s3cret"}).status_code
            == 200
        )


def test_app_creates_the_tokens_file_when_missing(loop_settings: LoopSettings) -> None:
    settings = ApiSettings(loop=loop_settings, warm_registry=False)
    create_app(settings)
    content = json.loads((loop_settings.data_dir / "api-tokens.json").read_text())
    assert len(content) == 3


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
    for (path, method), responses in secured.items():
        assert {"401", "403"} <= responses.keys(), f"{method.upper()} {path}"
    assert "WWW-Authenticate" in secured[("/api/ingest", "post")]["401"]["headers"]
    assert "401" not in paths["/api/health"]["get"]["responses"]  # public
