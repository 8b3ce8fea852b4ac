"""``edgeloop token create|list|revoke``: one hashed token per person, seen by a running API
at once; ``edgeloop init`` prints no secret."""

from __future__ import annotations

import json
import logging
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from support import REPO_ROOT
from typer.testing import CliRunner

from edgeloop.cli import app
from edgeloop.cli.services import free_port, start_api
from edgeloop.settings import LoopSettings
from edgeloop.tokens import (
    TokenNameTakenError,
    create_token,
    read_tokens,
    revoke_token,
    token_digest,
)

SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{40,}")
"""What a printed token looks like: ``secrets.token_urlsafe(32)`` is 43 URL-safe characters."""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def tokens_path(isolated_data_dir: Path) -> Path:
    """Where the CLI and the API look by default: ``<data_dir>/api-tokens.json``."""
    return isolated_data_dir / "api-tokens.json"


def printed_token(output: str) -> str:
    """The one token ``token create`` printed (its own line)."""
    found = [line for line in output.splitlines() if SECRET_PATTERN.fullmatch(line.strip())]
    assert len(found) == 1, output
    return found[0].strip()


def test_create_prints_the_token_once_and_stores_only_its_sha256(
    runner: CliRunner, tokens_path: Path
) -> None:
    result = runner.invoke(app, ["token", "create", "alice", "--role", "labeler"])
    assert result.exit_code == 0, result.output
    token = printed_token(result.output)
    assert len(token) == 43
    raw = tokens_path.read_bytes()
    assert token.encode() not in raw
    assert token_digest(token).encode() in raw
    assert stat.S_IMODE(tokens_path.stat().st_mode) == 0o600
    [entry] = read_tokens(tokens_path)
    assert (entry.name, entry.role, entry.cameras) == ("alice", "labeler", None)
    assert entry.created_at is not None and entry.created_at.tzinfo is not None


def test_list_shows_names_roles_cameras_and_never_a_secret(
    runner: CliRunner, tokens_path: Path
) -> None:
    secrets = [
        printed_token(runner.invoke(app, ["token", "create", "alice", "--role", "labeler"]).output),
        printed_token(
            runner.invoke(
                app,
                [
                    "token",
                    "create",
                    "gate-host",
                    "--role",
                    "agent",
                    "--camera",
                    "gate-1",
                    "--camera",
                    "gate-2",
                ],
            ).output
        ),
    ]
    table = runner.invoke(app, ["token", "list"])
    assert table.exit_code == 0, table.output
    assert "alice" in table.output and "gate-host" in table.output
    assert "gate-1, gate-2" in table.output
    listed = runner.invoke(app, ["token", "list", "--json"])
    rows = json.loads(listed.output)
    assert [(r["name"], r["role"], r["cameras"]) for r in rows] == [
        ("alice", "labeler", None),
        ("gate-host", "agent", ["gate-1", "gate-2"]),
    ]
    for output in (table.output, listed.output):
        assert not any(secret in output for secret in secrets)
        assert not SECRET_PATTERN.search(output.replace(str(tokens_path), ""))


def test_a_duplicate_name_is_refused_clearly(runner: CliRunner, tokens_path: Path) -> None:
    first = runner.invoke(app, ["token", "create", "alice", "--role", "labeler"])
    again = runner.invoke(app, ["token", "create", "alice", "--role", "admin"])
    assert again.exit_code == 1
    assert "a token named 'alice' exists already" in again.output
    assert "edgeloop token revoke alice" in again.output
    [entry] = read_tokens(tokens_path)
    assert entry.role == "labeler"
    assert entry.sha256 == token_digest(printed_token(first.output))


def test_cameras_scope_agent_tokens_only(runner: CliRunner, tokens_path: Path) -> None:
    refused = runner.invoke(app, ["token", "create", "bob", "--role", "labeler", "--camera", "c"])
    assert refused.exit_code == 1
    assert "agent tokens only" in refused.output
    bad_role = runner.invoke(app, ["token", "create", "bob", "--role", "root"])
    assert bad_role.exit_code == 1
    assert "--role must be one of agent, labeler, admin" in bad_role.output
    bad_name = runner.invoke(app, ["token", "create", "bob smith", "--role", "labeler"])
    assert bad_name.exit_code == 1
    assert "is not valid" in bad_name.output
    assert not tokens_path.exists() or read_tokens(tokens_path) == []


def test_revoke_removes_the_entry_and_unknown_names_say_so(
    runner: CliRunner, tokens_path: Path
) -> None:
    create_token(tokens_path, name="alice", role="labeler")
    create_token(tokens_path, name="bob", role="labeler")
    result = runner.invoke(app, ["token", "revoke", "alice"])
    assert result.exit_code == 0, result.output
    assert [e.name for e in read_tokens(tokens_path)] == ["bob"]
    missing = runner.invoke(app, ["token", "revoke", "alice"])
    assert missing.exit_code == 1
    # rich wraps the message at the terminal's width, where the tokens file's path ends.
    said = " ".join(missing.output.split())
    assert "no token named 'alice'" in said
    assert "(tokens: bob)" in said


def test_create_with_replace_revokes_the_old_secret(tokens_path: Path) -> None:
    old = create_token(tokens_path, name="demo-agent", role="agent")
    with pytest.raises(TokenNameTakenError):
        create_token(tokens_path, name="demo-agent", role="agent")
    new = create_token(tokens_path, name="demo-agent", role="agent", replace=True)
    digests = {e.sha256 for e in read_tokens(tokens_path)}
    assert digests == {token_digest(new)}
    assert token_digest(old) not in digests


def test_a_legacy_plaintext_file_is_hashed_on_first_read(
    tokens_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    legacy = {
        "Leg4cyAgentTokenXXXXXXXXXXXXXXXXXXXXXXXXXXX": {"role": "agent", "name": "agent"},
        "Leg4cyLabelerTokenXXXXXXXXXXXXXXXXXXXXXXXXX": {"role": "labeler", "name": "alice"},
        "Leg4cyLabelerToken2XXXXXXXXXXXXXXXXXXXXXXXX": {"role": "labeler", "name": "alice"},
    }
    tokens_path.parent.mkdir(parents=True, exist_ok=True)
    tokens_path.write_text(json.dumps(legacy))
    with caplog.at_level(logging.WARNING, logger="edgeloop.tokens"):
        entries = read_tokens(tokens_path)
    assert [(e.name, e.role) for e in entries] == [
        ("agent", "agent"),
        ("alice", "labeler"),
        ("alice-2", "labeler"),
    ]
    assert [e.sha256 for e in entries] == [token_digest(t) for t in legacy]
    raw = tokens_path.read_text()
    assert not any(token in raw for token in legacy)
    assert json.loads(raw)["format"] == 2
    assert stat.S_IMODE(tokens_path.stat().st_mode) == 0o600
    assert "held 3 plaintext token(s): rewritten with their sha256 only" in caplog.text
    # Read again: already migrated, nothing logged, same entries.
    caplog.clear()
    assert read_tokens(tokens_path) == entries
    assert "plaintext" not in caplog.text


CREATE_MANY = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from edgeloop.tokens import create_token
    path, prefix, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    for i in range(n):
        create_token(path, name=f"{prefix}-{i}", role="agent")
    """
)


def test_concurrent_creates_in_two_processes_lose_nothing(tokens_path: Path) -> None:
    n = 25
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CREATE_MANY, str(tokens_path), prefix, str(n)], cwd=REPO_ROOT
        )
        for prefix in ("left", "right")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    names = {e.name for e in read_tokens(tokens_path)}
    assert names == {f"{side}-{i}" for side in ("left", "right") for i in range(n)}


def test_a_running_api_sees_create_and_revoke_without_restart(
    loop_settings: LoopSettings,
    tokens_path: Path,
    runner: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Real uvicorn reading the real tokens file (no EDGELOOP_API_TOKENS)."""
    monkeypatch.delenv("EDGELOOP_API_TOKENS", raising=False)
    monkeypatch.delenv("EDGELOOP_API_TOKENS_FILE", raising=False)
    create_token(tokens_path, name="ops", role="admin")
    with start_api(
        loop_settings,
        extra_env={
            "EDGELOOP_API_WARM_REGISTRY": "false",
            "EDGELOOP_API_DAGSTER_URL": f"http://127.0.0.1:{free_port()}",
        },
    ) as service:
        token = printed_token(
            runner.invoke(app, ["token", "create", "alice", "--role", "labeler"]).output
        )
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=service.url, timeout=30) as http:
            assert http.get("/api/labeling-queue", headers=headers).status_code == 200
            assert runner.invoke(app, ["token", "revoke", "alice"]).exit_code == 0
            refused = http.get("/api/labeling-queue", headers=headers)
            assert refused.status_code == 401
            assert refused.json()["detail"] == "invalid bearer token"
    assert revoke_token(tokens_path, "ops").role == "admin"


@pytest.mark.integration
def test_init_prints_no_secret_and_hashes_a_legacy_file(
    runner: CliRunner, loop_settings: LoopSettings, tokens_path: Path, seed_pt: Path
) -> None:
    """The real ``edgeloop init`` (seed registration included) on a data dir whose tokens
    file is still the plaintext one the old ``init`` wrote."""
    loop_settings.seed_dir.mkdir(parents=True)
    shutil.copyfile(seed_pt, loop_settings.seed_dir / "best.pt")
    legacy_secret = "Leg4cyLabelerTokenXXXXXXXXXXXXXXXXXXXXXXXXX"
    tokens_path.write_text(json.dumps({legacy_secret: {"role": "labeler", "name": "labeler"}}))
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 0, result.output
    assert legacy_secret not in result.output
    printed = SECRET_PATTERN.findall(result.output.replace(str(loop_settings.data_dir), ""))
    assert printed == [], result.output
    assert "edgeloop token create" in result.output
    assert legacy_secret not in tokens_path.read_text()
    assert [e.name for e in read_tokens(tokens_path)] == ["labeler"]
