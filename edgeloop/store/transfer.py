"""Copy an embedded installation's tables into PostgreSQL: how a site that started on one
box (the DuckDB file) moves to the networked engines (``edgeloop store copy``).

Every table of ``edgeloop.store.schema.TABLES`` is read from the DuckDB file in batches
of Arrow rows and written into the PostgreSQL database (created and migrated to the same
schema version by its first connection), one transaction per table; the sequences that
number queue items, labels, retraining events and deployments continue after the copied
ids. Rows are copied as they are: ids, times, JSON and the JPEG digests stay the same, so
a label still names its queue item and a deployment its version.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from edgeloop.store.connection import Store, fetch_scalar
from edgeloop.store.ingest import rebuild_summaries
from edgeloop.store.postgres import PostgresConnection, PostgresStore
from edgeloop.store.schema import SEQUENCES, TABLES

logger = logging.getLogger(__name__)

BATCH_ROWS = 50_000
"""Rows read and written at a time (bounded memory on a large ``prediction_logs``)."""


class DestinationNotEmptyError(RuntimeError):
    """The PostgreSQL database already holds loop rows; copying would mix two sites."""


@dataclass(frozen=True)
class CopiedTable:
    """One table's copy: its name and the rows written."""

    table: str
    rows: int


def _json_columns(con: PostgresConnection, table: str) -> set[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = ? AND data_type IN ('json', 'jsonb')",
        [table],
    ).fetchall()
    return {str(row[0]) for row in rows}


def copy_tables(
    source: Store,
    destination: PostgresStore,
    *,
    batch_rows: int = BATCH_ROWS,
    progress: Callable[[str, int], None] | None = None,
) -> list[CopiedTable]:
    """Copy every loop table from the DuckDB file ``source`` into ``destination``.

    Args:
        source: the embedded store (migrated to the current schema first).
        destination: an empty PostgreSQL database (created and migrated here).
        batch_rows: rows per read/write batch.
        progress: called with ``(table, rows copied so far)`` after each batch.

    Returns:
        Each table with its row count, in ``TABLES`` order.

    Raises:
        DestinationNotEmptyError: a loop table of ``destination`` has rows; nothing copied.
        edgeloop.store.StoreUnavailableError: either store could not be opened.
        duckdb.Error, psycopg.Error: a failed read or write; the table being written was
            rolled back (tables copied before it stay: run again into a new database).
    """
    copied: list[CopiedTable] = []
    with destination.connect() as dst:
        filled = [t for t in TABLES if fetch_scalar(dst.execute(f"SELECT count(*) FROM {t}"))]
        if filled:
            raise DestinationNotEmptyError(
                f"{destination.location} already holds rows in {', '.join(filled)}: copy into "
                "a new, empty database"
            )
        with source.connect() as src:
            for table in TABLES:
                copied.append(_copy_table(src, dst, table, batch_rows, progress))
        rebuild_summaries(con=dst)
        for sequence, table, column in SEQUENCES:
            newest = fetch_scalar(dst.execute(f"SELECT max({column}) FROM {table}"))
            if newest is not None:
                dst.raw.execute(b"SELECT setval($1, $2)", [sequence, int(newest)])
    return copied


def _copy_table(
    src: object,
    dst: PostgresConnection,
    table: str,
    batch_rows: int,
    progress: Callable[[str, int], None] | None,
) -> CopiedTable:
    import duckdb

    assert isinstance(src, duckdb.DuckDBPyConnection)
    json_columns = _json_columns(dst, table)
    reader = src.execute(f"SELECT * FROM {table}").fetch_record_batch(batch_rows)
    names = reader.schema.names
    selected = ", ".join(f"CAST({n} AS JSON)" if n in json_columns else n for n in names)
    total = 0
    dst.execute("BEGIN TRANSACTION")
    try:
        for batch in reader:
            import pyarrow as pa

            dst.register("copy_rows", pa.Table.from_batches([batch]))
            dst.execute(
                f"INSERT INTO {table} ({', '.join(names)}) SELECT {selected} FROM copy_rows"
            )
            total += batch.num_rows
            if progress is not None:
                progress(table, total)
        dst.execute("COMMIT")
    except BaseException:
        dst.execute("ROLLBACK")
        raise
    finally:
        dst.unregister("copy_rows")
    logger.info("copied %s rows of %s", total, table)
    return CopiedTable(table, total)
