"""The console in headless Chromium (Debian's, driven by Playwright) against real uvicorn on
a tmp data dir with demo-like data and a real MLflow registry: sign in, open every panel,
check the numbers shown against the store, and promote and roll back as an admin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from api_support import needs_chromium
from console_support import Console

from api.console.routes import PANELS
from edgeloop.store import deployments

pytestmark = [pytest.mark.browser, needs_chromium]


def _text(page: object, selector: str) -> str:
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    return page.locator(selector).first.inner_text(timeout=15_000).strip()


def test_sign_in_open_every_panel_and_check_the_numbers(console: Console, page: object) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{console.base_url}/console")
    assert page.url.endswith("/console/fleet")
    dialog = page.locator("#token-dialog")
    expect(dialog).to_be_visible()
    page.fill("#token-input", "admin-token")
    page.click("#token-form button[type=submit]")
    expect(page.locator("#whoami")).to_have_text("admin (admin)")

    demo = console.demo
    # Fleet: entrance over the 5 minutes before the panel was made, from the inserted rows.
    row = '#fleet-table tr[data-camera="entrance"]'
    expect(page.locator(f'{row} [data-field="state"]')).to_have_text("online")
    # One read of the panel (htmx swaps it every 5 s): its time and entrance's figures.
    made_at, per_min, share = page.evaluate(
        """() => {
            const row = document.querySelector('#fleet-table tr[data-camera="entrance"]');
            const field = (name) => row.querySelector(`[data-field="${name}"]`).innerText.trim();
            return [document.querySelector("#generated").dataset.at,
                    field("detections_per_min"), field("uncertain_share")];
        }"""
    )
    frames, dets = demo.fleet.of("entrance", datetime.fromisoformat(made_at) - timedelta(minutes=5))
    uncertain = sum(d["uncertain"] for d in dets)
    assert per_min == f"{len(dets) / 5:.1f}"
    assert share == f"{100 * uncertain / len(dets):.1f} %"
    expect(
        page.locator('#fleet-table tr[data-camera="loading-dock"] [data-field="state"]')
    ).to_have_text("stale")
    assert "production" in _text(page, f'{row} [data-field="model_version"]')

    # Analytics (1 h): yard's frames and detections in the last hour.
    page.goto(f"{console.base_url}/console/analytics?range=1h")
    since = datetime.now(UTC) - timedelta(hours=1)
    frames, dets = demo.fleet.of("yard", since)
    row = '#analytics-table tr[data-camera="yard"]'
    assert _text(page, f'{row} [data-field="frames"]') == str(len(frames))
    assert _text(page, f'{row} [data-field="detections"]') == str(len(dets))
    defect = sum(1 for f in frames if f["detection_count"] > 0) / len(frames)
    assert _text(page, f'{row} [data-field="defect_rate"]') == f"{100 * defect:.1f} %"
    expect(page.locator("#chart-rate canvas")).to_have_count(1)
    expect(page.locator("#chart-confidence canvas")).to_have_count(1)

    # Drift: yard drifted on its latest report; the report opens from the API.
    page.goto(f"{console.base_url}/console/drift")
    row = '#drift-table tr[data-camera="yard"]'
    expect(page.locator(f'{row} [data-field="drifted"]')).to_have_text("drifted")
    href = page.locator(f'{row} [data-field="report"]').get_attribute("href")
    assert href == "/reports/drift/yard.html"
    expect(page.locator("#drift-charts canvas").first).to_be_visible()
    report = page.context.request.get(f"{console.base_url}{href}")  # the cookie signs it in
    assert report.status == 200 and "Evidently drift report: yard" in report.text()

    # Labeling queue: 20 labels, by alice (14) and bob (6); the rest pending.
    page.goto(f"{console.base_url}/console/queue")
    with console.store.connect() as con:
        pending = con.execute(
            "SELECT count(*) FROM labeling_queue WHERE status = 'pending'"
        ).fetchall()[0][0]
    assert _text(page, '.summary [data-field="pending"]') == str(pending)
    assert _text(page, 'tr[data-labeler="alice"] [data-field="labels"]') == "14"

    # Retraining: the event with its Dagster link, and the admin's trigger control.
    page.goto(f"{console.base_url}/console/retraining")
    assert _text(page, '[data-field="labels_since_training"]') == "20 / 50"
    link = page.locator('[data-field="dagster_run"]').first
    assert link.get_attribute("href") == "http://127.0.0.1:3000/runs/8c3e2f1a-demo-run"
    expect(page.locator("#trigger-form")).to_be_visible()
    page.click("#trigger-form button")
    expect(page.locator("#action-status")).to_contain_text("503")  # no Dagster in this test

    # Inspections: thumbnails with boxes, newest first.
    page.goto(f"{console.base_url}/console/inspections?camera_id=entrance")
    expect(page.locator("#inspections .thumb").first).to_be_visible()
    assert page.locator("#inspections .thumb .box").count() == 24
    page.wait_for_function(
        "() => { const img = document.querySelector('#inspections img');"
        " return img && img.complete && img.naturalWidth > 0; }",
        timeout=15_000,
    )
    width = page.locator("#inspections img").first.evaluate("img => img.naturalWidth")
    assert width == 768  # the frame's JPEG, fetched with the token cookie

    # Settings: effective values with their sources, no token anywhere.
    page.goto(f"{console.base_url}/console/settings")
    assert _text(page, 'tr[data-setting="loop.uncertainty_low"] [data-field="source"]') == "default"
    assert "admin-token" not in page.content()

    # Every panel opened without a browser error.
    for panel in PANELS:
        page.goto(f"{console.base_url}/console/{panel}")
        expect(page.locator("#panel table, #panel .thumbs").first).to_be_visible()
    assert errors == []


def test_admin_promotes_and_rolls_back_a_labeler_sees_no_controls(
    console: Console, page: object
) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    v1, v2 = console.demo.versions
    page.goto(f"{console.base_url}/console/models#token=labeler-token")
    expect(page.locator(f'#versions-table tr[data-version="{v2}"]')).to_be_visible()
    assert page.locator("form.admin-action").count() == 0

    page.evaluate("localStorage.clear()")
    page.goto(f"{console.base_url}/console/models#token=admin-token")
    form = page.locator(f'form[data-url="/api/models/{v2}/promote"]')
    seen = page.evaluate("Number(document.body.dataset.liveEvents || 0)")
    form.locator("input[name=reason]").fill("staging beat production in review")
    form.locator("button").click()
    expect(page.locator("#action-status")).to_contain_text(f"production is now v{v2}")
    expect(page.locator('[data-field="production_version"]').first).to_have_text(f"v{v2}")
    # The alias move also reaches the page as a live change event, which redraws the panel
    # once more: wait for it, so the rollback form is not filled while it is replaced.
    page.wait_for_function(f"Number(document.body.dataset.liveEvents || 0) > {seen}")
    page.wait_for_function("!document.querySelector('.htmx-request')")
    with console.store.connect() as con:
        move = deployments.recent(con=con, limit=1)[0]
    assert (move["version"], move["action"], move["actor"], move["reason"]) == (
        v2,
        "promote",
        "admin",
        "staging beat production in review",
    )
    rollback = page.locator("#rollback-form")
    rollback.locator("input[name=reason]").fill("more false alarms at night")
    rollback.locator("button").click()
    expect(page.locator("#action-status")).to_contain_text(f"production is now v{v1}")
    with console.store.connect() as con:
        move = deployments.recent(con=con, limit=1)[0]
    assert (move["version"], move["action"], move["reason"]) == (
        v1,
        "rollback",
        "more false alarms at night",
    )
    history = page.locator("#deployments-table tbody tr")
    expect(history.first.locator('[data-field="action"]')).to_have_text("rollback")
