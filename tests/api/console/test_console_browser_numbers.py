"""What an operator reads on the console, in headless Chromium against real uvicorn, checked
against the store (issue 20): a fresh sign-in and a walk through every panel leave the
browser console clean (no error, no 401, no 404); small p-values in scientific notation and
a sane time axis for a single drift report; labels per hour over the time labels span; the
"confident" filter above the uncertainty band and frames with images by default; a stale
camera's last frames/s shown as stale with its age; a version's held-out evaluation and
corrections learned kept after a rollback and a second promotion; both aliases of a version;
a settings table that fits the page."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from api_support import needs_chromium
from console_support import (
    Console,
    Demo,
    add_drift,
    add_frames,
    demo_jpegs,
    heartbeat,
    label_pending,
    store_heartbeat,
)

from api.console.routes import PANELS
from edgeloop.registry import mlflow_client
from edgeloop.settings import LoopSettings
from edgeloop.store import Store

pytestmark = [pytest.mark.browser, needs_chromium]

TINY_P = 1.7e-76
"""The p-value of the issue's drift report (it read ``p=0.0000``)."""
STALE_FPS = 10.3
STALE_FOR = timedelta(minutes=32)
BURST = 110
"""Labels one labeler made in five minutes (the panel read 4.58 labels/h)."""


def _page(page: object) -> object:
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    return page


def _text(page: object, selector: str) -> str:
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    return page.locator(selector).first.inner_text(timeout=15_000).strip()


def _sign_in(page: object, base_url: str, token: str = "admin-token") -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto(f"{base_url}/console")
    expect(page.locator("#token-dialog")).to_be_visible()
    page.fill("#token-input", token)
    page.click("#token-form button[type=submit]")
    expect(page.locator("#whoami")).to_contain_text(f"({token.split('-')[0]})")


@pytest.fixture
def cases(demo: Demo, loop_settings: LoopSettings) -> Demo:
    """The issue's cases on top of the demo, written with the store's own writers before the
    API starts: camera ``gate`` with one drift report two days ago (p = 1.7e-76), a last
    heartbeat 32 minutes old at 10.3 frames/s, and frames with detections below, in and
    above the band (JPEGs stored for two of three); labeler ``carol`` with 110 labels in
    five minutes."""
    store = Store(loop_settings.duckdb_path)
    now = demo.now
    add_drift(
        store,
        "gate",
        at=now - timedelta(days=2),
        p_values={"brightness": TINY_P, "contrast": 0.3, "sharpness": 0.012},
    )
    store_heartbeat(
        store,
        heartbeat("gate", host="edge-04", frames_per_s=STALE_FPS),
        received_at=now - STALE_FOR,
    )
    jpegs = demo_jpegs(loop_settings.frames_dir / "gate", 2)
    add_frames(
        store,
        demo.fleet,
        "gate",
        start=now - timedelta(minutes=40),
        confidences=[[0.31, 0.92], [0.25, 0.37, 0.55], [0.28, 0.81]],
        jpeg_paths=[*jpegs, None],
    )
    label_pending(
        store,
        count=BURST,
        labeler="carol",
        at=now - timedelta(minutes=6),
        every=timedelta(minutes=5) / (BURST - 1),
    )
    return demo


def test_a_fresh_sign_in_and_every_panel_leave_the_browser_console_clean(
    console: Console, page: object
) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}")
            if msg.type in ("error", "warning")
            else None
        ),
    )
    page.on(
        "response",
        lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    # A request cut short by the test's own next navigation (net::ERR_ABORTED) is no error.
    page.on(
        "requestfailed",
        lambda r: (
            problems.append(f"failed {r.url}: {r.failure}")
            if "ERR_ABORTED" not in (r.failure or "")
            else None
        ),
    )
    _sign_in(page, console.base_url)
    for panel in PANELS:
        page.goto(f"{console.base_url}/console/{panel}")
        expect(page.locator("#panel table, #panel .thumbs").first).to_be_visible()
        page.wait_for_load_state("networkidle")
    # The labeling page shares the sign-in and the favicon.
    page.goto(f"{console.base_url}/")
    page.wait_for_load_state("networkidle")
    assert problems == []
    icon = page.request.get(f"{console.base_url}/favicon.ico")
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/")


def test_the_sign_in_names_the_token_command(console: Console, page: object) -> None:
    page = _page(page)
    page.goto(f"{console.base_url}/console/fleet")  # type: ignore[attr-defined]
    text = _text(page, "#token-dialog")
    assert "edgeloop token create" in text and "--role" in text
    assert "api-tokens.json" not in text and "edgeloop up" not in text
    page.goto(f"{console.base_url}/")  # type: ignore[attr-defined]
    labeling = _text(page, "#token-dialog")
    assert "edgeloop token create" in labeling and "api-tokens.json" not in labeling


def test_the_issues_numbers_read_as_the_store_holds_them(
    cases: Demo, console: Console, page: object
) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    base, store = console.base_url, console.store
    _sign_in(page, base)

    # Fleet: gate's heartbeat is 32 min old: 10.3 frames/s is its last value, not current.
    row = '#fleet-table tr[data-camera="gate"]'
    expect(page.locator(f'{row} [data-field="state"]')).to_have_text("stale")
    fps = page.locator(f'{row} [data-field="frames_per_s"]')
    expect(fps).to_have_class(re.compile(r"\bwas\b"))
    shown = fps.inner_text().split()
    assert shown[0] == f"{STALE_FPS:.1f}"
    with store.connect() as con:
        received = con.execute(
            "SELECT max(received_at) FROM agent_heartbeats WHERE camera_id = 'gate'"
        ).fetchall()[0][0]
    minutes = int(re.fullmatch(r"last, (\d+) min ago", " ".join(shown[1:])).group(1))  # type: ignore[union-attr]
    assert abs(minutes - (datetime.now(UTC) - received).total_seconds() / 60) <= 1
    online = '#fleet-table tr[data-camera="yard"] [data-field="frames_per_s"]'
    assert _text(page, online) == "11.2"  # an online camera's rate reads as current

    # Drift: p-values in scientific notation; one report's chart spans hours, not years.
    page.goto(f"{base}/console/drift")
    row = '#drift-table tr[data-camera="gate"]'
    assert _text(page, f'{row} [data-field="min_p_value"]') == "1.7e-76"
    details = page.locator("#drift-table tr.detail").filter(has_text="1.7e-76")
    expect(details.locator('[data-feature="brightness"]')).to_have_text("brightness p=1.7e-76")
    expect(details.locator('[data-feature="sharpness"]')).to_have_text("sharpness p=0.012")
    with store.connect() as con:
        (at,) = con.execute(
            "SELECT computed_at FROM drift_reports WHERE camera_id = 'gate'"
        ).fetchall()[0]
    expect(page.locator("#drift-share-gate canvas")).to_have_count(1)
    for chart in ("drift-share-gate", "drift-p-gate"):
        lo, hi = page.evaluate(f"[charts['{chart}'].scales.x.min, charts['{chart}'].scales.x.max]")
        assert lo < at.timestamp() < hi and hi - lo <= 2 * 3600, (chart, lo, hi)
    lo, hi = page.evaluate(
        "[charts['drift-share-yard'].scales.x.min, charts['drift-share-yard'].scales.x.max]"
    )
    with store.connect() as con:
        first, last = con.execute(
            "SELECT min(computed_at), max(computed_at) FROM drift_reports WHERE camera_id = 'yard'"
        ).fetchall()[0]
    assert lo <= first.timestamp() and last.timestamp() <= hi and hi - lo < 12 * 3600

    # Analytics: the time axis is the range asked for, whatever the data.
    page.goto(f"{base}/console/analytics?range=6h")
    expect(page.locator("#chart-rate canvas")).to_have_count(1)
    lo, hi = page.evaluate("[charts['chart-rate'].scales.x.min, charts['chart-rate'].scales.x.max]")
    assert hi - lo == pytest.approx(6 * 3600, abs=1)
    assert abs(hi - datetime.now(UTC).timestamp()) < 120

    # Labeling queue: carol's labels per hour over the time they span.
    page.goto(f"{base}/console/queue")
    with store.connect() as con:
        count, first, last = con.execute(
            "SELECT count(*), min(labeled_at), max(labeled_at) FROM reviewed_labels"
            " WHERE labeler = 'carol'"
        ).fetchall()[0]
    span_s = (last - first).total_seconds()
    row = 'tr[data-labeler="carol"]'
    assert _text(page, f'{row} [data-field="labels"]') == str(count) == str(BURST)
    assert _text(page, f'{row} [data-field="span"]') == f"{span_s / 60:.0f} min" == "5 min"
    assert _text(page, f'{row} [data-field="labels_per_hour"]') == f"{count * 3600 / span_s:.0f}"
    assert "labels/h over span" in _text(page, "#labelers-table thead").lower()

    # Inspections: frames with images by default; "confident" at or above the band.
    def detections(condition: str) -> int:
        with store.connect() as con:
            return int(
                con.execute(
                    "SELECT count(*) FROM prediction_logs p JOIN frames f USING (frame_key)"
                    f" WHERE {condition}"
                ).fetchall()[0][0]
            )

    page.goto(f"{base}/console/inspections")
    expect(page.locator("#inspections .thumb").first).to_be_visible()
    assert _text(page, '[data-field="count"]') == str(detections("f.jpeg_path IS NOT NULL"))
    assert page.locator("#inspections .noimg").count() == 0
    page.select_option("#band-select", "confident")  # camera: all
    page.click("form.filters button[type=submit]")
    expect(page.locator("#panel .summary")).to_contain_text("confident")
    high = console.settings.uncertainty_high
    assert _text(page, '[data-field="count"]') == str(
        detections(f"f.jpeg_path IS NOT NULL AND p.confidence >= {high}")
    )
    shown_conf = [
        float(t) for t in page.locator('#inspections [data-field="confidence"]').all_inner_texts()
    ]
    assert shown_conf and min(shown_conf) >= high
    page.goto(f"{base}/console/inspections?band=low&camera_id=gate")
    expect(page.locator("#panel .summary")).to_contain_text("low confidence")
    assert sorted(
        float(t) for t in page.locator('#inspections [data-field="confidence"]').all_inner_texts()
    ) == [0.25, 0.31, 0.37]  # 0.28 is on the frame without a JPEG
    expect(page.locator("#camera-select")).to_have_value("gate")
    page.check("#include-no-image")
    page.click("form.filters button[type=submit]")
    expect(page.locator("#inspections .thumb")).to_have_count(4)
    expect(page.locator("#inspections .noimg")).to_have_count(1)

    # Settings: the table fits a laptop's page (long values wrap).
    page.set_viewport_size({"width": 1024, "height": 768})
    page.goto(f"{base}/console/settings")
    expect(page.locator("#settings-table")).to_be_visible()
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0


def test_a_versions_evaluation_survives_a_rollback_and_a_second_promotion(
    console: Console, page: object
) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    v1, v2 = console.demo.versions
    _sign_in(page, console.base_url)
    page.goto(f"{console.base_url}/console/models")

    def act(form: str, reason: str, production: str) -> None:
        seen = page.evaluate("Number(document.body.dataset.liveEvents || 0)")
        target = page.locator(form)
        target.locator("input[name=reason]").fill(reason)
        target.locator("button").click()
        expect(page.locator("#action-status")).to_contain_text(f"production is now v{production}")
        expect(page.locator('[data-field="production_version"]').first).to_have_text(
            f"v{production}"
        )
        # The alias move also reaches the page as a live change event, which redraws the
        # panel once more: wait for it, so the next form is not filled while it is replaced.
        page.wait_for_function(f"Number(document.body.dataset.liveEvents || 0) > {seen}")
        page.wait_for_function("!document.querySelector('.htmx-request')")

    act(f'form[data-url="/api/models/{v2}/promote"]', "staging beat production", v2)
    act("#rollback-form", "false alarms at night", v1)
    act(f'form[data-url="/api/models/{v2}/promote"]', "fixed the night scenes", v2)

    # The evaluation recorded with v2's staging move, formatted from what the test recorded.
    e = console.demo.evaluation
    cand, prod = e["candidate"], e["production"]
    gain = e["evidence"]["gain_mAP50-95"]
    expected = "; ".join(
        [
            *(
                f"{k} {cand[k]:.4f} (prod {prod[k]:.4f})"
                for k in ("mAP50", "mAP50-95", "precision", "recall")
            ),
            f"gain mAP50-95 {gain['point']:+.4f} [{gain['low']:+.4f}, {gain['high']:+.4f}]",
            f"{e['val_images']} held-out images",
            f"vs v{v1}",
        ]
    )
    row = page.locator(f'#versions-table tr[data-version="{v2}"]')
    expect(row.locator('[data-field="evaluation"]')).to_have_text(expected)
    learned, regressions = e["evidence"]["corrections_learned"], e["evidence"]["regressions"]
    cell = row.locator('[data-field="corrections_learned"]')
    expect(cell).to_contain_text(
        f"{learned['count'] / learned['n']:.2f} ({learned['count']}/{learned['n']})"
    )
    expect(cell).to_contain_text(
        f"regressions {regressions['count'] / regressions['n']:.2f}"
        f" ({regressions['count']}/{regressions['n']})"
    )
    # v2 holds both aliases: the registry says so, and so does the panel.
    client = mlflow_client(console.settings)
    name = console.settings.model_name
    aliases = client.get_registered_model(name).aliases
    assert {alias: str(v) for alias, v in aliases.items()} == {"production": v2, "staging": v2}
    assert sorted(client.get_model_version(name, v2).aliases) == ["production", "staging"]
    expect(row.locator('[data-field="aliases"] .badge')).to_have_text(["production", "staging"])
