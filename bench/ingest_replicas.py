"""Ingest through two API replicas on PostgreSQL behind nginx: sustained detections/s from
several clients, against the same clients posting to one API on the embedded DuckDB file.

What it measures, in one run on the same machine:
  * networked: PostgreSQL 15 and nginx from Debian's packages (``tests/servers.py``, on
    loopback), a fresh database per round; two API replicas (real uvicorn, subprocesses),
    each with an empty data folder of its own and ``EDGELOOP_DATABASE_URL`` naming the
    database (the first to connect creates the schema), behind nginx (round robin,
    keep-alive); ``--clients`` clients POST ``--batches`` batches to the balancer in wire
    version 3, what agents send (``bench/ingest.py``'s batches: ``--frames`` frames x
    ``--detections`` detections, no JPEGs, so nothing goes to object storage), after
    4 warm-up batches (2 per replica); every detection is then checked stored, once;
  * baseline: the same clients and batches against one API on an empty DuckDB file (the
    embedded store), after the same 4 warm-up batches.
Rounds alternate (embedded, then networked) so that both see the machine's changing
load; the best of each counts. Also printed: CPU time per batch of the API processes and of
PostgreSQL's server processes (from /proc), which says where the cores went.

Usage: ``uv run --frozen python bench/ingest_replicas.py [--batches 32] [--clients 4]
[--rounds 2]``.
Target (issue 16): >= 20,000 detections/s sustained through the replicas on PostgreSQL;
the ratio to the embedded API in the same run is printed beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from ingest import (  # noqa: E402
    TOKEN,
    Run,
    body_detections,
    columnar_body,
    cpu_seconds,
    make_batch,
    post_all,
    wait_idle,
)
from servers import nginx_server, postgres_server, remove_tree  # noqa: E402

from edgeloop.cli.services import Service, start_api  # noqa: E402
from edgeloop.settings import LoopSettings  # noqa: E402

TARGET_PER_S = 20_000.0
REPLICAS = 2
WARM_UP_PER_API = 2


@dataclass(frozen=True)
class ReplicaRun(Run):
    """A run of ``bench/ingest.py``'s kind (``cpu_ms_per_batch``: the API processes'), with
    the PostgreSQL server's CPU time per batch (none on the embedded store)."""

    pg_cpu_ms: float | None = None


def _tree_cpu_seconds(pid: int) -> float:
    """CPU time of process ``pid``, of its children that ended, and of its living children
    (PostgreSQL's postmaster and its backends), s."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK") + cpu_seconds(pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                total += cpu_seconds(int(stat.parent.name))
    return total


def _stored(url: str) -> int:
    health = httpx.get(
        f"{url}/api/health", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    ).json()
    return int(health["counts"]["detections"])


def _timed_run(
    name: str,
    apis: list[Service],
    url: str,
    bodies: list[bytes],
    clients: int,
    postmaster: int | None = None,
) -> ReplicaRun:
    """Warm ``apis`` up through ``url`` (the balancer or the one API) with the first
    ``WARM_UP_PER_API * REPLICAS`` bodies, then post the others with ``clients`` clients;
    checks that every detection is stored once."""
    port = int(url.rsplit(":", 1)[1])
    warm = WARM_UP_PER_API * REPLICAS
    post_all(port, bodies[:warm], 1)
    for api in apis:
        wait_idle(api.process.pid)
    cpu0 = sum(cpu_seconds(api.process.pid) for api in apis)
    pg0 = _tree_cpu_seconds(postmaster) if postmaster else 0.0
    seconds, detections = post_all(port, bodies[warm:], clients)
    n = len(bodies) - warm
    api_cpu = (sum(cpu_seconds(api.process.pid) for api in apis) - cpu0) / n * 1000
    pg_cpu = (_tree_cpu_seconds(postmaster) - pg0) / n * 1000 if postmaster else None
    expected = sum(body_detections(b) for b in bodies)
    stored = _stored(url)
    if stored != expected:
        raise SystemExit(f"{name}: the store holds {stored} detections, expected {expected}")
    return ReplicaRun(name, seconds, detections, api_cpu, pg_cpu)


def _postmaster(data_dir: Path) -> int:
    return int((data_dir / "db" / "postmaster.pid").read_text().split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=32, help="timed batches per run")
    parser.add_argument("--frames", type=int, default=500, help="frames per batch")
    parser.add_argument("--detections", type=int, default=20, help="detections per frame")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of embedded + networked")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    warm = WARM_UP_PER_API * REPLICAS
    print(
        f"generating {warm + args.batches} batches of {args.frames} frames x "
        f"{args.detections} detections (wire version 3) ..."
    )
    bodies = [
        columnar_body(make_batch(rng, b, args.frames, args.detections), "3")
        for b in range(warm + args.batches)
    ]
    print(f"  MB per batch: {sum(len(b) for b in bodies) / len(bodies) / 1e6:.2f}")
    env = {"EDGELOOP_API_TOKENS": json.dumps({TOKEN: "agent"})}
    replica_env = env | {"EDGELOOP_API_WARM_REGISTRY": "false"}
    embedded_runs: list[ReplicaRun] = []
    networked_runs: list[ReplicaRun] = []
    root = Path(tempfile.mkdtemp(prefix="edgeloop-bench-replicas-"))
    try:
        with postgres_server(root / "servers") as pg:
            import psycopg

            postmaster = _postmaster(pg.data_dir)
            load = os.getloadavg()[0]
            for r in range(args.rounds):
                settings = LoopSettings(data_dir=root / f"embedded-{r}")
                with start_api(settings, extra_env=env) as api:
                    embedded_runs.append(
                        _timed_run(
                            "embedded API (DuckDB file)", [api], api.url, bodies, args.clients
                        )
                    )
                remove_tree(settings.data_dir)
                database = f"edgeloop_round{r}"
                with psycopg.connect(pg.url, autocommit=True) as admin:
                    admin.execute(f"CREATE DATABASE {database}".encode())
                with contextlib.ExitStack() as stack:
                    replicas = [
                        stack.enter_context(
                            start_api(
                                LoopSettings(
                                    data_dir=root / f"replica-{r}-{i}",
                                    database_url=pg.url_for(database),
                                ),
                                extra_env=replica_env,
                            )
                        )
                        for i in range(REPLICAS)
                    ]
                    ports = [int(api.url.rsplit(":", 1)[1]) for api in replicas]
                    balancer = stack.enter_context(nginx_server(root, ports))
                    networked_runs.append(
                        _timed_run(
                            f"{REPLICAS} replicas on PostgreSQL",
                            replicas,
                            balancer.url,
                            bodies,
                            args.clients,
                            postmaster,
                        )
                    )
    finally:
        remove_tree(root)

    embedded = max(embedded_runs, key=lambda run: run.rate)
    networked = max(networked_runs, key=lambda run: run.rate)
    per_batch = args.frames * args.detections
    print(f"cpu cores: {os.cpu_count()}, 1-min load average before the runs: {load:.1f}")
    print(
        f"{args.clients} clients, {args.batches} timed batches of {per_batch:,} detections "
        f"after {WARM_UP_PER_API * REPLICAS} warm-up batches; best of {args.rounds} alternating "
        "rounds, each on an empty store"
    )
    for run in (embedded, networked):
        pg_cpu = "" if run.pg_cpu_ms is None else f", PostgreSQL cpu {run.pg_cpu_ms:.0f} ms/batch"
        print(
            f"{run.name:<28} {run.rate:>10,.0f} detections/s  ({run.seconds:5.2f} s for "
            f"{run.detections:,}); API cpu {run.cpu_ms_per_batch:.0f} ms/batch{pg_cpu}"
        )
    print(
        "rounds, detections/s: embedded "
        + ", ".join(f"{run.rate:,.0f}" for run in embedded_runs)
        + f"; {REPLICAS} replicas on PostgreSQL "
        + ", ".join(f"{run.rate:,.0f}" for run in networked_runs)
    )
    ratio = networked.rate / embedded.rate
    print(f"ratio networked/embedded: {ratio:.2f}")
    print(
        f"TARGET {'met' if networked.rate >= TARGET_PER_S else 'NOT met'}: {REPLICAS} API "
        f"replicas on PostgreSQL behind nginx, {args.clients} clients, wire version 3: "
        f"{networked.rate:,.0f} detections/s (target >= {TARGET_PER_S:,.0f}); {ratio:.2f}x "
        f"one embedded API's {embedded.rate:,.0f}/s in the same run"
    )


if __name__ == "__main__":
    main()
