"""The dataset browser panel in headless Chromium (Debian's, driven by Playwright) against
real uvicorn: the grid of thumbnails with boxes, a filter, "more like this" from the
published crop index, tagging a selection and sending it to the labeling queue."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from api_support import (
    AGENT,
    LiveServer,
    batch,
    chromium_page,
    detection,
    frame,
    jpeg_bytes,
    needs_chromium,
)

from edgeloop.settings import LoopSettings
from edgeloop.store import Store, dataset_frames
from edgeloop.vectors import CropPoint, VectorIndex

pytestmark = [pytest.mark.browser, needs_chromium]

SCREENSHOT = os.environ.get("EDGELOOP_BROWSE_SCREENSHOT")
"""Where to save the panel's screenshot (the README's), when set."""


def _load(server: LiveServer, loop: LoopSettings) -> None:
    """8 frames with JPEGs on two cameras, each with a Normal and a Fall detection; a crop
    index where the Normal crops sit close together."""
    frames = [
        frame(
            f"cam-{i % 2 + 1}:{i}",
            camera_id=f"cam-{i % 2 + 1}",
            index=i,
            jpeg=jpeg_bytes(seed=i),
            detections=[
                detection(60 + 40 * i, 80, 160 + 40 * i, 330, 0.55, "Normal"),
                detection(420, 200, 600, 300, 0.92, "Fall"),
            ],
        )
        for i in range(8)
    ]
    answer = httpx.post(
        f"{server.base_url}/api/ingest", json=batch(*frames), headers=AGENT, timeout=30
    )
    assert answer.status_code == 200, answer.text
    rng = np.random.default_rng(0)
    normal = rng.normal(size=32)
    points = []
    for i, record in enumerate(frames):
        for j, d in enumerate(record["detections"]):
            v = normal + 0.05 * (i + 1) * rng.normal(size=32) if j == 0 else rng.normal(size=32)
            points.append(
                CropPoint(
                    detection_id=f"{record['frame_key']}:{j}",
                    frame_key=record["frame_key"],
                    camera_id=record["camera_id"],
                    class_name=d["class_name"],
                    confidence=d["confidence"],
                    bbox_xyxy=tuple(d["bbox_xyxy"]),
                    captured_at_iso=record["captured_at"],
                    vector=(v / np.linalg.norm(v)).astype(np.float32),
                )
            )
    index = VectorIndex.from_settings(loop)
    index.publish(points, embedder="test-embedder")
    index.close()


def test_grid_more_like_this_tag_and_queue(
    live_server: LiveServer, loop_settings: LoopSettings
) -> None:
    from playwright.sync_api import Page, expect

    _load(live_server, loop_settings)
    with chromium_page(1400, 1000) as page:
        assert isinstance(page, Page)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{live_server.base_url}/console/browse#token=labeler-token")
        grid = page.locator("#browse-grid .browse-item")
        expect(grid).to_have_count(16)
        expect(page.locator('.summary [data-field="count"]')).to_have_text("16")
        assert page.locator("#browse-grid .box").count() == 16
        page.wait_for_function(
            "() => [...document.querySelectorAll('#browse-grid img')].every(i => i.complete && i.naturalWidth > 0)",
            timeout=20_000,
        )
        widths = page.locator("#browse-grid img").evaluate_all(
            "imgs => imgs.map(i => i.naturalWidth)"
        )
        assert set(widths) == {256}  # thumbnails, not the 640 px frames
        # Text search says which setting enables it.
        expect(page.locator('[data-field="text_search"]')).to_contain_text("EDGELOOP_CLIP_MODEL")

        # A filter from the form: the class select is filled from the store.
        page.locator('select[name="class_name"]').select_option("Normal")
        page.click("#browse-filters button[type=submit]")
        expect(page.locator('.summary [data-field="count"]')).to_have_text("8")
        assert page.url.endswith("class_name=Normal")
        if SCREENSHOT:
            page.screenshot(path=SCREENSHOT, full_page=False)

        # More like this on cam-1:0's Normal crop: its neighbours, all Normal, best first.
        page.locator(
            '.browse-item[data-detection="cam-1:0:0"] [data-action="more-like-this"]'
        ).click()
        expect(page.locator('[data-field="query"]')).to_have_text("like cam-1:0:0")
        hits = page.locator("#browse-grid .browse-item")
        expect(hits).to_have_count(8)
        assert hits.first.get_attribute("data-detection") == "cam-1:0:0"
        classes = hits.locator("figcaption strong").all_inner_texts()
        assert set(classes) == {"Normal"}
        scores = [
            float(s.split()[1]) for s in hits.locator('[data-field="score"]').all_inner_texts()
        ]
        assert scores == sorted(scores, reverse=True)

        # Select two crops, tag them, send their frames to the queue.
        for detection_id in ("cam-1:0:0", "cam-2:1:0"):
            page.locator(f'.browse-item[data-detection="{detection_id}"] .pick').check()
        expect(page.locator("#selected-count")).to_have_text("2")
        page.fill("#tag-input", "Near Door")
        page.click("#tag-form button")
        expect(page.locator("#action-status")).to_contain_text("Tagged 2 crop(s) “near door”")
        expect(page.locator('.browse-item[data-detection="cam-2:1:0"] .tag.person')).to_have_text(
            "near door"
        )
        expect(page.locator("#selected-count")).to_have_text("2")  # kept across the reload
        page.fill("#priority-input", "7")
        page.click("#queue-form button")
        expect(page.locator("#action-status")).to_contain_text("2 raised to priority 7")
        page.click("#suggest-tags")
        expect(page.locator("#action-status")).to_contain_text("Suggested 6 tag(s)")
        expect(
            page.locator('.browse-item[data-detection="cam-1:0:0"] .tag.suggested').first
        ).to_be_visible()
        assert errors == []

    with Store(Path(loop_settings.duckdb_path)).connect() as con:
        tagged = con.execute(
            "SELECT target_id, source, created_by FROM tags WHERE tag = 'near door' ORDER BY 1"
        ).fetchall()
        queued = dict(
            con.execute(
                "SELECT frame_key, priority FROM labeling_queue WHERE frame_key IN ('cam-1:0', 'cam-2:1')"
            ).fetchall()
        )
    assert tagged == [("cam-1:0:0", "person", "labeler"), ("cam-2:1:0", "person", "labeler")]
    assert queued == {"cam-1:0": 7.0, "cam-2:1": 7.0}


def test_dataset_version_filter(live_server: LiveServer, loop_settings: LoopSettings) -> None:
    from playwright.sync_api import Page, expect

    _load(live_server, loop_settings)
    with Store(Path(loop_settings.duckdb_path)).connect() as con:  # as training_dataset does
        dataset_frames.record(
            con=con,
            version="v1",
            train_frames=["cam-1:0", "cam-2:1"],
            val_frames=["cam-1:2"],
            recorded_at=datetime.now(UTC),
        )
        dataset_frames.record(
            con=con,
            version="v2",
            train_frames=["cam-1:0", "cam-2:1", "cam-2:3"],
            val_frames=["cam-1:2"],
            recorded_at=datetime.now(UTC),
        )
    with chromium_page(1400, 1000) as page:
        assert isinstance(page, Page)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{live_server.base_url}/console/browse#token=labeler-token")
        expect(page.locator('.summary [data-field="count"]')).to_have_text("16")
        choices = page.locator('select[name="dataset_version"] option')
        expect(choices).to_have_count(3)
        assert choices.all_inner_texts() == ["any", "v2", "v1"]
        page.locator('select[name="dataset_version"]').select_option("v1")
        page.click("#browse-filters button[type=submit]")
        expect(page.locator('.summary [data-field="count"]')).to_have_text("6")
        frames = page.locator("#browse-grid .browse-item").evaluate_all(
            "items => items.map(i => i.dataset.detection.split(':').slice(0, 2).join(':'))"
        )
        assert sorted(set(frames)) == ["cam-1:0", "cam-1:2", "cam-2:1"]
        assert "dataset_version=v1" in page.url
        # The choice is kept on the reloaded page.
        expect(page.locator('select[name="dataset_version"]')).to_have_value("v1")
        shot = os.environ.get("EDGELOOP_BROWSE_DATASET_SCREENSHOT")
        if shot:
            page.screenshot(path=shot, full_page=False)
        assert errors == []
