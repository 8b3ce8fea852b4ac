"""Screenshots of every console panel for the README: ``docs/console/<panel>.png``.

By default builds the simulated fleet the console's browser tests use
(``tests/api/console/console_support.py``: three cameras with synthetic detections on real
vtest.avi frames, labels, drift reports, a retrain event, a real MLflow registry with two
stand-in versions) in a temporary data dir; with ``--data-dir`` it serves an existing data
folder instead (the one ``make demo`` filled: the demo's own cameras, labels and models;
nothing is added to it). Either is served with real uvicorn; an admin signs in in Debian's
headless Chromium and each panel is captured once its data and charts are drawn.

Usage: ``uv run --frozen python scripts/console_screenshots.py [--out docs/console]
[--data-dir data]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "api" / "console"), str(REPO / "tests" / "api")]

from console_support import load_demo, send_heartbeats  # noqa: E402

from api.console.routes import PANELS  # noqa: E402
from edgeloop.cli.services import free_port, start_api  # noqa: E402
from edgeloop.settings import LoopSettings  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
TOKENS = {"agent-token": "agent", "labeler-token": "labeler", "admin-token": "admin"}
WAIT_FOR = {
    "analytics": "#chart-rate canvas",
    "drift": "#drift-charts canvas",
    "inspections": "#inspections img",
}
"""Panel -> what must be drawn before its screenshot (besides the fragment's first table)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "console")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="serve this data folder (e.g. the one `make demo` filled) instead of the "
        "simulated fleet",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="edgeloop-screens-") as tmp:
        simulated = args.data_dir is None
        if simulated:
            settings = LoopSettings(data_dir=Path(tmp) / "data")
            load_demo(settings, Path(tmp) / "scratch", now=datetime.now(UTC))
        else:
            settings = LoopSettings(data_dir=args.data_dir.resolve())
        service = start_api(
            settings,
            extra_env={
                "EDGELOOP_API_TOKENS": json.dumps(TOKENS),
                "EDGELOOP_API_DAGSTER_URL": f"http://127.0.0.1:{free_port()}",
            },
        )
        with service, sync_playwright() as playwright:
            if simulated:
                send_heartbeats(service.url, "agent-token")
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(f"{service.url}/console/fleet#token=admin-token")
            for panel in PANELS:
                page.goto(f"{service.url}/console/{panel}")
                page.locator("#panel table, #panel .thumbs").first.wait_for(timeout=20_000)
                if panel in WAIT_FOR:
                    page.locator(WAIT_FOR[panel]).first.wait_for(timeout=20_000)
                if panel == "inspections":
                    page.wait_for_function(
                        "() => [...document.querySelectorAll('#inspections img')]"
                        ".slice(0, 6).every(i => i.complete && i.naturalWidth > 0)",
                        timeout=20_000,
                    )
                page.wait_for_timeout(300)
                target = args.out / f"{panel}.png"
                page.screenshot(path=str(target), full_page=True)
                sys.stdout.write(f"{target}\n")
            browser.close()


if __name__ == "__main__":
    main()
