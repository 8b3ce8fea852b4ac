"""Two API replicas behind nginx, scaled out as a site would run them: tables in
PostgreSQL, frame JPEGs in S3-compatible object storage (moto), each replica with its own
empty data folder (nothing on a shared disk), one address for agents and labelers.

Real servers from packages, started here (``tests/servers.py``); real uvicorn processes.
Counts, not impressions: 20 labelers get 20 different items and every image opens through
either replica; 20 labels posted at once on one item give one 201 and nineteen 409s; a
frame key sent to both replicas at once is stored once; a replica killed under load loses
no acknowledged frame and doubles none.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import LoadBalancer, Postgres, nginx_server, require_server, s3_server

sys.path.insert(0, str(Path(__file__).parents[1] / "api"))
from api_support import batch, queued_frame

from edgeloop.cli.services import Service, start_api
from edgeloop.settings import LoopSettings
from edgeloop.store import frames, queue
from edgeloop.store.postgres import PostgresStore
from edgeloop.tokens import create_token

pytestmark = pytest.mark.integration

LABELERS = 20
BUCKET = "edgeloop-site"


@dataclass
class Site:
    """The scaled-out site: the balancer, the replicas, the tokens and the database."""

    balancer: LoadBalancer
    replicas: list[Service]
    tokens: dict[str, str]
    database_url: str
    store: PostgresStore  # the test's own view of the database

    def headers(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, postgres: Postgres) -> Iterator[Site]:
    for server in ("s3", "nginx"):
        require_server(server)
    import psycopg

    root = tmp_path_factory.mktemp("site")
    database = "edgeloop_site"
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {database}".encode())
    tokens_file = root / "config" / "tokens.json"
    tokens = {
        name: create_token(tokens_file, name=name, role=role)  # type: ignore[arg-type]
        for name, role in [("agent", "agent"), ("admin", "admin")]
        + [(f"labeler-{i}", "labeler") for i in range(LABELERS)]
    }
    with contextlib.ExitStack() as stack:
        s3 = stack.enter_context(s3_server(root / "s3"))
        s3.client().create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
        aws = s3.environment()
        replicas = []
        for i in range(2):
            settings = LoopSettings(
                data_dir=root / f"replica-{i}",  # its own, empty
                database_url=postgres.url_for(database),
                object_store_url=f"s3://{BUCKET}/site",
            )
            replicas.append(
                stack.enter_context(
                    start_api(
                        settings,
                        extra_env=aws
                        | {
                            "EDGELOOP_API_TOKENS_FILE": str(tokens_file),
                            "EDGELOOP_API_WARM_REGISTRY": "false",
                        },
                    )
                )
            )
        ports = [int(r.url.rsplit(":", 1)[1]) for r in replicas]
        balancer = stack.enter_context(nginx_server(root, ports))
        store = PostgresStore(postgres.url_for(database), pool_max_size=2)
        stack.callback(store.close)
        yield Site(balancer, replicas, tokens, postgres.url_for(database), store)


def _post_ingest(url: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """POST a batch the way the agent does: retry on a refused connection, a 502/503 and a
    timeout until it is acknowledged (the batch stays in its spool meanwhile)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            response = httpx.post(f"{url}/api/ingest", json=body, headers=headers, timeout=30)
            if response.status_code == 200:
                return dict(response.json())
            assert response.status_code in (502, 503, 504), response.text
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "no acknowledgement within 60 s"
        time.sleep(0.2)


def test_twenty_labelers_get_twenty_items_and_every_image_through_either_replica(
    site: Site,
) -> None:
    url = site.balancer.url
    frames_sent = [queued_frame(f"cam-1:lab{i:03d}", index=i) for i in range(30)]
    for chunk in range(0, 30, 10):
        ack = _post_ingest(url, batch(*frames_sent[chunk : chunk + 10]), site.headers("agent"))
        assert ack["accepted"] == 10

    def claim(name: str) -> dict[str, Any]:
        response = httpx.get(
            f"{url}/api/labeling-queue/next", headers=site.headers(name), timeout=60
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    with ThreadPoolExecutor(LABELERS) as pool:
        items = list(pool.map(claim, [f"labeler-{i}" for i in range(LABELERS)]))
    assert len({item["item_id"] for item in items}) == LABELERS
    for item in items:  # round robin: half of these go to the replica that did not store it
        image = httpx.get(
            f"{url}/api/frames/{item['frame_key']}.jpg", headers=site.headers("admin"), timeout=60
        )
        assert image.status_code == 200 and image.content[:2] == b"\xff\xd8"


def test_twenty_label_posts_on_one_item_give_one_201_and_nineteen_409(site: Site) -> None:
    url = site.balancer.url
    _post_ingest(
        url,
        batch(queued_frame("cam-2:contested", index=500, camera_id="cam-2")),
        site.headers("agent"),
    )
    with site.store.connect() as con:
        item = queue.item_for_frame(con=con, frame_key="cam-2:contested")
    assert item is not None
    body = {"boxes": [{"bbox_xyxy": [100, 50, 180, 230], "class_name": "Normal"}]}
    barrier = threading.Barrier(LABELERS)

    def label(name: str) -> int:
        barrier.wait()
        return httpx.post(
            f"{url}/api/labeling-queue/{item['item_id']}/label",
            json=body,
            headers=site.headers(name),
            timeout=30,
        ).status_code

    with ThreadPoolExecutor(LABELERS) as pool:
        codes = list(pool.map(label, [f"labeler-{i}" for i in range(LABELERS)]))
    assert sorted(codes) == [201] + [409] * (LABELERS - 1)


def test_one_frame_key_sent_to_both_replicas_at_once_is_stored_once(site: Site) -> None:
    barrier = threading.Barrier(2)

    def send(i: int) -> dict[str, Any]:
        record = queued_frame("cam-3:twice", index=700 + i, camera_id="cam-3")
        barrier.wait()
        return _post_ingest(site.replicas[i].url, batch(record), site.headers("agent"))

    with ThreadPoolExecutor(2) as pool:
        acks = list(pool.map(send, [0, 1]))
    assert sorted(a["accepted"] for a in acks) == [0, 1]
    # The loser sent the key with another JPEG: counted as a conflict, not a duplicate.
    assert sum(a["conflicts"] for a in acks) == 1
    with site.store.connect() as con:
        assert frames.get_frame(con=con, frame_key="cam-3:twice") is not None
        assert con.execute(
            "SELECT count(*) FROM frames WHERE frame_key = 'cam-3:twice'"
        ).fetchone() == (1,)


def _load(site: Site, camera: str, fault: Any, senders: int = 4, batches_each: int = 12) -> int:
    """``senders`` agents each send ``batches_each`` batches of 5 new frames through the
    balancer, retrying as their spool does; ``fault()`` runs once a third is acknowledged.
    Returns the frames sent; asserts every batch was acknowledged."""
    per_batch = 5
    acked: list[dict[str, Any]] = []
    progress = threading.Semaphore(0)

    def agent(s: int) -> None:
        for b in range(batches_each):
            records = [
                queued_frame(
                    f"{camera}:{s}-{b}-{f}",
                    index=hash((camera, s, b, f)) % 10**6,
                    camera_id=camera,
                )
                for f in range(per_batch)
            ]
            body = batch(*records, agent_id=f"agent-{s}")
            acked.append(_post_ingest(site.balancer.url, body, site.headers("agent")))
            progress.release()

    with ThreadPoolExecutor(senders) as pool:
        running = [pool.submit(agent, s) for s in range(senders)]
        for _ in range(senders * batches_each // 3):
            assert progress.acquire(timeout=60)
        fault()
        for future in running:
            future.result(timeout=180)
    total = senders * batches_each * per_batch
    assert len(acked) == senders * batches_each
    assert sum(a["accepted"] + a["duplicates"] for a in acked) == total
    return total


def _stored(site: Site, camera: str) -> tuple[int, int]:
    """``(frames, distinct frame keys)`` of ``camera``; checks on the way that what both
    replicas kept summed at ingest (the confidence histogram, the per-minute rollups)
    counts every stored frame and detection once."""
    with site.store.connect() as con:

        def count(sql: str) -> int:
            row = con.execute(sql, [camera]).fetchone()
            assert row is not None
            return int(row[0] or 0)

        frames_n = count("SELECT count(*) FROM frames WHERE camera_id = ?")
        keys = count("SELECT count(DISTINCT frame_key) FROM frames WHERE camera_id = ?")
        detections = count("SELECT count(*) FROM prediction_logs WHERE camera_id = ?")
        summed = {
            "confidence_bins": count(
                "SELECT sum(detections) FROM confidence_bins WHERE camera_id = ?"
            ),
            "detection_minutes": count(
                "SELECT sum(detections) FROM detection_minutes WHERE camera_id = ?"
            ),
        }
        minutes = count("SELECT sum(frames) FROM frame_minutes WHERE camera_id = ?")
    assert detections > 0 and summed == dict.fromkeys(summed, detections)
    assert minutes == frames_n
    return frames_n, keys


def test_postgres_restarted_during_ingest_loses_and_doubles_nothing(
    site: Site, postgres: Postgres
) -> None:
    total = _load(site, "cam-restart", lambda: postgres.restart(down_s=3))
    assert _stored(site, "cam-restart") == (total, total)  # 0 lost, 0 doubled


def test_a_replica_killed_under_load_loses_and_doubles_nothing(site: Site) -> None:
    victim = site.replicas[0].process

    def kill() -> None:
        os.killpg(victim.pid, signal.SIGKILL)  # mid-load, no goodbye
        victim.wait(10)

    total = _load(site, "cam-load", kill)
    assert _stored(site, "cam-load") == (total, total)  # 0 lost, 0 doubled
    assert httpx.get(f"{site.balancer.url}/api/health").status_code == 200  # the survivor
