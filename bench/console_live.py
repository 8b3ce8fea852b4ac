"""Console live updates: how long from a write to the panel showing it, in headless
Chromium (Debian's, driven by Playwright) against real uvicorn and a real DuckDB file.

What it measures, in one run on the same machine:
  * live: the console with its server-sent event stream (``/console/events``). A
    detection batch is POSTed to ``/api/ingest`` (one frame, one detection, as an agent
    sends it) and the time is taken until the inspections panel shows that detection; an
    alert is raised in the store from this process (as the drift sensor does) and the time
    is taken until the alerts panel shows it. Each time runs from just before the write to
    the element entering the page, both read on the page's clock (a MutationObserver notes
    when it appears), so Playwright's own polling is not counted.
  * baseline: the same page with the event stream refused (``page.route`` aborts it), so
    the console falls back to its 5 s poll: what every panel did before.
The ratio is baseline p50 / live p50.

Usage: ``uv run --frozen python bench/console_live.py [--n 20] [--baseline-n 6]``.
Target: live p95 <= 1000 ms for a detection batch (from its POST) and an alert (from its
commit: raising it from another process first waits for the API to hand over the DuckDB
file, shown on its own row).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from edgeloop.cli.services import start_api
from edgeloop.settings import LoopSettings
from edgeloop.store import alerts
from edgeloop.wire import Detection, FrameQuality, FrameRecord
from edgeloop.wire.records import IngestBatch

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
TOKENS = {"bench-admin": "admin", "bench-agent": "agent"}
CAMERA = "cam-live"
TARGET_MS = 1000.0
WAIT_MS = 15_000


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _batch(frame_key: str) -> dict[str, Any]:
    """One agent batch: one frame of ``CAMERA`` captured now, with one detection."""
    record = FrameRecord(
        frame_key=f"{frame_key}:0",
        camera_id=CAMERA,
        frame_index=0,
        captured_at=datetime.now(UTC),
        width=768,
        height=576,
        quality=FrameQuality(brightness=100, contrast=40, sharpness=250, saturation=30),
        inference_ms=25.0,
        model_version="1",
        detections=[
            Detection(
                bbox_xyxy=(100, 50, 180, 230),
                class_id=0,
                class_name="person",
                confidence=0.9,
                uncertain=False,
            )
        ],
    )
    batch = IngestBatch(agent_id="bench-agent", sent_at=datetime.now(UTC), frames=[record])
    return batch.model_dump(mode="json")


WATCH = """() => {
    window.benchSeen = new Map();
    new MutationObserver(() => {
        for (const selector of window.benchWanted || []) {
            if (!window.benchSeen.has(selector) && document.querySelector(selector)) {
                window.benchSeen.set(selector, performance.now());
            }
        }
    }).observe(document.body, { childList: true, subtree: true });
}"""
"""Records, on the page's own clock, when each wanted selector first matches: Playwright's
polling and round trips stay out of the figure."""


def _time_until(page: Any, write: Callable[[str], str]) -> tuple[float, float]:
    """ms from just before ``write(key)`` (which returns the selector its result shows as) to
    the element being in the panel, both on the page's clock (``performance.now``); and the
    ms the write itself took (until its commit)."""
    key = f"bench-{time.time_ns()}"
    selector = write(key)  # not written yet: the selector only
    started = page.evaluate(
        "(s) => { window.benchWanted = [s]; return performance.now(); }", selector
    )
    before = time.perf_counter()
    write(key + "!")
    write_ms = 1000 * (time.perf_counter() - before)
    page.wait_for_selector(selector, state="attached", timeout=WAIT_MS)
    seen = page.evaluate("(s) => window.benchSeen.get(s) ?? performance.now()", selector)
    return float(seen - started), write_ms


def measure(
    base_url: str, loop: LoopSettings, *, live: bool, n: int, client: httpx.Client
) -> dict[str, list[float]]:
    """Times (ms) of ``n`` detection batches and ``n`` alerts reaching their panels."""
    from playwright.sync_api import sync_playwright

    def ingest(key: str) -> str:
        """The selector of frame ``key``'s detection; with a trailing ``!``, send the frame."""
        if not key.endswith("!"):
            return f'[data-detection^="{CAMERA}:{key}:"]'
        body = _batch(f"{CAMERA}:{key[:-1]}")
        answer = client.post(
            "/api/ingest", json=body, headers={"Authorization": "Bearer bench-agent"}
        )
        answer.raise_for_status()
        return ""

    def raise_alert(key: str) -> str:
        """The selector of camera ``key``'s alert; with a trailing ``!``, raise it."""
        if not key.endswith("!"):
            return f'#open-alerts li[data-camera="{key}"]'
        with loop.store().connect() as con:
            alerts.raise_alert(
                con=con,
                camera_id=key[:-1],
                kind="drift",
                summary="bench: drift share 0.67 > 0.3",
                description="written by bench/console_live.py",
                value=0.67,
                threshold=0.3,
                delivery_status="disabled",
            )
        return ""

    times: dict[str, list[float]] = {"detection batch": [], "alert": [], "alert committed": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1300, "height": 900}).new_page()
            if not live:
                page.route("**/console/events", lambda route: route.abort())
            panels = {
                "detection batch": (
                    f"/console/inspections?camera_id={CAMERA}&include_no_image=true",
                    ingest,
                ),
                "alert": ("/console/alerts", raise_alert),
            }
            for name, (path, write) in panels.items():
                page.goto(f"{base_url}{path}#token=bench-admin")
                page.wait_for_selector("#panel > :not(.muted)", timeout=WAIT_MS)
                page.evaluate(WATCH)
                if live:
                    page.wait_for_function("() => window.edgeloopLive === true", timeout=WAIT_MS)
                for _ in range(n):
                    total, write_ms = _time_until(page, write)
                    times[name].append(total)
                    if name == "alert":
                        times["alert committed"].append(total - write_ms)
                    page.wait_for_timeout(150)  # writes apart, as a fleet's batches are
        finally:
            browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="writes of each kind, live")
    parser.add_argument("--baseline-n", type=int, default=6, help="writes of each kind, polled")
    args = parser.parse_args()
    out = sys.stdout.write
    if not CHROMIUM.exists():
        sys.exit(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="edgeloop-bench-live-") as tmp:
        loop = LoopSettings(data_dir=Path(tmp) / "data")
        service = start_api(
            loop,
            extra_env={
                "EDGELOOP_API_TOKENS": json.dumps(TOKENS),
                "EDGELOOP_API_WARM_REGISTRY": "false",
            },
        )
        with service, httpx.Client(base_url=service.url, timeout=30) as client:
            client.post(
                "/api/ingest",
                json=_batch(f"{CAMERA}:first"),
                headers={"Authorization": "Bearer bench-agent"},
            ).raise_for_status()  # the camera exists before the page opens
            live = measure(service.url, loop, live=True, n=args.n, client=client)
            polled = measure(service.url, loop, live=False, n=args.baseline_n, client=client)
    out(
        f"{'write → panel':<16} {'live p50':>9} {'live p95':>9} {'n':>3}   "
        f"{'poll p50':>9} {'poll p95':>9} {'n':>3}   {'ratio p50':>9}   (ms, Chromium, loopback)\n"
    )
    worst = ("", 0.0)
    for name in live:
        lp50, lp95 = statistics.median(live[name]), _percentile(live[name], 0.95)
        bp50, bp95 = statistics.median(polled[name]), _percentile(polled[name], 0.95)
        out(
            f"{name:<16} {lp50:9.0f} {lp95:9.0f} {len(live[name]):3d}   {bp50:9.0f} {bp95:9.0f} "
            f"{len(polled[name]):3d}   {bp50 / max(lp50, 1e-3):9.1f}\n"
        )
        if name != "alert" and lp95 > worst[1]:
            worst = (name, lp95)
    out(
        "(alert: from the start of the write, which on the DuckDB file waits for the API to "
        "hand the file over; alert committed: from its commit)\n"
    )
    verdict = "met" if worst[1] <= TARGET_MS else "NOT met"
    out(
        f"TARGET {verdict}: a detection batch (from its POST) and an alert (from its commit) "
        f"on screen within {TARGET_MS:.0f} ms "
        f"(p95; slowest: {worst[0]} p95 {worst[1]:.0f} ms with server-sent events)\n"
    )


if __name__ == "__main__":
    main()
