"""The alerts panel in headless Chromium (Debian's, driven by Playwright) against real
uvicorn: a labeler acknowledges an open alert with its button, and a new alert raised in
the store (as the drift sensor would) appears through the server-sent event stream, with
the 5 s poll paused."""

from __future__ import annotations

import pytest
from api_support import LiveServer, chromium_page, needs_chromium, raise_drift_alert

from edgeloop.settings import LoopSettings

pytestmark = [pytest.mark.browser, needs_chromium]


def test_acknowledge_and_a_live_alert(live_server: LiveServer, loop_settings: LoopSettings) -> None:
    from playwright.sync_api import Page, expect

    yard = raise_drift_alert(loop_settings.store(), "yard", 0.67)
    with chromium_page(1300, 800) as page:
        assert isinstance(page, Page)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{live_server.base_url}/console/drift#token=labeler-token")
        banner = page.locator("#alerts-banner")
        expect(banner).to_have_text("1 open drift alert: acknowledge on the alerts panel")
        banner.click()
        expect(page.locator("#live-status")).to_have_text("live")
        item = page.locator(f'#open-alerts li[data-alert="{yard}"]')
        expect(item.locator('[data-field="summary"]')).to_have_text(
            "camera yard drifted: drift share 0.67 > 0.3"
        )
        expect(item.locator('[data-field="delivery"]')).to_have_text("pending")

        item.locator('button[data-action="acknowledge"]').click()
        expect(page.locator("#action-status")).to_contain_text(
            f"alert {yard} acknowledged by labeler"
        )
        expect(page.locator("#no-open-alerts")).to_be_visible()
        row = page.locator(f'#alerts-table tr[data-alert="{yard}"]')
        expect(row.locator('[data-field="status"]')).to_have_text("acknowledged")
        expect(row.locator('[data-field="acknowledged"]')).to_contain_text("labeler")
        expect(banner).to_be_hidden()

        # A new alert, written to the store by another process: the stream names the alerts
        # panel, which refreshes while the poll is paused (the stream is open).
        events_before = int(page.evaluate("() => Number(document.body.dataset.liveEvents || 0)"))
        gate = raise_drift_alert(loop_settings.store(), "gate", 0.5)
        expect(page.locator(f'#open-alerts li[data-alert="{gate}"]')).to_be_visible()
        assert page.evaluate("() => window.edgeloopLive") is True
        assert int(page.evaluate("() => Number(document.body.dataset.liveEvents)")) > events_before
        assert "alerts" in page.evaluate("() => document.body.dataset.livePanels").split(",")
        expect(banner).to_have_text("1 open drift alert: acknowledge on the alerts panel")
        assert errors == []
