"""The grid review's audit source at fleet scale: what the hash sample costs a grid page.

A SIMULATED fleet (``bench/fleetdata.py``: 1,000,000 detections over 125,000 frames, 3
cameras) in a DuckDB file, and with ``--postgres`` copied into PostgreSQL (Debian's server
on loopback, ``bench/pgfleet.py``). JPEGs are marked stored as agents send them: frames with
an uncertain detection and frames in the audit sample (``EDGELOOP_AUDIT_SHARE``, 0.02).

What it measures, in one run on the same machine, store calls in-process (p50 / p95 over
``--rounds`` pages of each camera):
  * the audit grid page: ``labels.review_candidates`` with ``audit_share`` (confident
    detections of sampled frames, least confident first, 48 crops) plus
    ``verdicts.audit_frames`` (the sample's frames with no detection);
  * its baseline: the grid page of the same confident detections without the sample
    (``review_candidates`` at ``min_confidence`` = the band's upper edge), what a reviewer
    of confident detections read before;
  * the console's review panel (``api.review_stats.review_stats``, 7 days).

Usage: ``uv run --frozen python bench/audit_grid.py [--detections 1000000] [--postgres]``
Target (issue 18, set here): an audit grid page p95 <= 150 ms, the dataset browser's page
target (issue 19), on each backend.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from api_reads import pct, simulated_fleet, verdict  # noqa: E402
from pgfleet import copy_fleet  # noqa: E402
from servers import postgres_server, remove_tree  # noqa: E402

from api.review_stats import review_stats  # noqa: E402
from api.settings import ApiSettings  # noqa: E402
from edgeloop.audit import AUDIT_SHARE, audit_sample_sql  # noqa: E402
from edgeloop.settings import LoopSettings  # noqa: E402
from edgeloop.store import AnyStore, Connection, Store, labels, verdicts  # noqa: E402

PAGE = 48
TARGET_MS = 150.0
CONFIDENT_AT = 0.7
CAMERAS = ("sim-cam-1", "sim-cam-2", "sim-cam-3")


def mark_jpegs(db: Path) -> int:
    """Frames agents send with a JPEG: an uncertain detection, or in the audit sample."""
    sample, params = audit_sample_sql("frame_key", AUDIT_SHARE)
    store = Store(db)
    with store.connect() as con:
        con.execute(
            f"""
            UPDATE frames SET jpeg_path = 'frames/' || camera_id || '/' || frame_key || '.jpg'
            WHERE {sample} OR frame_key IN (SELECT frame_key FROM prediction_logs WHERE uncertain)
            """,
            params,
        )
        marked = con.execute("SELECT count(*) FROM frames WHERE jpeg_path IS NOT NULL").fetchall()
    store.close()
    return int(marked[0][0])


def timed(samples: list[float], call: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = call()
    samples.append(time.perf_counter() - start)
    return result


def measure(store: AnyStore, settings: ApiSettings, rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each kind. The pages share one open connection (the API keeps
    its connection open between requests, ``EDGELOOP_API_STORE_LINGER_S``); the panel opens
    its own, as its route does."""
    times: dict[str, list[float]] = {"audit": [], "plain": [], "panel": []}
    now = datetime.now(UTC)

    def page(con: Connection, camera: str, share: float | None) -> int:
        crops = labels.review_candidates(
            con=con,
            class_name=None,
            camera_id=camera,
            min_confidence=CONFIDENT_AT,
            labeler="bench",
            now=now,
            limit=PAGE,
            audit_share=share,
        )
        frames = (
            verdicts.audit_frames(
                con=con, share=share, camera_id=camera, labeler="bench", now=now, limit=PAGE
            )
            if share is not None
            else []
        )
        return len(crops) + len(frames)

    with store.connect() as con:
        for camera in CAMERAS:  # warm-up
            page(con, camera, AUDIT_SHARE)
            page(con, camera, None)
        shown = [page(con, c, AUDIT_SHARE) for c in CAMERAS]
        print(f"audit page tiles per camera: {shown} (crops + frames with no detection)")
        for _ in range(rounds):
            for camera in CAMERAS:
                timed(times["audit"], lambda c=camera: page(con, c, AUDIT_SHARE))
                timed(times["plain"], lambda c=camera: page(con, c, None))
    review_stats(store, settings, window="7d")  # warm-up
    for _ in range(rounds):
        timed(times["panel"], lambda: review_stats(store, settings, window="7d"))
    return times


def report(backend: str, times: dict[str, list[float]]) -> float:
    audit95, plain95 = pct(times["audit"], 95), pct(times["plain"], 95)
    print(
        f"{backend}: audit grid page p50 {pct(times['audit'], 50):.1f} ms, p95 {audit95:.1f} ms; "
        f"baseline (confident detections, no sample) p50 {pct(times['plain'], 50):.1f} ms, "
        f"p95 {plain95:.1f} ms; ratio {audit95 / plain95:.2f}; review panel (7 d) p95 "
        f"{pct(times['panel'], 95):.1f} ms"
    )
    return audit95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detections", type=int, default=1_000_000)
    parser.add_argument("--frames", type=int, default=125_000)
    parser.add_argument("--rounds", type=int, default=10, help="pages per camera timed")
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    args = parser.parse_args()
    results: dict[str, float] = {}
    root = Path(tempfile.mkdtemp(prefix="edgeloop-bench-audit-"))
    try:
        data = root / "data"
        data.mkdir()
        db = data / "edgeloop.duckdb"
        simulated_fleet(db, args)
        print(f"frames with a JPEG (uncertain or sampled at {AUDIT_SHARE}): {mark_jpegs(db):,}")
        loop = LoopSettings(data_dir=data)
        settings = ApiSettings(loop=loop, warm_registry=False)
        results["duckdb"] = report("duckdb", measure(loop.store(), settings, args.rounds))
        if args.postgres:
            with postgres_server(root / "servers") as pg:
                copy_fleet(db, pg, "edgeloop")
                networked = LoopSettings(
                    data_dir=root / "networked", database_url=pg.url_for("edgeloop")
                )
                settings = ApiSettings(loop=networked, warm_registry=False)
                results["postgres"] = report(
                    "postgres", measure(networked.store(), settings, args.rounds)
                )
    finally:
        remove_tree(root)
    failed = [
        f"{b} audit page p95 {p95:.1f} ms > {TARGET_MS:.0f} ms"
        for b, p95 in results.items()
        if p95 > TARGET_MS
    ]
    figures = "; ".join(f"{b}: p95 {p95:.1f} ms" for b, p95 in results.items())
    verdict(
        f"audit grid page p95 <= {TARGET_MS:.0f} ms at {args.detections:,} SIMULATED detections "
        f"({figures})",
        failed,
    )


if __name__ == "__main__":
    main()
