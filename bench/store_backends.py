"""Where frames and detections should live in the networked topology: measured, not guessed.

Issue 16 asks to put them in PostgreSQL, or in DuckLake (catalog in PostgreSQL, Parquet in
object storage) if measurements say it serves the analytics better. This benchmark loads
one SIMULATED fleet (``bench/fleetdata.py``: 1,000,000 detections over 24 h, 3 cameras)
into three engines and times, in one run on one machine:

  * the console's analytic queries (``edgeloop.store.analytics``: camera_window,
    detection_series, confidence_histogram, class_mix, camera_latest) over the last 1 h and
    24 h: on the embedded DuckDB file (the baseline, today's store), on DuckLake through the
    very same functions (DuckDB SQL, the catalog ``ATTACH``ed and ``USE``d), and on
    PostgreSQL natively (the same queries translated by hand to PostgreSQL SQL below, with
    indexes on ``captured_at``);
  * ingest of 10,000-detection batches (frames and detections in one transaction): a DuckDB
    Arrow insert (baseline), a DuckLake Arrow insert (one Parquet file per table and batch
    on the object store), and PostgreSQL ``COPY ... FROM STDIN (FORMAT BINARY)`` through
    psycopg 3.

The servers are real and come from packages (``tests/servers.py``): PostgreSQL 15 from
Debian's ``postgresql``, the S3 endpoint from PyPI's ``moto[server]``; the DuckDB extensions
load from their wheels (``edgeloop.store.extensions``), never from the network. It measures
the engines from one process, not yet through API replicas (the networked store does not
exist yet): the issue's end-to-end targets stay for the benchmarks that drive the API.

Usage: ``uv run --frozen python bench/store_backends.py [--detections 1000000]``.
Target (issue 16, engine level): the chosen engine answers every console query at p95
<= 300 ms over 24 h at 1M detections and ingests >= 20,000 detections/s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import duckdb  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
from fleetdata import load_fleet  # noqa: E402
from servers import postgres_server, remove_tree, s3_server  # noqa: E402

from edgeloop.store import analytics  # noqa: E402
from edgeloop.store.extensions import load_extension  # noqa: E402

TARGET_PANEL_MS = 300.0
TARGET_INGEST_PER_S = 20_000.0
BATCH_DETECTIONS = 10_000
BUCKET = "edgeloop"

# The analytics queries in PostgreSQL's dialect (quantile_cont -> percentile_cont,
# epoch() -> extract(epoch ...), arg_max -> DISTINCT ON), one per console query.
PG_QUERIES = {
    "camera_window": """
        WITH f AS (
            SELECT camera_id, count(*) AS frames,
                   count(*) FILTER (WHERE detection_count > 0) AS frames_with_detection,
                   sum(detection_count) AS detections,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY inference_ms) AS p50,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY inference_ms) AS p95
            FROM frames WHERE captured_at >= %(since)s AND captured_at < %(until)s
            GROUP BY camera_id
        ), d AS (
            SELECT camera_id, count(*) FILTER (WHERE uncertain) AS uncertain, count(*) AS logged
            FROM prediction_logs WHERE captured_at >= %(since)s AND captured_at < %(until)s
            GROUP BY camera_id
        )
        SELECT * FROM f LEFT JOIN d USING (camera_id) ORDER BY camera_id""",
    "detection_series": """
        WITH f AS (
            SELECT camera_id, (floor(extract(epoch FROM captured_at) / 60) * 60)::bigint AS t,
                   count(*) AS frames, sum(detection_count) AS detections
            FROM frames WHERE captured_at >= %(since)s AND captured_at < %(until)s
            GROUP BY 1, 2
        ), d AS (
            SELECT camera_id, (floor(extract(epoch FROM captured_at) / 60) * 60)::bigint AS t,
                   count(*) FILTER (WHERE uncertain) AS uncertain
            FROM prediction_logs WHERE captured_at >= %(since)s AND captured_at < %(until)s
            GROUP BY 1, 2
        )
        SELECT * FROM f LEFT JOIN d USING (camera_id, t) ORDER BY camera_id, t""",
    "confidence_histogram": """
        SELECT least(floor(confidence * 20), 19)::int, count(*) FROM prediction_logs
        WHERE captured_at >= %(since)s AND captured_at < %(until)s GROUP BY 1""",
    "class_mix": """
        SELECT class_name, count(*), count(*) FILTER (WHERE uncertain), avg(confidence)
        FROM prediction_logs WHERE captured_at >= %(since)s AND captured_at < %(until)s
        GROUP BY class_name ORDER BY 2 DESC""",
    "camera_latest": """
        SELECT DISTINCT ON (camera_id) camera_id, model_version, agent_id, captured_at
        FROM frames ORDER BY camera_id, captured_at DESC""",
}


def duckdb_queries(since: datetime, until: datetime) -> dict[str, Callable[[Any], object]]:
    """The console's queries as the store runs them, on any DuckDB connection."""
    window = {"since": since, "until": until}
    return {
        "camera_window": lambda con: analytics.camera_window(con=con, **window),
        "detection_series": lambda con: analytics.detection_series(con=con, bucket_s=60, **window),
        "confidence_histogram": lambda con: analytics.confidence_histogram(
            con=con, bins=20, **window
        ),
        "class_mix": lambda con: analytics.class_mix(con=con, **window),
        "camera_latest": lambda con: analytics.camera_latest(con=con),
    }


def p95_ms(call: Callable[[], object], iterations: int) -> float:
    """p95 of ``call``'s wall time over ``iterations`` calls after one warm-up, ms."""
    call()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.quantiles(times, n=20)[-1] if len(times) > 1 else times[0]


def attach_ducklake(con: duckdb.DuckDBPyConnection, pg_dsn: str, s3: Any) -> None:
    """Load the wheels' extensions and attach the lake as ``lake`` (catalog in PostgreSQL,
    data in ``s3://edgeloop/lake/``)."""
    for name in ("postgres_scanner", "httpfs", "ducklake"):
        load_extension(con, name)
    host = s3.url.removeprefix("http://")
    con.execute(
        f"CREATE SECRET (TYPE s3, KEY_ID '{s3.access_key}', SECRET '{s3.secret_key}', "
        f"REGION '{s3.region}', ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false)"
    )
    con.execute(f"ATTACH 'ducklake:postgres:{pg_dsn}' AS lake (DATA_PATH 's3://{BUCKET}/lake/')")


def load_engines(fleet: Path, pg: Any, s3: Any) -> None:
    """Copy frames and detections from the fleet file into PostgreSQL (database
    ``edgeloop``, with its keys and time indexes) and into the lake (catalog database
    ``lake``), in capture order."""
    import psycopg

    with psycopg.connect(pg.url, autocommit=True) as admin:
        admin.execute("CREATE DATABASE edgeloop")
        admin.execute("CREATE DATABASE lake")
    s3.client().create_bucket(Bucket=BUCKET)
    con = duckdb.connect()
    attach_ducklake(con, pg.dsn_for("lake"), s3)
    con.execute(f"ATTACH '{pg.dsn_for('edgeloop')}' AS pg (TYPE postgres)")
    con.execute(f"ATTACH '{fleet}' AS fleet (READ_ONLY)")
    for table in ("frames", "prediction_logs"):
        con.execute(f"CREATE TABLE pg.{table} AS SELECT * FROM fleet.{table} ORDER BY captured_at")
        con.execute(
            f"CREATE TABLE lake.{table} AS SELECT * FROM fleet.{table} ORDER BY captured_at"
        )
    con.close()
    with psycopg.connect(pg.url_for("edgeloop"), autocommit=True) as db:
        db.execute("ALTER TABLE frames ADD PRIMARY KEY (frame_key)")
        db.execute("ALTER TABLE prediction_logs ADD PRIMARY KEY (detection_id)")
        db.execute("CREATE INDEX ON frames (captured_at)")
        db.execute("CREATE INDEX ON frames (camera_id, captured_at)")
        db.execute("CREATE INDEX ON prediction_logs (captured_at)")
        db.execute("ANALYZE")


def ingest_batches(fleet: Path, n: int) -> list[tuple[pa.Table, pa.Table]]:
    """``n`` batches of ~10,000 detections with their frames, under new keys."""
    with duckdb.connect(str(fleet), read_only=True) as con:
        frames = con.execute("SELECT * FROM frames ORDER BY captured_at LIMIT 1250").arrow()
        detections = con.execute(
            "SELECT d.* FROM prediction_logs d JOIN (SELECT frame_key FROM frames "
            "ORDER BY captured_at LIMIT 1250) USING (frame_key)"
        ).arrow()
    frames = frames.read_all() if hasattr(frames, "read_all") else frames
    detections = detections.read_all() if hasattr(detections, "read_all") else detections
    batches = []
    for i in range(n):
        prefix = pa.scalar(f"bench{i}-")
        f = frames.set_column(
            frames.schema.get_field_index("frame_key"),
            "frame_key",
            pc.binary_join_element_wise(prefix, frames["frame_key"], ""),
        )
        d = detections
        for column in ("detection_id", "frame_key"):
            d = d.set_column(
                d.schema.get_field_index(column),
                column,
                pc.binary_join_element_wise(prefix, d[column], ""),
            )
        batches.append((f, d))
    return batches


def duckdb_ingest(
    con: duckdb.DuckDBPyConnection, batches: list[tuple[pa.Table, pa.Table]]
) -> float:
    """Detections/s of Arrow inserts, one transaction per batch, on ``con``'s default catalog."""
    start = time.perf_counter()
    for frames, detections in batches:
        frames_t, detections_t = frames, detections  # noqa: F841 (DuckDB's replacement scan)
        con.execute("BEGIN TRANSACTION")
        con.execute("INSERT INTO frames BY NAME SELECT * FROM frames_t")
        con.execute("INSERT INTO prediction_logs BY NAME SELECT * FROM detections_t")
        con.execute("COMMIT")
    return sum(d.num_rows for _, d in batches) / (time.perf_counter() - start)


def pg_ingest(url: str, batches: list[tuple[pa.Table, pa.Table]]) -> float:
    """Detections/s of binary COPY through psycopg 3, one transaction per batch."""
    import psycopg

    with psycopg.connect(url) as db:
        types = {
            table: [
                (
                    name,
                    db.execute(
                        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                        "WHERE attrelid = %s::regclass AND attname = %s",
                        (table, name),
                    ).fetchone()[0],
                )  # type: ignore[index]
                for name in batches[0][0 if table == "frames" else 1].column_names
            ]
            for table in ("frames", "prediction_logs")
        }
        db.commit()
        start = time.perf_counter()
        for frames, detections in batches:
            with db.transaction(), db.cursor() as cur:
                for table, rows in (("frames", frames), ("prediction_logs", detections)):
                    names = ", ".join(name for name, _ in types[table])
                    with cur.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
                        copy.set_types([kind for _, kind in types[table]])
                        for row in zip(
                            *(rows[name].to_pylist() for name, _ in types[table]), strict=True
                        ):
                            copy.write_row(row)
        return sum(d.num_rows for _, d in batches) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detections", type=int, default=1_000_000)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    import psycopg

    root = Path(tempfile.mkdtemp(prefix="edgeloop-bench-backends-"))
    try:
        fleet = root / "fleet.duckdb"
        started = time.perf_counter()
        counts = load_fleet(fleet, detections=args.detections, frames_n=args.detections // 8)
        print(
            f"SIMULATED fleet: {counts['detections']:,} detections, {counts['frames']:,} frames "
            f"({time.perf_counter() - started:.0f} s)"
        )
        with postgres_server(root / "servers") as pg, s3_server(root / "servers") as s3:
            started = time.perf_counter()
            load_engines(fleet, pg, s3)
            print(f"copied into PostgreSQL and DuckLake in {time.perf_counter() - started:.0f} s")
            with duckdb.connect(str(fleet), read_only=True) as con:
                until = con.execute("SELECT max(captured_at) FROM frames").fetchone()[0]  # type: ignore[index]
            until += timedelta(seconds=1)
            local = duckdb.connect(str(fleet), read_only=True)
            lake = duckdb.connect()
            started = time.perf_counter()
            attach_ducklake(lake, pg.dsn_for("lake"), s3)
            lake.execute("USE lake")
            attach_ms = (time.perf_counter() - started) * 1000
            pg_db = psycopg.connect(pg.url_for("edgeloop"), autocommit=True)
            worst: dict[str, float] = {"duckdb": 0.0, "ducklake": 0.0, "postgres": 0.0}
            print(
                f"\nconsole queries, p95 of {args.iterations} (ms); DuckLake attach once: {attach_ms:.0f} ms"
            )
            print(
                f"{'query':<24}{'range':>6}{'DuckDB file':>13}{'DuckLake':>10}{'PostgreSQL':>12}"
                f"{'lake/file':>11}{'pg/file':>9}"
            )
            for hours in (1, 24):
                since = until - timedelta(hours=hours)
                for name, query in duckdb_queries(since, until).items():
                    base = p95_ms(lambda q=query: q(local), args.iterations)
                    on_lake = p95_ms(lambda q=query: q(lake), args.iterations)
                    on_pg = p95_ms(
                        lambda n=name, w={"since": since, "until": until}: pg_db.execute(
                            PG_QUERIES[n], w
                        ).fetchall(),
                        args.iterations,
                    )
                    for engine, value in (
                        ("duckdb", base),
                        ("ducklake", on_lake),
                        ("postgres", on_pg),
                    ):
                        worst[engine] = max(worst[engine], value)
                    print(
                        f"{name:<24}{hours:>5}h{base:>13.1f}{on_lake:>10.1f}{on_pg:>12.1f}"
                        f"{on_lake / base:>10.1f}x{on_pg / base:>8.1f}x"
                    )
            local.close()
            batches = ingest_batches(fleet, args.batches)
            with duckdb.connect(str(fleet)) as con:
                rate_file = duckdb_ingest(con, batches)
            rate_lake = duckdb_ingest(lake, batches)
            rate_pg = pg_ingest(pg.url_for("edgeloop"), batches)
            lake.close()
            pg_db.close()
        n = sum(d.num_rows for _, d in batches)
        print(f"\ningest, {len(batches)} batches, {n:,} detections, one writer (detections/s):")
        print(f"  DuckDB file (baseline)  {rate_file:>10,.0f}")
        print(f"  DuckLake (PG + S3)      {rate_lake:>10,.0f}  ({rate_lake / rate_file:.2f}x)")
        print(f"  PostgreSQL COPY binary  {rate_pg:>10,.0f}  ({rate_pg / rate_file:.2f}x)")
        chosen = "DuckLake"
        ok = worst["ducklake"] <= TARGET_PANEL_MS and rate_lake >= TARGET_INGEST_PER_S
        print(
            f"\nslowest console query p95: DuckDB file {worst['duckdb']:.0f} ms, DuckLake "
            f"{worst['ducklake']:.0f} ms, PostgreSQL {worst['postgres']:.0f} ms"
        )
        print(
            f"TARGET {'met' if ok else 'NOT met'}: {chosen} for frames/detections (engine level, "
            f"1 process): slowest console query p95 {worst['ducklake']:.0f} ms (target <= "
            f"{TARGET_PANEL_MS:.0f}) and ingest {rate_lake:,.0f} detections/s (target >= "
            f"{TARGET_INGEST_PER_S:,.0f}); PostgreSQL's slowest {worst['postgres']:.0f} ms"
        )
    finally:
        remove_tree(root)


if __name__ == "__main__":
    main()
