"""The dataset browser at fleet scale: batch fetch by id and filtered pages, through real
uvicorn on a DuckDB file holding a SIMULATED fleet (``bench/fleetdata.py``: 1,000,000
detections over 125,000 frames, 3 cameras), with tags on it.

What it measures, in one run on the same machine:
  * batch fetch: ``GET /api/browse/items`` with 100 ids (50 frame keys, 50 detection ids,
    drawn at random) per request, ``--requests`` requests; p50 / p95;
  * its baseline: the same 100 ids fetched one by one (``GET /api/browse/items?ids=<one>``,
    what a client without the batch route pays per 100 ids), for ``--baseline-batches``
    of the batches; and the store call in-process (``edgeloop.store.browse.fetch``);
  * browser pages: ``GET /console/browse/fragment`` (the HTML panel: one page of 48 crops
    with counts) under each filter combination of ``FILTERS``; p50 / p95 over all of them;
  * its baseline: the same pages' store call in-process (``edgeloop.store.browse.page``).

Tags: every 10th frame gets the person tag ``near door``, and the loop's suggestions
(class and scene) are added for every 6th frame (~20,800, of every camera: the scene
filter below has matches), so the tag filter reads a real table.

Both on the DuckDB file and, with ``--postgres``, on PostgreSQL (Debian's server on
loopback, the fleet copied in by ``bench/pgfleet.py``).

Usage: ``uv run --frozen python bench/batch_fetch.py [--detections 1000000] [--postgres]``
Targets (issue 19): batch fetch of 100 ids p95 <= 50 ms; a browser page p95 <= 150 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from api_reads import pct, simulated_fleet, verdict  # noqa: E402
from pgfleet import copy_fleet  # noqa: E402
from servers import postgres_server, remove_tree  # noqa: E402

from edgeloop.cli.services import start_api  # noqa: E402
from edgeloop.settings import LoopSettings  # noqa: E402
from edgeloop.store import AnyStore, Store, browse, tags  # noqa: E402
from edgeloop.store.browse import BrowseFilter  # noqa: E402

TOKEN = "bench-labeler-token"
BATCH = 100
TARGET_FETCH_MS = 50.0
TARGET_PAGE_MS = 150.0
PAGE = 48


def filters(now: datetime) -> dict[str, dict[str, str]]:
    """Name -> query of the browser pages measured (each combines filters the panel has)."""
    since = (now - timedelta(hours=6)).isoformat()
    return {
        "none": {},
        "camera+class": {"camera_id": "sim-cam-2", "class_name": "Fall"},
        "uncertain+confidence": {
            "uncertain": "true",
            "min_confidence": "0.5",
            "max_confidence": "0.6",
        },
        "time+model": {"since": since, "model_version": "2"},
        "queued+camera": {"state": "queued", "camera_id": "sim-cam-1"},
        "labeled": {"state": "labeled"},
        "unlabeled+class": {"state": "unlabeled", "class_name": "Normal"},
        "tag": {"tag": "near door"},
        "tag+class+page 5": {"tag": "scene:sim-cam-3", "class_name": "Normal", "offset": "192"},
        "split val": {"split": "val"},
    }


def add_tags(db: Path) -> None:
    """Person tags on every 10th frame, the loop's suggestions on every 6th."""
    now = datetime.now(UTC)
    with Store(db).connect() as con:
        keys = [
            str(r[0])
            for r in con.execute("SELECT frame_key FROM frames ORDER BY frame_key").fetchall()
        ]
        for start in range(0, len(keys), 5000):
            chunk = keys[start : start + 5000]
            tags.add(
                con=con,
                frame_keys=chunk[::10],
                tag="near door",
                source="person",
                created_by="bench",
                now=now,
            )
            tags.suggest_from_detections(con=con, frame_keys=chunk[::6], created_by="loop", now=now)
        n = con.execute("SELECT count(*) FROM tags").fetchall()[0][0]
    print(f"tags: {n:,} rows")


def id_batches(db: Path, n: int, rng: np.random.Generator) -> list[list[str]]:
    """``n`` lists of 100 ids: 50 frame keys and 50 detection ids, drawn at random."""
    with Store(db).connect() as con:
        keys = [str(r[0]) for r in con.execute("SELECT frame_key FROM frames").fetchall()]
        dets = [
            str(r[0])
            for r in con.execute(
                "SELECT detection_id FROM prediction_logs USING SAMPLE 100000"
            ).fetchall()
        ]
    return [
        list(rng.choice(keys, BATCH // 2, replace=False))
        + list(rng.choice(dets, BATCH // 2, replace=False))
        for _ in range(n)
    ]


def in_process(
    store: AnyStore, batches: list[list[str]], pages: dict[str, dict[str, str]]
) -> tuple[list[float], list[float]]:
    """Seconds per batch fetch and per page of the store calls alone, one open connection."""
    fetch_s, page_s = [], []
    with store.connect() as con:
        for ids in batches:
            start = time.perf_counter()
            browse.fetch(con=con, ids=ids)
            fetch_s.append(time.perf_counter() - start)
        for _ in range(3):
            for query in pages.values():
                start = time.perf_counter()
                browse.page(
                    con=con, where=_filter(query), limit=PAGE, offset=int(query.get("offset", 0))
                )
                page_s.append(time.perf_counter() - start)
    return fetch_s, page_s


def _filter(query: dict[str, str]) -> BrowseFilter:
    """The ``BrowseFilter`` a page's query string asks for."""
    values: dict[str, object] = {}
    for key, value in query.items():
        if key in ("since", "until"):
            values[key] = datetime.fromisoformat(value)
        elif key.endswith("confidence"):
            values[key] = float(value)
        elif key == "uncertain":
            values[key] = value == "true"
        elif key != "offset":
            values[key] = value
    return BrowseFilter(**values)  # type: ignore[arg-type]


def through_api(
    settings: LoopSettings,
    batches: list[list[str]],
    pages: dict[str, dict[str, str]],
    args: argparse.Namespace,
) -> tuple[list[float], list[float], dict[str, list[float]]]:
    """Against real uvicorn on ``settings``: seconds per batch fetch (100 ids), per 100 ids
    fetched one by one, and per browser page by filter combination."""
    env = {
        "EDGELOOP_API_TOKENS": json.dumps({TOKEN: "labeler"}),
        "EDGELOOP_API_PUSH_RETRAIN": "false",
    }
    fetch_s: list[float] = []
    one_by_one_s: list[float] = []
    page_s: dict[str, list[float]] = {name: [] for name in pages}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with (
        start_api(settings, extra_env=env) as api,
        httpx.Client(base_url=api.url, headers=headers, timeout=60) as http,
    ):
        for ids in batches[:3]:  # warm-up
            http.get("/api/browse/items", params={"ids": ",".join(ids)}).raise_for_status()
        for ids in batches:
            start = time.perf_counter()
            answer = http.get("/api/browse/items", params={"ids": ",".join(ids)})
            fetch_s.append(time.perf_counter() - start)
            answer.raise_for_status()
            assert len(answer.json()["items"]) == BATCH
        for ids in batches[: args.baseline_batches]:
            start = time.perf_counter()
            for one in ids:
                http.get("/api/browse/items", params={"ids": one}).raise_for_status()
            one_by_one_s.append(time.perf_counter() - start)
        for query in pages.values():  # warm-up
            http.get(f"/console/browse/fragment?{urlencode(query)}").raise_for_status()
        for _ in range(args.page_rounds):
            for name, query in pages.items():
                start = time.perf_counter()
                answer = http.get(f"/console/browse/fragment?{urlencode(query)}")
                page_s[name].append(time.perf_counter() - start)
                answer.raise_for_status()
    return fetch_s, one_by_one_s, page_s


def report(
    backend: str,
    fetch_s: list[float],
    one_by_one_s: list[float],
    page_s: dict[str, list[float]],
    base: tuple[list[float], list[float]],
) -> tuple[float, float]:
    """Print one backend's figures; its batch fetch p95 and browser page p95 (ms)."""
    base_fetch, base_page = base
    every_page = [s for samples in page_s.values() for s in samples]
    fetch_p95, one_p95 = pct(fetch_s, 95), pct(one_by_one_s, 95)
    page_p95 = pct(every_page, 95)
    print(f"\n[{backend}] batch fetch: {len(fetch_s)} requests of {BATCH} ids; ms")
    print(f"  batch route        p50 {pct(fetch_s, 50):7.1f}  p95 {fetch_p95:7.1f}")
    print(
        f"  one id a request   p50 {pct(one_by_one_s, 50):7.1f}  p95 {one_p95:7.1f}"
        f"  (all 100 ids, {len(one_by_one_s)} batches)"
    )
    print(f"  store in-process   p50 {pct(base_fetch, 50):7.1f}  p95 {pct(base_fetch, 95):7.1f}")
    print(
        f"  ratio batch / one-by-one (p95) {fetch_p95 / one_p95:.3f}; "
        f"batch / in-process {fetch_p95 / pct(base_fetch, 95):.1f}x"
    )
    print(f"[{backend}] browser pages ({PAGE} crops, the HTML fragment): {len(every_page)}; ms")
    for name, samples in page_s.items():
        print(f"  {name:<24} p50 {pct(samples, 50):7.1f}  p95 {pct(samples, 95):7.1f}")
    print(f"  all pages                p50 {pct(every_page, 50):7.1f}  p95 {page_p95:7.1f}")
    print(
        f"  store in-process         p50 {pct(base_page, 50):7.1f}  p95 {pct(base_page, 95):7.1f}"
    )
    print(f"  ratio http / in-process (p95) {page_p95 / pct(base_page, 95):.1f}x")
    return fetch_p95, page_p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detections", type=int, default=1_000_000)
    parser.add_argument("--frames", type=int, default=125_000)
    parser.add_argument("--requests", type=int, default=200, help="batch fetches timed")
    parser.add_argument("--baseline-batches", type=int, default=10)
    parser.add_argument("--page-rounds", type=int, default=10, help="rounds over FILTERS")
    parser.add_argument(
        "--postgres", action="store_true", help="also on PostgreSQL (Debian's server, loopback)"
    )
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results: dict[str, tuple[float, float]] = {}
    root = Path(tempfile.mkdtemp(prefix="edgeloop-bench-browse-"))
    try:
        data = root / "data"
        data.mkdir()
        db = data / "edgeloop.duckdb"
        simulated_fleet(db, args)
        add_tags(db)
        batches = id_batches(db, args.requests, rng)
        pages = filters(datetime.now(UTC))
        print(
            f"1-min load average before the runs: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)"
        )
        settings = LoopSettings(data_dir=data)
        base = in_process(settings.store(), batches, pages)
        results["duckdb"] = report("duckdb", *through_api(settings, batches, pages, args), base)
        if args.postgres:
            with postgres_server(root / "servers") as pg:
                copy_fleet(db, pg, "edgeloop")
                networked = LoopSettings(
                    data_dir=root / "networked", database_url=pg.url_for("edgeloop")
                )
                base = in_process(networked.store(), batches, pages)
                results["postgres"] = report(
                    "postgres", *through_api(networked, batches, pages, args), base
                )
    finally:
        remove_tree(root)
    failed = []
    for backend, (fetch_p95, page_p95) in results.items():
        if fetch_p95 > TARGET_FETCH_MS:
            failed.append(
                f"{backend} batch fetch p95 {fetch_p95:.1f} ms > {TARGET_FETCH_MS:.0f} ms"
            )
        if page_p95 > TARGET_PAGE_MS:
            failed.append(f"{backend} browser page p95 {page_p95:.1f} ms > {TARGET_PAGE_MS:.0f} ms")
    figures = "; ".join(
        f"{b}: batch fetch p95 {f:.1f} ms, page p95 {p:.1f} ms" for b, (f, p) in results.items()
    )
    verdict(
        f"batch fetch of {BATCH} ids p95 <= {TARGET_FETCH_MS:.0f} ms and browser page p95 <= "
        f"{TARGET_PAGE_MS:.0f} ms at {args.detections:,} SIMULATED detections ({figures})",
        failed,
    )


if __name__ == "__main__":
    main()
