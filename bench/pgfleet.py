"""A SIMULATED fleet in PostgreSQL: the DuckDB file ``bench/fleetdata.py`` writes, copied
into a database whose schema the store itself created.

``copy_fleet`` creates the database, lets ``PostgresStore.connect`` migrate it (tables,
sequences and every index the networked store has, as on a real site), then bulk-loads
each non-empty table of the fleet file through DuckDB's ``postgres`` extension (loaded
from its wheel, ``edgeloop.store.extensions``; it writes with ``COPY``), in the order
the rows were written, moves the sequences past the copied ids and runs ``VACUUM
ANALYZE`` (as autovacuum would do soon after such a load on a real server).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from edgeloop.store.extensions import load_extension
from edgeloop.store.ingest import rebuild_summaries
from edgeloop.store.postgres import PostgresStore

SEQUENCES = {
    "labeling_queue": ("labeling_queue_seq", "item_id"),
    "reviewed_labels": ("reviewed_labels_seq", "label_id"),
    "retraining_events": ("retraining_events_seq", "event_id"),
    "model_deployments": ("model_deployments_seq", "deployment_id"),
}
"""Table -> (its id sequence, the id column): a sequence must pass the ids copied in."""


def copy_fleet(fleet: Path, pg: Any, database: str) -> dict[str, int]:
    """Create ``database`` on server ``pg`` (``tests/servers.Postgres``), migrate it with
    the store and copy every non-empty table of the DuckDB file ``fleet`` into it; returns
    the rows copied per table."""
    import psycopg

    with psycopg.connect(pg.url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {database}".encode())
    store = PostgresStore(pg.url_for(database), pool_max_size=1)
    with store.connect():  # migrates: the schema as the API and Dagster would create it
        pass
    store.close()
    copied: dict[str, int] = {}
    with duckdb.connect() as con:
        load_extension(con, "postgres_scanner")
        con.execute(f"ATTACH '{fleet}' AS fleet (READ_ONLY)")
        con.execute(f"ATTACH '{pg.dsn_for(database)}' AS pg (TYPE postgres)")
        tables = [
            str(row[0])
            for row in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = 'fleet' "
                "AND table_name <> 'schema_version' ORDER BY table_name"
            ).fetchall()
        ]
        for table in tables:
            rows = con.execute(f"SELECT count(*) FROM fleet.{table}").fetchall()[0][0]
            if rows:
                con.execute(
                    f"INSERT INTO pg.{table} BY NAME SELECT * FROM fleet.{table} ORDER BY rowid"
                )
                copied[table] = int(rows)
    store = PostgresStore(pg.url_for(database), pool_max_size=1)
    with store.connect() as con:  # the histogram ingest would have kept
        rebuild_summaries(con=con)
    store.close()
    with psycopg.connect(pg.url_for(database), autocommit=True) as db:
        for table, (sequence, column) in SEQUENCES.items():
            if table in copied:
                db.execute(
                    f"SELECT setval('{sequence}', (SELECT max({column}) FROM {table}))".encode()
                )
        db.execute(b"VACUUM ANALYZE")
    return copied
