"""The grid review's audit sample in headless Chromium against real uvicorn, by keyboard:
confident crops kept or flipped, a frame with no detection flipped to "missed object", one
Enter; then the verdicts in the store, exactly, and the console's review panel showing the
rates. The audit share is 0.5 here and the frame keys are picked by the hash rule."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from api_support import AGENT, LiveServer, batch, detection, frame, jpeg_bytes
from test_labeling_page import (
    SCREENSHOT_ENV,
    VTEST_60_BOXES,
    page,  # noqa: F401 (the fixture)
    press,
    sign_in,
    vtest_jpeg,
)

from edgeloop.annotations import ReviewedBox
from edgeloop.audit import in_audit_sample
from edgeloop.store import Store, labels, queue, verdicts

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser]

SHARE = 0.5
SAMPLED = [k for k in (f"vtest:{i:06d}" for i in range(100)) if in_audit_sample(k, SHARE)]
NOT_SAMPLED = next(k for k in (f"vtest:{i:06d}" for i in range(100)) if k not in SAMPLED)


@pytest.fixture(autouse=True)
def _audit_half(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("EDGELOOP_AUDIT_SHARE", str(SHARE))  # uvicorn inherits it
    yield


def _vtest(key: str, video_frame: int, *dets: dict[str, object]) -> dict[str, object]:
    return frame(
        key,
        camera_id="vtest",
        index=int(key.split(":")[1]),
        width=768,
        height=576,
        detections=list(dets),
        jpeg=vtest_jpeg(video_frame),
    )


def _ann_labels_four_frames(live_server: LiveServer) -> None:
    """Another labeler, ann, an hour ago: four frames out of the sample, each with two
    pre-labels (0.55 Normal, 0.92 Fall), labeled 30, 45 and 20 s apart: the 2nd's Fall box
    rejected, the 3rd's Normal box moved 5 px (2 of 8 pre-labels changed)."""
    keys = [k for k in (f"cam-1:{i}" for i in range(100)) if not in_audit_sample(k, SHARE)][:4]
    proposals = [detection(100, 50, 180, 230, 0.55), detection(300, 100, 380, 300, 0.92, "Fall")]
    frames = [
        frame(k, index=i, detections=proposals, jpeg=jpeg_bytes(seed=i)) for i, k in enumerate(keys)
    ]
    ack = httpx.post(
        f"{live_server.base_url}/api/ingest", json=batch(*frames), headers=AGENT, timeout=30
    )
    assert ack.status_code == 200, ack.text
    normal = ReviewedBox(bbox_xyxy=(100, 50, 180, 230), class_id=0, class_name="Normal")
    moved = ReviewedBox(bbox_xyxy=(105, 50, 185, 230), class_id=0, class_name="Normal")
    fall = ReviewedBox(bbox_xyxy=(300, 100, 380, 300), class_id=1, class_name="Fall")
    plan = [(0, [normal, fall]), (30, [normal]), (75, [moved, fall]), (95, [normal, fall])]
    start = datetime.now(UTC) - timedelta(hours=1)
    with Store(live_server.data_dir / "edgeloop.duckdb", lock_timeout_s=30).connect() as con:
        for key, (seconds, boxes) in zip(keys, plan, strict=True):
            item = queue.item_for_frame(con=con, frame_key=key)
            assert item is not None
            labels.create(
                con=con,
                item_id=item["item_id"],
                frame_key=key,
                camera_id="cam-1",
                boxes=boxes,
                labeler="ann",
                labeled_at=start + timedelta(seconds=seconds),
            )


def test_audit_grid_by_keyboard_then_the_console_shows_the_rate(
    live_server: LiveServer,
    page: Page,  # noqa: F811
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    crops, empty, empty_too = SAMPLED[0], SAMPLED[1], SAMPLED[2]
    people, grass, far = VTEST_60_BOXES
    payload = batch(
        # In the sample: vtest.avi frame 60, two people and a patch of grass, all confident.
        _vtest(
            crops,
            60,
            detection(*people, 0.8),
            detection(*grass, 0.9),
            detection(*far, 0.95),
        ),
        _vtest(empty, 100),  # no detection: checked for a missed object
        _vtest(empty_too, 200),
        # Not in the sample (and it names the class Fall, for the wrong-class flip).
        _vtest(NOT_SAMPLED, 300, detection(1, 1, 9, 9, 0.9, "Fall")),
    )
    ack = httpx.post(f"{live_server.base_url}/api/ingest", json=payload, headers=AGENT, timeout=30)
    assert ack.status_code == 200, ack.text
    _ann_labels_four_frames(live_server)

    sign_in(page, live_server.base_url)
    expect(page.locator("#empty")).to_be_visible()
    press(page, "g")
    tiles = page.locator("#grid-tiles .tile")
    expect(tiles).to_have_count(4)  # every unlabeled detection, the Fall one too
    page.select_option("#grid-class", "Normal")
    page.locator("#grid-form button[type=submit]").click()
    expect(tiles).to_have_count(3)
    page.select_option("#grid-source", "audit")  # the sample is reviewed whole: any class
    expect(page.locator("#grid-class")).to_have_value("")
    expect(tiles).to_have_count(5)
    expect(tiles.nth(0)).to_contain_text("Normal 0.80 · audit")
    expect(tiles.nth(3)).to_contain_text("vtest frame, no detection")
    page.locator("#grid").focus()
    # Crop 1 kept; the grass wrong; the far person wrong class (Fall); the first empty frame
    # has a missed object; the second flipped by mistake, then accepted back with A.
    press(page, "ArrowRight", "x", "ArrowRight", "c", "ArrowRight", "x", "ArrowRight", "x", "a")
    expect(tiles.nth(1)).to_have_class(re.compile(r"\bwrong\b"))
    expect(tiles.nth(2)).to_contain_text("→ Fall")
    expect(tiles.nth(3)).to_have_class(re.compile(r"\bmissed\b"))
    expect(tiles.nth(4)).to_contain_text("✓ nothing missed")
    shots = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path)
    page.screenshot(path=str(shots / "edgeloop-grid-audit.png"))
    press(page, "Enter")
    expect(page.locator("#message")).to_contain_text(
        "5 tiles reviewed, 3 flipped; 2 frames labeled. 1 frame(s) with a missed object sent"
    )
    expect(page.locator("#grid-empty")).to_be_visible()

    with Store(live_server.data_dir / "edgeloop.duckdb", lock_timeout_s=30).connect() as con:
        stored = verdicts.for_frames(con=con, frame_keys=[crops, empty, empty_too])
        crop_label = labels.latest_for_frame(con=con, frame_key=crops)
        empty_label = labels.latest_for_frame(con=con, frame_key=empty_too)
        missed_item = queue.item_for_frame(con=con, frame_key=empty)
    got = [
        tuple(r[k] for k in ("target_id", "class_name", "verdict", "corrected_class"))
        + tuple(r[k] for k in ("audit", "reviewer", "label_id"))
        for r in stored
    ]
    assert crop_label is not None and empty_label is not None and missed_item is not None
    assert got == [
        (f"{crops}:0", "Normal", "ok", None, True, "labeler", crop_label["label_id"]),
        (f"{crops}:1", "Normal", "wrong", None, True, "labeler", crop_label["label_id"]),
        (f"{crops}:2", "Normal", "wrong_class", "Fall", True, "labeler", crop_label["label_id"]),
        (empty, None, "missed", None, True, "labeler", None),
        (empty_too, None, "ok", None, True, "labeler", empty_label["label_id"]),
    ]
    assert [(list(b.bbox_xyxy), b.class_name) for b in crop_label["boxes"]] == [
        (list(people), "Normal"),
        (list(far), "Fall"),
    ]
    assert empty_label["boxes"] == [] and missed_item["status"] == "pending"

    page.goto(f"{live_server.base_url}/console/review#token=labeler-token")
    summary = page.locator("#audit-summary")
    expect(summary).to_contain_text("Confident-mistake rate: 66.7 % (2 of 3; 95 % CI")
    expect(summary).to_contain_text("missed objects on frames with no detection: 50.0 % (1 of 2")
    # ann: 3 timed items (5 boxes) in 95 s; labeler: one submit, so no time measured.
    fields = ("items", "boxes", "items_per_hour", "boxes_per_hour", "median_s_per_item")
    shown = {
        "ann": ("4", "7", "114", "189", "30.0", "25.0 %"),
        "labeler": ("2", "2", "–", "–", "–", "66.7 %"),
    }
    for who, values in shown.items():
        row = page.locator(f'#throughput-table tr[data-labeler="{who}"]')
        for field, value in zip((*fields, "changed_share"), values, strict=True):
            expect(row.locator(f'[data-field="{field}"]')).to_have_text(value)
    page.screenshot(path=str(shots / "edgeloop-console-review.png"), full_page=True)
