"""Labeling page: submit → next image drawn, in headless Chromium, with the next items
prefetched vs none prefetched, against an API holding a fleet's worth of detections.

What it measures, in one run on the same machine:
  * a SIMULATED fleet (``bench/fleetdata.py``: 1,000,000 detections over 125,000 frames by
    default) in a fresh DuckDB file; the frames the labeler will get get a JPEG (the
    fleet's frame size, a real photo when ``data/samples/vtest.avi`` is there);
  * real uvicorn on loopback with the loop host's settings (class names from the MLflow
    registry of ``--registry-dir``, as ``bench/api_reads.py`` does);
  * Debian's Chromium (headless, Playwright) on the labeling page, one labeler: Enter on
    an item, then the next item's frame on the canvas. The page marks both
    (``performance.mark``: ``edgeloop:submit`` when the label is sent,
    ``edgeloop:item-drawn`` in the animation frame after the next item is drawn); the
    figure is the time between them. The labeler looks at each item for ``--think-ms``
    before pressing Enter (a person does, for seconds);
  * baseline: the same page with ``?prefetch=0`` (no item fetched ahead: each submit then
    waits for ``/next`` and the JPEG), in the same run, on a copy of the same file.

Usage: ``uv run --frozen python bench/labeling_page.py [--detections 1000000] [--items 100]``
Target (issue 18): submit → next image drawn p95 <= 50 ms with prefetch.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from api_reads import REPO, pct, reads_parser, simulated_fleet, verdict

from api.jpegs import jpeg_key
from edgeloop.cli.services import start_api
from edgeloop.settings import LoopSettings
from edgeloop.store import Store, queue

LABELER = "bench-labeler-token"
TARGET_P95_MS = 50.0
CHROMIUM = "/usr/bin/chromium"
SAMPLE = REPO / "data" / "samples" / "vtest.avi"

# Resolves once the page has drawn `n` items (the count of edgeloop:item-drawn marks).
_DRAWN = "n => performance.getEntriesByName('edgeloop:item-drawn').length >= n"
_LAST_GAP = """() => {
    const [s] = performance.getEntriesByName('edgeloop:submit').slice(-1);
    const [d] = performance.getEntriesByName('edgeloop:item-drawn').slice(-1);
    return {ms: d.startTime - s.startTime, submitted: s.detail.item_id, shown: d.detail.item_id};
}"""


def frame_jpeg(width: int, height: int, seed: int) -> bytes:
    """A JPEG of ``width`` x ``height`` px: a vtest.avi frame scaled when the sample is
    there, else noise with rectangles (same size and about the same bytes either way)."""
    capture = cv2.VideoCapture(str(SAMPLE)) if SAMPLE.exists() else None
    image = None
    if capture is not None:
        capture.set(cv2.CAP_PROP_POS_FRAMES, seed % 700)
        ok, image = capture.read()
        capture.release()
        image = cv2.resize(image, (width, height)) if ok else None
    if image is None:
        rng = np.random.default_rng(seed)
        image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return buffer.tobytes()


def give_jpegs(data: Path, db: Path, count: int) -> int:
    """Write a JPEG for the first ``count`` pending items (the ones ``/next`` hands out) and
    point their frames at it; returns how many."""
    with Store(db).connect() as con:
        items, _ = queue.list_items(
            con=con, status="pending", camera_id=None, limit=count, offset=0
        )
        for n, item in enumerate(items):
            size = con.execute(
                "SELECT width, height FROM frames WHERE frame_key = ?", [item["frame_key"]]
            ).fetchone()
            assert size is not None, f"queued frame {item['frame_key']} is not stored"
            width, height = size
            key = jpeg_key(item["camera_id"], item["frame_key"])
            (data / key).parent.mkdir(parents=True, exist_ok=True)
            (data / key).write_bytes(frame_jpeg(width, height, seed=n))
            con.execute(
                "UPDATE frames SET jpeg_path = ? WHERE frame_key = ?", [key, item["frame_key"]]
            )
    return len(items)


def label_items(url: str, *, prefetch: int, items: int, warmup: int, think_ms: int) -> list[float]:
    """Submit → next image drawn, ms, for ``items`` submits (after ``warmup``) on the page
    with ``?prefetch=N``."""
    from playwright.sync_api import sync_playwright

    gaps: list[float] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1300, "height": 820})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{url}/?prefetch={prefetch}#token={LABELER}")
        page.wait_for_function(_DRAWN, arg=1, timeout=60_000)
        for n in range(warmup + items):
            page.wait_for_timeout(think_ms)
            page.keyboard.press("Enter")
            try:
                page.wait_for_function(_DRAWN, arg=n + 2, timeout=30_000)
            except Exception:
                shown = page.evaluate(
                    "[document.getElementById('message').textContent,"
                    " document.getElementById('info-item').textContent,"
                    " document.getElementById('empty').hidden,"
                    " performance.getEntriesByName('edgeloop:item-drawn').length,"
                    " performance.getEntriesByName('edgeloop:submit').length,"
                    " document.getElementById('frame-error-reason').textContent, document.activeElement.id]"
                )
                raise RuntimeError(
                    f"submit {n + 1}: no next item drawn; the page says {shown!r}; {errors}"
                ) from None
            gap = page.evaluate(_LAST_GAP)
            if gap["shown"] == gap["submitted"]:
                raise RuntimeError(f"item {gap['shown']} was shown again after its submit")
            if n >= warmup:
                gaps.append(float(gap["ms"]) / 1000)  # seconds, as pct() takes
        browser.close()
    return gaps


def main() -> None:
    parser = reads_parser(__doc__)
    parser.add_argument("--items", type=int, default=100, help="submits measured per page")
    parser.add_argument("--warmup", type=int, default=5, help="submits not measured, first")
    parser.add_argument("--think-ms", type=int, default=400, help="the labeler's look per item")
    args = parser.parse_args()
    per_run = args.items + args.warmup + 5

    with tempfile.TemporaryDirectory(prefix="edgeloop-bench-page-") as tmp:
        fleet = Path(tmp) / "fleet"
        fleet.mkdir()
        simulated_fleet(fleet / "edgeloop.duckdb", args)
        jpegs = give_jpegs(fleet, fleet / "edgeloop.duckdb", per_run + 5)
        runs = {}
        for name, prefetch in (("prefetch", 2), ("baseline", 0)):
            data = Path(tmp) / name / "data"  # each page labels the same items of a copy
            shutil.copytree(fleet, data)
            registry = LoopSettings(data_dir=args.registry_dir)
            env = {
                "EDGELOOP_API_TOKENS": json.dumps({LABELER: "labeler"}),
                "EDGELOOP_API_PUSH_RETRAIN": "false",
                "MLFLOW_TRACKING_URI": registry.tracking_uri,
            }
            started = time.perf_counter()
            with start_api(LoopSettings(data_dir=data), extra_env=env) as api:
                runs[name] = label_items(
                    api.url,
                    prefetch=prefetch,
                    items=args.items,
                    warmup=args.warmup,
                    think_ms=args.think_ms,
                )
            print(f"{name}: {args.items} items in {time.perf_counter() - started:.0f} s")

    print(f"\n{jpegs} frames with a JPEG; {args.items} submits per page, {args.think_ms} ms look")
    print(f"{'page':<22}{'p50':>8}{'p95':>8}{'max':>8}  (ms, submit -> next image drawn)")
    for name, label in (("prefetch", "prefetch 2 (default)"), ("baseline", "prefetch 0")):
        gaps = runs[name]
        print(f"{label:<22}{pct(gaps, 50):>8.1f}{pct(gaps, 95):>8.1f}{max(gaps) * 1000:>8.1f}")
    p95, base95 = pct(runs["prefetch"], 95), pct(runs["baseline"], 95)
    print(f"ratio baseline / prefetch at p95: {base95 / p95:.1f}x")
    failed = [f"p95 {p95:.1f} ms > {TARGET_P95_MS:.0f} ms"] if p95 > TARGET_P95_MS else []
    verdict(f"submit -> next image drawn p95 <= {TARGET_P95_MS:.0f} ms", failed)


if __name__ == "__main__":
    main()
