"""The labeling page in headless Chromium against real uvicorn: review boxes, submit, and
find the label in DuckDB."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import pytest
from api_support import AGENT, LABELER, LiveServer, batch, detection, frame
from support import SAMPLES_DIR, require

from edgeloop.store import Store

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT_ENV = "EDGELOOP_SCREENSHOT_DIR"
"""Where the screenshots go (to look at them); default the test's tmp folder."""

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
    ),
]


def vtest_jpeg(index: int) -> bytes:
    capture = cv2.VideoCapture(str(require(SAMPLES_DIR / "vtest.avi")))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, image = capture.read()
    capture.release()
    assert ok
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buffer.tobytes()


@pytest.fixture
def page(live_server: LiveServer) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1300, "height": 820})
            yield context.new_page()
        finally:
            browser.close()


def test_review_and_submit_a_label(live_server: LiveServer, page: object, tmp_path: Path) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    shots = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path)
    # vtest.avi frame 60 (768x576): boxes 1 and 3 around people, box 2 on empty grass.
    payload = batch(
        frame(
            "vtest:000060",
            camera_id="vtest",
            index=60,
            width=768,
            height=576,
            detections=[
                detection(380, 212, 445, 308, 0.55),
                detection(70, 230, 140, 420, 0.47),
                detection(630, 274, 667, 388, 0.88, "Fall"),
            ],
            jpeg=vtest_jpeg(60),
        )
    )
    ack = httpx.post(f"{live_server.base_url}/api/ingest", json=payload, headers=AGENT, timeout=30)
    assert ack.status_code == 200, ack.text

    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_server.base_url}/#token=labeler-token")

    rows = page.locator("#boxes li")
    expect(rows).to_have_count(3)
    expect(page.locator("#info-camera")).to_have_text("vtest")
    expect(page.locator("#info-frame")).to_have_text("60 (768×576)")
    # The token moved from the URL into localStorage.
    assert "token" not in page.url
    # The frame is drawn: the canvas is not blank.
    painted = page.evaluate(
        """() => {
            const c = document.getElementById('frame');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let lit = 0;
            for (let i = 0; i < d.length; i += 4 * 97) if (d[i] + d[i + 1] + d[i + 2] > 60) lit++;
            return {width: c.width, lit};
        }"""
    )
    assert painted["width"] > 700
    assert painted["lit"] > 100

    # Box 1: change its class; box 2: reject it; draw one more by dragging.
    page.select_option("#boxes li:nth-child(1) select", "Fall")
    page.get_by_label("reject box 2").click()
    expect(rows.nth(1)).to_have_class(re.compile(r"\brejected\b"))
    box = page.locator("#frame").bounding_box()
    assert box is not None
    scale = box["width"] / 768
    page.mouse.move(box["x"] + 478 * scale, box["y"] + 246 * scale)
    page.mouse.down()
    page.mouse.move(box["x"] + 500 * scale, box["y"] + 300 * scale, steps=5)
    page.mouse.move(box["x"] + 518 * scale, box["y"] + 338 * scale, steps=5)
    page.mouse.up()
    expect(rows).to_have_count(4)
    page.screenshot(path=str(shots / "edgeloop-labeling-page.png"))

    page.keyboard.press("Enter")
    expect(page.locator("#message")).to_contain_text("labeled with 3 boxes")
    expect(page.locator("#empty")).to_be_visible()
    expect(page.locator("#workspace")).to_be_hidden()
    expect(page.locator("#label-count")).to_have_text("1 / 50")
    page.screenshot(path=str(shots / "edgeloop-labeling-page-done.png"))
    assert errors == []

    # The label is in DuckDB (the API releases the file once idle).
    time.sleep(1.0)
    with Store(live_server.data_dir / "edgeloop.duckdb", lock_timeout_s=10).connect() as con:
        row = con.execute("SELECT boxes, labeler, frame_key FROM reviewed_labels").fetchone()
    assert row is not None
    boxes = json.loads(row[0])
    assert row[1:] == ("labeler", "vtest:000060")
    assert [b["class_name"] for b in boxes] == ["Fall", "Fall", "Fall"]
    assert boxes[0]["bbox_xyxy"] == [380, 212, 445, 308]
    assert boxes[1]["bbox_xyxy"] == [630, 274, 667, 388]
    x1, y1, x2, y2 = boxes[2]["bbox_xyxy"]
    assert (x1, y1) == pytest.approx((478, 246), abs=2)
    assert (x2, y2) == pytest.approx((518, 338), abs=2)


def test_a_bad_token_is_reported(live_server: LiveServer, page: object) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto(f"{live_server.base_url}/#token=wrong")
    expect(page.locator("#message")).to_contain_text("invalid bearer token")
    expect(page.locator("#token-dialog")).to_be_visible()
    page.fill("#token-input", LABELER["Authorization"].removeprefix("Bearer "))
    page.click("#token-form button[type=submit]")
    expect(page.locator("#empty")).to_be_visible()  # nothing queued: the empty state
