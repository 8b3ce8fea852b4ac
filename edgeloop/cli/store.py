"""``edgeloop store copy``: move an embedded installation to the networked engines.

A site that started on one box keeps its tables in ``<data_dir>/edgeloop.duckdb`` and its
frame JPEGs under ``<data_dir>/frames``. ``copy`` writes both where the networked settings
point: the tables into an empty PostgreSQL database (``--database-url``), the JPEGs into
object storage (``--object-store-url``, keys unchanged, so every stored ``jpeg_path``
still names its file). Stop the API and Dagster first; afterwards set
``EDGELOOP_DATABASE_URL`` and ``EDGELOOP_OBJECT_STORE_URL`` to the same URLs on every
process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    help="The loop's tables: copy an embedded installation to PostgreSQL and object storage.",
    no_args_is_help=True,
)
console = Console()


def _copy_frames(data_dir: Path, object_store_url: str) -> int:
    """Put every JPEG under ``<data_dir>/frames`` into the object store, same keys; returns
    how many were written (a key already stored is left alone, so a rerun is safe)."""
    from edgeloop.objects import open_object_store

    objects = open_object_store(object_store_url, data_dir=data_dir)
    files = sorted(p for p in (data_dir / "frames").rglob("*.jpg") if p.is_file())
    written = 0
    for start in range(0, len(files), 200):
        chunk = files[start : start + 200]
        items = {p.relative_to(data_dir).as_posix(): p.read_bytes() for p in chunk}
        written += len(objects.put_new_many(items))  # a key already there is kept as it is
    return written


@app.command()
def copy(
    database_url: Annotated[
        str,
        typer.Option(help="postgresql://user:password@host:port/database (empty database)."),
    ],
    object_store_url: Annotated[
        str | None,
        typer.Option(help="s3://bucket/prefix for the frame JPEGs (AWS_* variables apply)."),
    ] = None,
) -> None:
    """Copy this data folder's DuckDB tables into PostgreSQL (and its JPEGs into object
    storage), for the networked topology. The data folder is only read."""
    from edgeloop.settings import get_settings
    from edgeloop.store import Store, StoreUnavailableError
    from edgeloop.store.postgres import PostgresStore, redact
    from edgeloop.store.transfer import DestinationNotEmptyError, copy_tables

    settings = get_settings()
    if not settings.duckdb_path.is_file():
        console.print(f"[bold red]error:[/] no DuckDB file at {escape(str(settings.duckdb_path))}")
        raise typer.Exit(code=1)
    destination = PostgresStore(database_url)
    console.print(f"copying {settings.duckdb_path} → {escape(redact(database_url))}")
    try:
        copied = copy_tables(
            Store(settings.duckdb_path),
            destination,
            progress=lambda table, rows: console.print(
                f"  {table}: {rows:,} rows", highlight=False
            ),
        )
    except (DestinationNotEmptyError, StoreUnavailableError) as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(code=1) from exc
    finally:
        destination.close()
    for table in copied:
        console.print(f"[green]✓[/] {table.table}: {table.rows:,} rows", highlight=False)
    if object_store_url:
        written = _copy_frames(settings.data_dir, object_store_url)
        console.print(f"[green]✓[/] frame JPEGs: {written:,} written to {escape(object_store_url)}")
    console.print(
        "now set EDGELOOP_DATABASE_URL"
        + (" and EDGELOOP_OBJECT_STORE_URL" if object_store_url else "")
        + " on every loop-host process (API replicas, Dagster)",
        highlight=False,
    )
