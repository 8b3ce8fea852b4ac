"""Console panel latency at the server: every panel over HTTP against real uvicorn and a real
DuckDB file holding a SIMULATED fleet (``bench/fleetdata.py``: 1,000,000 detections).

What it measures, in one run on the same machine:
  * http: for each panel, one "load" = its page shell + its HTML fragment + its JSON data
    route, requested one after the other over loopback with an admin token (what a browser
    does on open and every refresh, minus the static files); p50 and p95 over
    ``--iterations`` loads after two warm-up loads.
  * baseline: the panel's view function (``api.console.views``: its store queries, each
    call opening and closing the DuckDB file as the API does) run in this process before
    the server starts; the ratio http / baseline is what HTTP, validation and rendering add
    (two calls per load: fragment and data route).

The models panel also lists the MLflow registry (an empty sqlite store here).

Usage: ``uv run --frozen python bench/console.py [--db data/bench-console.duckdb]``; without
``--db`` it writes a fresh simulated fleet into a temporary folder first.
Target: every panel's p95 <= 300 ms at the server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from fleetdata import load_fleet

from api.console import models_view, routes, views
from api.console.settings_view import effective_settings
from api.model_registry import ModelRegistry
from api.settings import ApiSettings
from edgeloop.cli.services import start_api
from edgeloop.settings import LoopSettings
from edgeloop.store import Store

TOKEN = "bench-admin-token"
TARGET_MS = 300.0
QUERIES = {
    "analytics": "range=1h",
    "analytics-24h": "range=24h",
    "drift": "range=7d",
    "inspections": "limit=24",
}
"""Panel -> the query it is benchmarked with (none where it is left out): each page as it
opens (analytics: its default range, 1 h), and the analytics page over the whole simulated
day (``analytics-24h``: every one of the 1,000,000 detections in range)."""
PANELS: dict[str, str] = {
    name: QUERIES.get(name, "")
    for panel in routes.PANELS  # every panel of the console, in its navigation's order
    for name in (panel, f"{panel}-24h")
    if name == panel or name in QUERIES
}
"""Panel -> its query, for each load :func:`time_panels` times."""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _baselines(settings: ApiSettings) -> dict[str, Callable[[], Any]]:
    store = Store(settings.loop.duckdb_path)
    registry = ModelRegistry(settings.loop)
    return {
        "fleet": lambda: views.fleet(store, model_name=registry.model_name),
        "analytics": lambda: views.analytics_panel(store, range_name="1h"),
        "analytics-24h": lambda: views.analytics_panel(store, range_name="24h"),
        "drift": lambda: views.drift_panel(store, settings, range_name="7d"),
        "queue": lambda: views.queue_panel(store),
        "retraining": lambda: views.retraining_panel(store, settings),
        "models": lambda: models_view.models_panel(store, settings, registry),
        "inspections": lambda: views.inspections_panel(
            store,
            camera_id=None,
            band=None,
            uncertainty_band=(settings.loop.uncertainty_low, settings.loop.uncertainty_high),
            limit=24,
            offset=0,
        ),
        "settings": lambda: effective_settings(settings),
    }


def _time_ms(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def time_panels(
    client: httpx.Client, iterations: int, *, failures: dict[str, str] | None = None
) -> dict[str, list[float]]:
    """Each panel's load times, ms: ``iterations`` loads after two warm-up loads, a load
    being the page shell, its fragment and its data route, one after the other, through
    ``client`` (an admin's).

    Raises:
        httpx.HTTPStatusError: a request failed, unless ``failures`` is given: the panel
            is then left out and ``failures`` says which request failed and how.
    """
    results: dict[str, list[float]] = {}
    for name, query in PANELS.items():
        panel = name.split("-")[0]
        suffix = f"?{query}" if query else ""
        # What the page asks for: its analytics charts poll only their part.
        data = f"{suffix}&part=charts" if panel == "analytics" else suffix
        urls = [
            f"/console/{panel}{suffix}",
            f"/console/{panel}/fragment{suffix}",
            f"/console/api/{panel}{data}",
        ]

        def load(urls: list[str] = urls) -> None:
            for url in urls:
                response = client.get(url)
                response.raise_for_status()

        try:
            load()
        except httpx.HTTPStatusError as exc:
            if failures is None:
                raise
            response = exc.response
            failures[name] = f"HTTP {response.status_code} on {response.request.url.path}"
            with contextlib.suppress(httpx.TransportError):  # uvicorn closed the connection
                client.get("/api/health")
            continue
        load()
        results[name] = [_time_ms(load) for _ in range(iterations)]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="a DuckDB file written by bench/fleetdata.py")
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()
    out = sys.stdout.write
    with tempfile.TemporaryDirectory(prefix="edgeloop-bench-console-") as tmp:
        db = args.db
        if db is None:
            db = Path(tmp) / "fleet.duckdb"
            started = time.perf_counter()
            counts = load_fleet(db)
            out(
                f"SIMULATED fleet: {counts['detections']:,} detections, {counts['frames']:,} "
                f"frames, {counts['pending']:,} pending items, {counts['labels']} labels "
                f"(written in {time.perf_counter() - started:.1f} s)\n"
            )
        else:
            out(f"SIMULATED fleet from {db}\n")
        loop = LoopSettings(data_dir=Path(tmp) / "data", db_path=db.resolve())
        settings = ApiSettings(loop=loop, tokens={TOKEN: "admin"}, warm_registry=False)
        baseline: dict[str, list[float]] = {}
        for panel, call in _baselines(settings).items():
            call()  # warm: first open, MLflow import and store creation
            baseline[panel] = [_time_ms(call) for _ in range(args.iterations)]
        service = start_api(
            loop,
            extra_env={
                "EDGELOOP_DB_PATH": str(db.resolve()),
                "EDGELOOP_API_TOKENS": json.dumps({TOKEN: "admin"}),
                "EDGELOOP_API_WARM_REGISTRY": "true",
            },
        )
        with (
            service,
            httpx.Client(
                base_url=service.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
            ) as client,
        ):
            results = time_panels(client, args.iterations)
        out(
            f"\n{'panel':<12} {'http p50':>9} {'http p95':>9} {'in-proc p50':>12} "
            f"{'ratio p50':>10}   (ms; {args.iterations} loads = shell + fragment + data)\n"
        )
        worst = ("", 0.0)
        for panel, times in results.items():
            p50, p95 = statistics.median(times), _percentile(times, 0.95)
            base = statistics.median(baseline[panel])
            out(f"{panel:<12} {p50:9.1f} {p95:9.1f} {base:12.1f} {p50 / max(base, 1e-3):10.2f}\n")
            if p95 > worst[1]:
                worst = (panel, p95)
        verdict = "met" if worst[1] <= TARGET_MS else "NOT met"
        out(
            f"TARGET {verdict}: every panel p95 <= {TARGET_MS:.0f} ms at the server "
            f"(slowest: {worst[0]} p95 {worst[1]:.1f} ms, SIMULATED fleet)\n"
        )


if __name__ == "__main__":
    main()
