"""Labeling and console reads on PostgreSQL at fleet scale: p50/p95 through the API on the
networked store against the same requests to the API on the embedded DuckDB file.

What it measures, in one run on the same machine:
  * a SIMULATED fleet (``bench/fleetdata.py``: 1,000,000 detections over 125,000 frames,
    3 cameras, ~118,000 pending queue items by default) written into a DuckDB file, and
    copied into a fresh PostgreSQL 15 database (``tests/servers.py``: Debian's package, on
    loopback) whose schema the store created (``bench/pgfleet.py``: migrate, bulk load in
    write order, sequences moved on, ``VACUUM ANALYZE``);
  * postgres: the real API (uvicorn, a subprocess) with ``EDGELOOP_DATABASE_URL`` naming
    that database and an empty data folder of its own; one labeler doing what the page
    does, item after item (``api_reads.through_api``: ``GET /api/labeling-queue/next``, the
    item's detail, ``POST .../label``, then ``GET /api/inspection-logs`` page 1 and
    ``GET /api/metrics``), then every console panel (``console.time_panels``: a load is the
    page shell, its fragment and its data route);
  * baseline: the same requests, in the same order, to the API on the DuckDB file the
    fleet was written into (today's embedded store), started after the PostgreSQL one
    stopped; both start from the same rows.

The production model's class names come from the MLflow registry of ``--registry-dir``
(``make init`` registers the seed detector there); without one the API falls back to the
class names seen in the detections (a scan of every detection, on each detail and label).

Usage: ``uv run --frozen python bench/api_reads_postgres.py [--detections 1000000]
[--requests 200] [--iterations 20]``
Targets (issue 16): on PostgreSQL at 1,000,000 detections, labeling next, detail and
label p95 <= 30 ms; every console panel (the inspection logs' page 1 and /api/metrics
with them) p95 <= 300 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from api_reads import LABELER, pct, reads_parser, simulated_fleet, through_api, verdict  # noqa: E402
from console import time_panels  # noqa: E402
from pgfleet import copy_fleet  # noqa: E402
from servers import postgres_server, remove_tree  # noqa: E402

from edgeloop.cli.services import start_api  # noqa: E402
from edgeloop.settings import LoopSettings  # noqa: E402

ADMIN = "bench-admin-token"
LABELING_TARGET_MS = 30.0
PANEL_TARGET_MS = 300.0
LABELING = ("next", "detail", "label")


def _registry_env(registry_dir: Path) -> dict[str, str]:
    """``MLFLOW_TRACKING_URI`` of the registry in ``registry_dir``, or nothing when it has
    none (the API then reads its own, empty one)."""
    registry = LoopSettings(data_dir=registry_dir)
    if registry.mlflow_db is not None and not registry.mlflow_db.exists():
        print(
            f"no MLflow registry in {registry_dir} (make init): class names come from the "
            "detections"
        )
        return {}
    return {"MLFLOW_TRACKING_URI": registry.tracking_uri}


def _measure(
    settings: LoopSettings, env: dict[str, str], args: argparse.Namespace, failures: dict[str, str]
) -> dict[str, list[float]]:
    """The labeler's and the console's request times (s, by route and panel) through a
    real API on ``settings``' store; a console panel whose request fails is left out and
    named in ``failures``."""
    with (
        start_api(settings, extra_env=env) as api,
        httpx.Client(
            base_url=api.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60
        ) as admin,
    ):
        try:
            labeling = through_api(api.url, args.requests)
            panels = time_panels(admin, args.iterations, failures=failures)
        except Exception:
            print(f"the API on {settings.store()!r} failed; the end of its log:\n{api.log_tail()}")
            raise
    return {**labeling, **{f"console {k}": [ms / 1000 for ms in v] for k, v in panels.items()}}


def main() -> None:
    parser = reads_parser(__doc__)
    parser.add_argument("--iterations", type=int, default=20, help="loads of each panel")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="edgeloop-bench-reads-pg-"))
    try:
        embedded = root / "embedded"
        embedded.mkdir()
        fleet = embedded / "edgeloop.duckdb"
        counts = simulated_fleet(fleet, args)
        env = {
            "EDGELOOP_API_TOKENS": json.dumps({LABELER: "labeler", ADMIN: "admin"}),
            "EDGELOOP_API_PUSH_RETRAIN": "false",
            **_registry_env(args.registry_dir),
        }
        with postgres_server(root / "servers") as pg:
            started = time.perf_counter()
            copied = copy_fleet(fleet, pg, "edgeloop")
            print(
                f"copied into PostgreSQL in {time.perf_counter() - started:.0f} s: "
                + ", ".join(f"{v:,} {k}" for k, v in copied.items())
            )
            load = os.getloadavg()[0]
            networked = LoopSettings(
                data_dir=root / "networked", database_url=pg.url_for("edgeloop")
            )
            failures: dict[str, dict[str, str]] = {"postgres": {}, "duckdb": {}}
            times = {"postgres": _measure(networked, env, args, failures["postgres"])}
            embedded_settings = LoopSettings(data_dir=embedded)
            times["duckdb"] = _measure(embedded_settings, env, args, failures["duckdb"])
    finally:
        remove_tree(root)

    print(f"\ncpu cores: {os.cpu_count()}, 1-min load average before the API runs: {load:.1f}")
    print(
        f"{args.requests} labeled items, then {args.iterations} loads of each console panel "
        "(shell + fragment + data); p50 / p95 in ms"
    )
    print(
        f"{'route':<22}{'pg p50':>9}{'pg p95':>9}{'file p50':>10}{'file p95':>10}"
        f"{'pg/file':>9}{'target':>8}"
    )
    failed = []
    worst = {"labeling": ("", 0.0), "panels": ("", 0.0)}
    pg_failed = [f"console {panel}" for panel in failures["postgres"]]
    names = list(dict.fromkeys([*times["duckdb"], *times["postgres"], *pg_failed]))
    for name in names:
        target = LABELING_TARGET_MS if name in LABELING else PANEL_TARGET_MS
        pg_times, file_times = times["postgres"].get(name), times["duckdb"].get(name)
        panel = name.removeprefix("console ")
        if pg_times is None:
            print(f"{name:<22}  failed on PostgreSQL: {failures['postgres'][panel]}")
            failed.append(f"{name} failed ({failures['postgres'][panel]})")
            continue
        p50, p95 = pct(pg_times, 50), pct(pg_times, 95)
        if file_times is None:
            base, ratio = f"{'failed':>20}", f"{'':>9}"
        else:
            b50, b95 = pct(file_times, 50), pct(file_times, 95)
            base, ratio = f"{b50:>10.1f}{b95:>10.1f}", f"{p95 / b95:>8.1f}x"
        print(f"{name:<22}{p50:>9.1f}{p95:>9.1f}{base}{ratio}{target:>8.0f}")
        kind = "labeling" if name in LABELING else "panels"
        if p95 > worst[kind][1]:
            worst[kind] = (name, p95)
        if p95 > target:
            failed.append(f"{name} p95 {p95:.1f} ms > {target:.0f}")
    for panel, why in failures["duckdb"].items():
        print(f"console {panel}: failed on the DuckDB file too: {why}")
    summary = (
        f"on PostgreSQL, SIMULATED fleet of {counts['detections']:,} detections: "
        f"next/detail/label p95 <= {LABELING_TARGET_MS:.0f} ms (worst {worst['labeling'][0]} "
        f"{worst['labeling'][1]:.1f} ms), console panels p95 <= {PANEL_TARGET_MS:.0f} ms "
        f"(slowest {worst['panels'][0]} {worst['panels'][1]:.1f} ms)"
    )
    verdict(summary, failed)


if __name__ == "__main__":
    main()
