"""Labeling and console reads at fleet scale: p50/p95 through the API vs the same store
calls in-process, and how soon another process gets the DuckDB file meanwhile.

What it measures, in one run on the same machine:
  * a SIMULATED fleet (``bench/fleetdata.py``: 1,000,000 detections over 125,000 frames,
    3 cameras, ~100,000 queue items by default) in a fresh DuckDB file;
  * api: real uvicorn on loopback (a subprocess) with the loop host's settings; one
    labeler doing what the page does, item after item: ``GET /api/labeling-queue/next``,
    ``GET /api/labeling-queue/{id}`` (the detail the page re-reads), ``POST .../label``;
    and the console reads ``GET /api/inspection-logs`` (page 1) and ``GET /api/metrics``.
    The production model's class names come from the MLflow registry of ``--registry-dir``
    (``make init`` registers the seed detector there), as on a real loop host;
  * baseline: the same store calls in-process on one open connection to the same file
    (what the routes cost without HTTP, auth, pydantic and the connection's open/close);
  * sharing: while the labeler runs, a second process opens the file through
    ``edgeloop.store.Store`` (as a Dagster asset does) and reports how long it waited.

Usage: ``uv run --frozen python bench/api_reads.py [--detections 1000000] [--requests 200]``
Targets (issue 9): next, detail and label p95 <= 20 ms; inspection logs page 1 and
metrics p95 <= 50 ms; another process gets the file within 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fleetdata import load_fleet

from edgeloop.annotations import ReviewedBox
from edgeloop.cli.services import start_api
from edgeloop.settings import LoopSettings
from edgeloop.store import Store, frames, labels, queue
from edgeloop.store.frames import DetectionFilter

REPO = Path(__file__).resolve().parents[1]

LABELER = "bench-labeler-token"
TARGETS_MS = {"next": 20.0, "detail": 20.0, "label": 20.0, "inspection": 50.0, "metrics": 50.0}
_WAIT_FOR_FILE = """
import sys, time
from edgeloop.store import Store
start = time.perf_counter()
with Store(sys.argv[1]).connect() as con:
    con.execute("SELECT count(*) FROM frames").fetchall()
print(f"{time.perf_counter() - start:.3f}")
"""


def pct(samples: list[float], q: float) -> float:
    """The ``q``-th percentile of ``samples`` (seconds), in ms."""
    return float(np.percentile(np.asarray(samples) * 1000, q))


def _timed(samples: list[float], call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    start = time.perf_counter()
    result = call(*args, **kwargs)
    samples.append(time.perf_counter() - start)
    return result


def through_api(url: str, requests: int) -> dict[str, list[float]]:
    """One labeler through the API at ``url``, item after item: next, the item's detail,
    its label, then the inspection page and the metrics; seconds per request, by route."""
    times: dict[str, list[float]] = {k: [] for k in TARGETS_MS}
    headers = {"Authorization": f"Bearer {LABELER}"}
    box = {"bbox_xyxy": [10, 10, 100, 200], "class_name": "Normal"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        for _ in range(5):  # warm-up: imports, first queries
            http.get("/api/metrics")
            http.get("/api/inspection-logs")
        for _ in range(requests):
            item = _timed(times["next"], http.get, "/api/labeling-queue/next")
            assert item.status_code == 200, item.text
            item_id = item.json()["item_id"]
            detail = _timed(times["detail"], http.get, f"/api/labeling-queue/{item_id}")
            assert detail.status_code == 200, detail.text
            url = f"/api/labeling-queue/{item_id}/label"
            label = _timed(times["label"], http.post, url, json={"boxes": [box]})
            assert label.status_code == 201, label.text
            _timed(times["inspection"], http.get, "/api/inspection-logs")
            _timed(times["metrics"], http.get, "/api/metrics")
    return times


def _in_process(path: Path, requests: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in TARGETS_MS}
    store = Store(path)
    now = datetime.now(UTC)
    box = [ReviewedBox(bbox_xyxy=(10, 10, 100, 200), class_id=0, class_name="Normal")]
    with store.connect() as con:
        for i in range(requests):
            item = _timed(
                times["next"],
                queue.claim_next,
                con=con,
                camera_id=None,
                labeler="baseline",
                now=now,
                lease=timedelta(seconds=300),
            )
            key = item["frame_key"]
            start = time.perf_counter()
            queue.get_item(con=con, item_id=item["item_id"])
            frames.get_frame(con=con, frame_key=key)
            frames.frame_detections(con=con, frame_key=key)
            labels.latest_for_frame(con=con, frame_key=key)
            labels.since_last_training(con=con)
            times["detail"].append(time.perf_counter() - start)
            _timed(
                times["label"],
                labels.create,
                con=con,
                item_id=item["item_id"],
                frame_key=key,
                camera_id=item["camera_id"],
                boxes=box,
                labeler="baseline",
                labeled_at=now + timedelta(seconds=i),
            )
            _timed(
                times["inspection"],
                frames.list_detections,
                con=con,
                where=DetectionFilter(),
                limit=100,
                offset=0,
            )
            start = time.perf_counter()
            frames.camera_ingest(con=con, window_s=60, now=now)
            frames.confidence_histograms(con=con)
            times["metrics"].append(time.perf_counter() - start)
    return times


def reads_parser(doc: str) -> argparse.ArgumentParser:
    """The options both read benchmarks take: the SIMULATED fleet's size, the items labeled
    (per API run) and the data dir whose MLflow registry holds the production model."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--detections", type=int, default=1_000_000)
    parser.add_argument("--frames", type=int, default=125_000)
    parser.add_argument("--requests", type=int, default=200, help="items labeled per API run")
    parser.add_argument(
        "--registry-dir",
        type=Path,
        default=REPO / "data",
        help="a data dir whose MLflow registry holds the production model (make init)",
    )
    return parser


def simulated_fleet(path: Path, args: argparse.Namespace) -> dict[str, int]:
    """Write the SIMULATED fleet of ``args.detections`` over ``args.frames`` into the DuckDB
    file ``path`` (``fleetdata.load_fleet``), saying how long it took; its row counts."""
    started = time.perf_counter()
    counts = load_fleet(path, detections=args.detections, frames_n=args.frames)
    print(
        f"SIMULATED fleet in {time.perf_counter() - started:.0f} s: "
        + ", ".join(f"{v:,} {k}" for k, v in counts.items())
    )
    return counts


def verdict(summary: str, failed: list[str]) -> None:
    """Print the benchmark's last line (bench/README.md): ``TARGET met: <summary>``, or
    ``TARGET NOT met: <summary>: <each miss>``."""
    if failed:
        print(f"TARGET NOT met: {summary}: " + "; ".join(failed))
    else:
        print(f"TARGET met: {summary}")


def main() -> None:
    parser = reads_parser(__doc__)
    parser.add_argument(
        "--share-every",
        type=float,
        default=5.0,
        help="seconds between two opens of the file by another process (a Dagster asset)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="edgeloop-bench-reads-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        db = data / "edgeloop.duckdb"
        simulated_fleet(db, args)
        baseline_db = data / "baseline.duckdb"
        baseline_db.write_bytes(db.read_bytes())

        registry = LoopSettings(data_dir=args.registry_dir)
        settings = LoopSettings(data_dir=data)
        env = {
            "EDGELOOP_API_TOKENS": json.dumps({LABELER: "labeler"}),
            "EDGELOOP_API_PUSH_RETRAIN": "false",
            "MLFLOW_TRACKING_URI": registry.tracking_uri,
        }
        waited: list[float] = []
        with start_api(settings, extra_env=env) as api:
            stop = threading.Event()

            def other_process() -> None:  # a Dagster asset wanting the file, now and then
                while not stop.wait(args.share_every):
                    out = subprocess.run(
                        [sys.executable, "-c", _WAIT_FOR_FILE, str(db)],
                        capture_output=True,
                        text=True,
                        env={**os.environ, "PYTHONPATH": str(REPO)},
                    )
                    if out.returncode == 0:
                        waited.append(float(out.stdout.strip()))

            sharer = threading.Thread(target=other_process, daemon=True)
            sharer.start()
            api_times = through_api(api.url, args.requests)
            stop.set()
            sharer.join(60)
        base_times = _in_process(baseline_db, args.requests)

    print(f"\n{args.requests} labeled items; p50 / p95 in ms")
    print(f"{'route':<12}{'api p50':>9}{'api p95':>9}{'base p50':>10}{'base p95':>10}{'ratio':>8}")
    failed = []
    for name, target in TARGETS_MS.items():
        p50, p95 = pct(api_times[name], 50), pct(api_times[name], 95)
        b50, b95 = pct(base_times[name], 50), pct(base_times[name], 95)
        print(f"{name:<12}{p50:>9.1f}{p95:>9.1f}{b50:>10.1f}{b95:>10.1f}{p95 / b95:>7.1f}x")
        if p95 > target:
            failed.append(f"{name} p95 {p95:.1f} ms > {target:.0f} ms")
    worst_wait = max(waited) if waited else float("nan")
    print(
        f"another process opened the file {len(waited)} times during the run; "
        f"longest wait {worst_wait:.2f} s"
    )
    if not waited or worst_wait > 2.0:
        failed.append(f"another process waited {worst_wait:.2f} s (> 2 s)")
    summary = "next/detail/label p95 <= 20 ms, inspection/metrics p95 <= 50 ms, file shared <= 2 s"
    verdict(summary, failed)


if __name__ == "__main__":
    main()
