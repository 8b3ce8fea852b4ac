"""``/api/health`` answers at once while another process holds the DuckDB file: liveness
without a token, 503 ``degraded`` with the reason with one — real uvicorn, a real second
process holding the file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import httpx
import pytest
from api_support import LABELER, LiveServer

from edgeloop.settings import LoopSettings
from edgeloop.store import SCHEMA_VERSION

pytestmark = pytest.mark.backends

ANSWER_LIMIT_S = 2.0
"""Generous bound on a health answer while the file is locked (the store's retry deadline,
which the old health route waited out, is 60 s)."""

HOLD = textwrap.dedent(
    """
    import sys, time
    import duckdb
    deadline = time.monotonic() + 30
    while True:
        try:
            con = duckdb.connect(sys.argv[1])
            break
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    con.execute("SELECT count(*) FROM frames").fetchall()
    print("held", flush=True)
    time.sleep(120)
    """
)


@pytest.fixture
def file_holder(
    live_server: LiveServer, loop_settings: LoopSettings
) -> Iterator[subprocess.Popen[str]]:
    """A second process that opens the API's DuckDB file and keeps it open (after one
    health call with a token, so MLflow's first-use import is not what gets measured)."""
    if loop_settings.database_url:
        pytest.skip("a file another process holds: the embedded store's case only")
    warm = httpx.get(f"{live_server.base_url}/api/health", headers=LABELER, timeout=60)
    assert warm.status_code == 200, warm.text
    time.sleep(0.5)  # the API closes the file once idle
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(live_server.data_dir / "edgeloop.duckdb")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait(timeout=10)


def timed_get(
    http: httpx.Client, headers: dict[str, str] | None = None
) -> tuple[httpx.Response, float]:
    t0 = time.perf_counter()
    response = http.get("/api/health", headers=headers)
    return response, time.perf_counter() - t0


def test_health_answers_at_once_while_another_process_holds_duckdb(
    live_server: LiveServer, file_holder: subprocess.Popen[str]
) -> None:
    with httpx.Client(base_url=live_server.base_url, timeout=90) as http:
        liveness, liveness_s = timed_get(http)
        full, full_s = timed_get(http, LABELER)
    print(
        f"\nhealth while DuckDB is held by pid {file_holder.pid}: "
        f"liveness {liveness_s * 1000:.1f} ms, with token {full_s * 1000:.1f} ms"
    )
    assert liveness.status_code == 200
    assert liveness.json()["scope"] == "liveness"
    assert liveness.json()["counts"] is None
    assert liveness_s < ANSWER_LIMIT_S
    assert full.status_code == 503
    body = full.json()
    assert (body["status"], body["scope"], body["store"]) == ("degraded", "full", False)
    assert "locked by another process" in body["errors"][0]
    assert full_s < ANSWER_LIMIT_S


def test_health_with_a_token_recovers_when_the_file_is_free(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.base_url, timeout=30) as http:
        first, first_s = timed_get(http, LABELER)  # imports MLflow's client on first use
        response, seconds = timed_get(http, LABELER)
    print(
        f"\nhealth with token, file free: first {first_s * 1000:.1f} ms, "
        f"then {seconds * 1000:.1f} ms"
    )
    assert first.status_code == 200
    assert response.status_code == 200
    body = response.json()
    assert body["scope"] == "full"
    assert body["schema_version"] == SCHEMA_VERSION
    assert body["counts"] == {
        "frames": 0,
        "detections": 0,
        "queue_pending": 0,
        "reviewed_labels": 0,
    }
