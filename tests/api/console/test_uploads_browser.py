"""The uploads panel in headless Chromium (Debian's, driven by Playwright) against real
uvicorn and the real seed detector in a real MLflow store: two real images chosen in the
file input, uploaded with the progress bar, run through production; the stored batch and
its detections are exactly what the agents' detector finds; another version's run, the
comparison, and sending the images to the labeling queue."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import pytest
from api_support import chromium_page, needs_chromium, start_test_api
from support import SAMPLES_DIR, require
from upload_support import expected_detections, register_seed, stored, vtest_frame

from edgeloop.settings import LoopSettings
from edgeloop.store import Store
from edgeloop.store import prediction_batches as pb

pytestmark = [pytest.mark.browser, needs_chromium]

SCREENSHOT = os.environ.get("EDGELOOP_UPLOADS_SCREENSHOT")
"""Where to save the panel's screenshot (the README's), when set."""


def test_upload_run_compare_and_queue(
    loop_settings: LoopSettings, tmp_path: Path, seed_onnx: Path
) -> None:
    from playwright.sync_api import Page, expect

    register_seed(loop_settings, tmp_path, seed_onnx)
    bus = require(SAMPLES_DIR / "bus.jpg")
    walkers = tmp_path / "vtest-0200.jpg"
    assert cv2.imwrite(str(walkers), vtest_frame(200))
    with (
        start_test_api(loop_settings, warm_registry=False) as api,
        chromium_page(1400, 1100) as page,
    ):
        assert isinstance(page, Page)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{api.url}/console/uploads#token=labeler-token")
        expect(page.locator("#batches-table")).to_contain_text("No batch yet")
        page.set_input_files("#upload-files", [str(bus), str(walkers)])
        expect(page.locator("#upload-chosen")).to_contain_text("2 files chosen")
        page.click("#upload-submit")
        page.wait_for_url("**/console/uploads?batch=1", timeout=120_000)
        items = page.locator("#upload-grid .upload-item")
        expect(items).to_have_count(2, timeout=30_000)
        assert items.locator('[data-field="file-name"]').all_inner_texts() == [
            "bus.jpg",
            "vtest-0200.jpg",
        ]

        with Store(Path(loop_settings.duckdb_path)).connect() as con:
            batch = pb.get(con=con, batch_id=1)
            images = pb.images(con=con, batch_id=1)
            found = [
                [d for d in pb.detections(con=con, batch_id=1) if d["image_index"] == i]
                for i in range(2)
            ]
        assert batch is not None and (batch["created_by"], batch["image_count"]) == ("labeler", 2)
        objects = loop_settings.objects()
        for image, rows in zip(images, found, strict=True):
            assert stored(rows) == expected_detections(objects.get(image["object_key"]), seed_onnx)
        assert objects.get(images[0]["object_key"]) == bus.read_bytes()
        counts = [len(rows) for rows in found]
        assert sum(counts) > 0
        expect(page.locator("#upload-grid .box:not([hidden])")).to_have_count(sum(counts))
        page.wait_for_function(
            "() => [...document.querySelectorAll('#upload-grid img')].every(i => i.complete && i.naturalWidth > 0)",
            timeout=20_000,
        )

        # Another version on the same images: two runs, the comparison, both toggles.
        page.fill("#run-version", "2")
        page.click("#run-form button")
        # Running a model takes seconds on a busy 2-core machine: wait up to a minute.
        expect(page.locator("#runs-table tr[data-version]")).to_have_count(2, timeout=60_000)
        expect(page.locator("#action-status")).to_contain_text(
            f"v2 found {sum(counts)} detections on batch 1"
        )
        expect(page.locator("#upload-grid .box:not([hidden])")).to_have_count(2 * sum(counts))
        matched = page.locator('#compare-table tr[data-image] [data-field="matched"]')
        expect(matched).to_have_count(2)
        assert [int(m) for m in matched.all_inner_texts()] == counts  # same ONNX: all agree
        page.check('input[name="show-run"][value="2"]')
        expect(page.locator("#upload-grid .box:not([hidden])")).to_have_count(sum(counts))
        page.check('input[name="show-run"][value="*"]')
        if SCREENSHOT:
            page.screenshot(path=SCREENSHOT, full_page=True)

        page.click("#queue-batch-form button")
        expect(page.locator("#action-status")).to_contain_text(
            "2 images of batch 1 are in the labeling queue (camera upload, pre-labels from v1)",
            timeout=60_000,
        )
        expect(page.locator('#upload-batch [data-field="status"]')).to_have_text("queued")
        assert errors == []

    with Store(Path(loop_settings.duckdb_path)).connect() as con:
        queued = con.execute(
            "SELECT q.frame_key, q.camera_id, f.detection_count, f.jpeg_path FROM labeling_queue q "
            "JOIN frames f USING (frame_key) ORDER BY q.frame_key"
        ).fetchall()
    assert [tuple(r) for r in queued] == [
        (f"upload-1-{i}", "upload", counts[i], images[i]["object_key"]) for i in range(2)
    ]
