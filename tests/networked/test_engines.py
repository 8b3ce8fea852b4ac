"""The networked topology's engines start here from packages and work offline together.

PostgreSQL 15 (Debian) and an S3 endpoint (moto) are started by the test; DuckDB's
extensions load from their wheels. This guards the pin that makes DuckLake usable on an
air-gapped site: a ``duckdb`` upgrade without matching ``duckdb-extension-*`` wheels fails
here, not on a customer's loop host.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from servers import Postgres, S3Endpoint, postgres_server, require_server, s3_server

from edgeloop.store.extensions import (
    WHEEL_PACKAGES,
    ExtensionUnavailableError,
    extension_path,
    load_extension,
)

pytestmark = pytest.mark.integration


def test_every_packaged_extension_matches_the_running_duckdb() -> None:
    for name in WHEEL_PACKAGES:
        path = extension_path(name)
        assert path.parts[-2] == f"v{duckdb.__version__}"
        con = duckdb.connect()
        load_extension(con, name)
        loaded = con.execute(
            "SELECT loaded FROM duckdb_extensions() WHERE extension_name = ?", [name]
        ).fetchone()
        assert loaded == (True,), name


def test_an_unknown_extension_says_which_exist() -> None:
    with pytest.raises(ExtensionUnavailableError, match="known:"):
        extension_path("spatial")


def _lake_connection(pg: Postgres, s3: S3Endpoint, *, data_path: bool) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the wheels' extensions and the lake attached as ``lake``."""
    con = duckdb.connect()
    for name in ("postgres_scanner", "httpfs", "ducklake"):
        load_extension(con, name)
    con.execute(
        f"CREATE SECRET (TYPE s3, KEY_ID '{s3.access_key}', SECRET '{s3.secret_key}', "
        f"REGION '{s3.region}', ENDPOINT '127.0.0.1:{s3.port}', URL_STYLE 'path', "
        "USE_SSL false)"
    )
    options = " (DATA_PATH 's3://edgeloop/lake/')" if data_path else ""
    con.execute(f"ATTACH 'ducklake:postgres:{pg.dsn_for('lake')}' AS lake{options}")
    return con


def test_ducklake_with_its_catalog_in_postgres_and_its_data_on_s3(tmp_path: Path) -> None:
    require_server("postgres")
    require_server("s3")
    import psycopg

    with postgres_server(tmp_path / "servers") as pg, s3_server(tmp_path / "servers") as s3:
        with psycopg.connect(pg.url, autocommit=True) as admin:
            admin.execute("CREATE DATABASE lake")
        s3.client().create_bucket(Bucket="edgeloop")  # type: ignore[attr-defined]
        con = _lake_connection(pg, s3, data_path=True)
        con.execute("CREATE TABLE lake.detections (detection_id VARCHAR, confidence DOUBLE)")
        # 1,000 rows: DuckLake inlines small inserts into the catalog; this many go to Parquet.
        con.execute("INSERT INTO lake.detections SELECT 'd' || i, i / 1000 FROM range(1000) t(i)")
        con.close()

        # A second process-like reader: a fresh connection sees the committed rows.
        reader = _lake_connection(pg, s3, data_path=False)
        rows = reader.execute("SELECT count(*), max(confidence) FROM lake.detections").fetchall()
        assert rows == [(1000, 0.999)]
        objects = s3.client().list_objects_v2(Bucket="edgeloop")  # type: ignore[attr-defined]
        assert any(o["Key"].endswith(".parquet") for o in objects.get("Contents", []))
        with psycopg.connect(pg.url_for("lake")) as catalog:
            tables = catalog.execute("SELECT table_name FROM ducklake_table").fetchall()
        assert ("detections",) in tables
