"""The console tests use the API tests' fixtures (``tests/api/conftest.py``: an app on the
test's own data dir, tokens per role, a TestClient, the store); their own helpers live
beside them (``console_support.py``, ``registry_support.py``). The browser tests share the
fixtures below: the demo-like data served by a real uvicorn, and a page in Debian's
Chromium."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from api_support import chromium_page, start_test_api
from console_support import Console, Demo, load_demo, send_heartbeats

from edgeloop.settings import LoopSettings
from edgeloop.store import Store


@pytest.fixture
def demo(loop_settings: LoopSettings, tmp_path: Path) -> Demo:
    """``console_support.load_demo``'s loop in the test's data dir (a test may add rows
    before asking for ``console``, which starts the API on them)."""
    return load_demo(loop_settings, tmp_path / "scratch", now=datetime.now(UTC))


@pytest.fixture
def console(loop_settings: LoopSettings, demo: Demo) -> Iterator[Console]:
    """The API (real uvicorn, real MLflow registry) on the demo's data, with the online
    agents' heartbeats sent."""
    with start_test_api(loop_settings, warm_registry=True) as service:
        send_heartbeats(service.url, "agent-token")
        yield Console(service.url, demo, Store(loop_settings.duckdb_path), loop_settings)


@pytest.fixture
def page(console: Console) -> Iterator[object]:
    """A fresh page (no token saved) in headless Chromium, 1400 x 900."""
    with chromium_page(1400, 900) as fresh:
        yield fresh
