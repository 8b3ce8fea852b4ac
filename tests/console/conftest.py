"""Fixtures of the console tests: an app on the test's own data dir (tests/conftest.py),
tokens per role, and a TestClient. The registry is a stub without versions except where a
test builds a real MLflow store (``registered_models``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "api"))

from api_support import TOKENS, NoModelRegistry  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from api.deps import get_registry  # noqa: E402
from api.main import create_app  # noqa: E402
from api.settings import ApiSettings  # noqa: E402
from edgeloop.cli.services import free_port  # noqa: E402
from edgeloop.settings import LoopSettings  # noqa: E402
from edgeloop.store import Store  # noqa: E402


@pytest.fixture
def api_settings(loop_settings: LoopSettings) -> ApiSettings:
    return ApiSettings(
        loop=loop_settings,
        tokens=TOKENS,  # type: ignore[arg-type]
        warm_registry=False,
        dagster_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        dagster_timeout_s=5,
    )


@pytest.fixture
def app(api_settings: ApiSettings) -> FastAPI:
    application = create_app(api_settings)
    application.dependency_overrides[get_registry] = NoModelRegistry
    return application


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def store(loop_settings: LoopSettings) -> Store:
    return Store(loop_settings.duckdb_path)
