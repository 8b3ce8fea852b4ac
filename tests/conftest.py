"""Shared test fixtures: real media locations and an isolated data folder per test."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import Postgres, postgres_server, require_server
from support import SAMPLES_DIR, SEED_PT, require, run_python

from edgeloop.settings import LoopSettings, get_settings
from edgeloop.store import AnyStore, Store

BACKENDS = ("duckdb", "postgres")
"""The store's backends; tests that take ``store`` run once on each (house rule 12)."""


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own EDGELOOP_DATA_DIR; the repo's data/ is never written."""
    data_dir = tmp_path / "data"
    monkeypatch.setenv("EDGELOOP_DATA_DIR", str(data_dir))
    monkeypatch.delenv("EDGELOOP_DB_PATH", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("EDGELOOP_DATABASE_URL", raising=False)
    monkeypatch.delenv("EDGELOOP_OBJECT_STORE_URL", raising=False)
    # Tokens come from the test's own data dir (or the test's EDGELOOP_API_TOKENS), never
    # from the developer's shell.
    monkeypatch.delenv("EDGELOOP_API_TOKENS", raising=False)
    monkeypatch.delenv("EDGELOOP_API_TOKENS_FILE", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(data_dir / "dagster"))
    get_settings.cache_clear()
    yield data_dir
    get_settings.cache_clear()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "backends: run the test once per store backend (BACKENDS); its ``loop_settings`` "
        "name a fresh PostgreSQL database on the PostgreSQL run",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``backends`` run once per backend, as the parameter ``backend``."""
    if metafunc.definition.get_closest_marker("backends") is None:
        return
    if "backend" not in metafunc.fixturenames:
        metafunc.fixturenames.append("backend")
    metafunc.parametrize("backend", BACKENDS)


@pytest.fixture
def loop_settings(isolated_data_dir: Path, request: pytest.FixtureRequest) -> LoopSettings:
    """Loop settings on the test's own data folder; on the ``postgres`` run of a test
    marked ``backends``, its tables in a fresh PostgreSQL database."""
    callspec = getattr(request.node, "callspec", None)
    backend = callspec.params.get("backend") if callspec is not None else None
    url = request.getfixturevalue("postgres_database") if backend == "postgres" else None
    return LoopSettings(data_dir=isolated_data_dir, database_url=url)


@pytest.fixture
def samples_dir() -> Path:
    return require(SAMPLES_DIR / "vtest.avi").parent


@pytest.fixture
def seed_pt() -> Path:
    return require(SEED_PT)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """One PostgreSQL 15 server for the session (Debian's package), started on first use;
    each test gets its own database from ``postgres_database``."""
    require_server("postgres")
    with postgres_server(tmp_path_factory.mktemp("servers")) as server:
        yield server


@pytest.fixture
def postgres_database(postgres: Postgres) -> Iterator[str]:
    """The URL of a new, empty database on the session's server, dropped after the test."""
    import psycopg

    name = f"edgeloop_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}".encode())
    yield postgres.url_for(name)
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


def open_backend(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> AnyStore:
    """A fresh, empty store on ``backend``: a DuckDB file under ``tmp_path``, or a new
    PostgreSQL database (``postgres_database``)."""
    if backend == "duckdb":
        return Store(tmp_path / "db" / "edgeloop.duckdb")
    from edgeloop.store.postgres import PostgresStore

    return PostgresStore(request.getfixturevalue("postgres_database"))


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnyStore]:
    """A fresh, empty store, once per backend (``BACKENDS``)."""
    opened = open_backend(request.param, request, tmp_path)
    yield opened
    opened.close()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str | None:
    """None (the embedded DuckDB file) or a fresh PostgreSQL database's URL: a test that
    builds its loop with ``loopdata.make_loop(tmp_path, database_url=database_url)`` runs
    once per backend."""
    if request.param == "duckdb":
        return None
    url: str = request.getfixturevalue("postgres_database")
    return url


@pytest.fixture(scope="session")
def seed_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed detector exported to ONNX once per session (1x3x640x640 fp32, classes
    ``Normal``, ``Fall``) from ``data/seed/best.pt`` (``make data``), by the export
    ``edgeloop init`` runs (``edgeloop.bootstrap.export_onnx``). Built here rather than
    read from ``data/seed/best.onnx``, which only a benchmark leaves: in a fresh clone the
    tests that read that file were skipped. Exported in another interpreter: importing
    ultralytics replaces ``PIL.Image.open`` with its own wrapper for the whole process,
    which the API process never imports."""
    pt = require(SEED_PT)
    work = tmp_path_factory.mktemp("seed-onnx")
    code = (
        "import json, pathlib\n"
        "from edgeloop.offline import configure_offline_environment\n"
        "from edgeloop.bootstrap import export_onnx\n"
        f"work = pathlib.Path({str(work)!r})\n"
        "configure_offline_environment(work / 'ultralytics')\n"
        f"path, names = export_onnx(pathlib.Path({str(pt)!r}), work / 'export')\n"
        "print(json.dumps({'path': str(path), 'names': names}))\n"
    )
    exported = json.loads(run_python(code).strip().splitlines()[-1])
    assert exported["names"] == ["Normal", "Fall"]
    return Path(exported["path"])
