"""The store on PostgreSQL (``EDGELOOP_DATABASE_URL=postgresql://…``): the same tables and
the same store functions as the embedded DuckDB file, for several processes on several
machines (API replicas, Dagster runs on workers).

The store modules keep one SQL text, in DuckDB's dialect; ``PostgresConnection`` turns
each statement into PostgreSQL's with sqlglot (https://sqlglot.com, the dialect
transpiler; each distinct statement is translated once per process and cached) and runs
it through psycopg 3 with PostgreSQL's own ``$1`` placeholders (``psycopg.RawCursor``), so
a ``%`` in SQL text needs no escaping. DuckDB's ``?`` and ``$name`` parameters become
``$1…$n`` in the order they appear. Two DuckDB aggregates PostgreSQL 15 lacks are
rewritten: ``arg_max(x, y)`` as ``(array_agg(x ORDER BY y DESC NULLS LAST))[1]`` and
``any_value(x)`` as ``(array_agg(x))[1]``.

DuckDB's ``register`` of an Arrow table or a DataFrame becomes a session temporary table
filled by binary ``COPY`` (dropped by ``unregister``). Connections come from a
``psycopg_pool.ConnectionPool``, in autocommit mode (the store functions issue their own
``BEGIN``/``COMMIT``), with the session time zone UTC, as the DuckDB file hands back
``TIMESTAMPTZ`` values. What needs a database lock across processes (claims, the label
write, the retrain push) takes PostgreSQL's row locks and advisory locks; see
``edgeloop.store.queue`` and ``edgeloop.store.retraining``.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import sqlglot
from sqlglot import exp, tokens
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.dialects.postgres import Postgres

from edgeloop.store.errors import StoreUnavailableError
from edgeloop.store.migrations import migrate

if TYPE_CHECKING:
    import pandas as pd
    import psycopg
    import pyarrow as pa
    from psycopg_pool import ConnectionPool

logger = logging.getLogger(__name__)

POOL_MAX_SIZE = 8
"""Most connections one process keeps open to PostgreSQL (its default ``max_connections``
is 100: 2 API replicas, the Dagster daemon's sensors and a few runs stay well below)."""
POOL_TIMEOUT_S = 10.0
"""How long ``connect`` waits for a connection (the server down or every one in use), s."""


_STRFTIME_TO_CHAR = {"%Y": "YYYY", "%m": "MM", "%d": "DD", "%H": "HH24", "%M": "MI", "%S": "SS"}
_STRFTIME_TO_CHAR["%f"] = "US"


def _to_char(pattern: str) -> str:
    """A strftime pattern (``%Y-%m-%dT%H:%M:%S.%fZ``) as ``to_char``'s, with every other
    character quoted as literal text (``T`` alone would be read as an ordinal suffix)."""
    import re

    pieces = re.split(r"(%[A-Za-z])", pattern)
    return "".join(_STRFTIME_TO_CHAR.get(p, f'"{p}"' if p else "") for p in pieces)


class _StoreDuckDB(DuckDB):
    """DuckDB's dialect as the store writes it, read with PostgreSQL's order of NULLs (last
    ascending, first descending) so that sqlglot writes no ``NULLS LAST`` after a ``DESC``:
    PostgreSQL reads an index backwards, or uses a ``DESC`` index, only for its own null
    order. Every column the store sorts on is ``NOT NULL``, so the two orders agree."""

    NULL_ORDERING = "nulls_are_large"


class _Postgres(Postgres):
    """PostgreSQL as sqlglot writes it, with DuckDB's ``$n`` placeholders kept as they are
    (psycopg's ``RawCursor`` passes them to the server) and two aggregates rewritten."""

    class Generator(Postgres.Generator):  # type: ignore[valid-type,misc]
        TRANSFORMS: ClassVar = {
            **Postgres.Generator.TRANSFORMS,
            exp.Placeholder: lambda _self, e: f"${e.name}",
            exp.ArgMax: lambda self, e: (
                f"(ARRAY_AGG({self.sql(e.this)} ORDER BY {self.sql(e.expression)} "
                "DESC NULLS LAST))[1]"
            ),
            exp.AnyValue: lambda self, e: f"(ARRAY_AGG({self.sql(e.this)}))[1]",
            exp.TimeToStr: lambda self, e: (
                f"TO_CHAR({self.sql(e.this)}, '{_to_char(e.text('format'))}')"
            ),
            exp.IgnoreNulls: lambda self, e: (
                f"(ARRAY_AGG({self.sql(e.this.this)}) FILTER (WHERE {self.sql(e.this.this)} "
                "IS NOT NULL))[1]"
                if isinstance(e.this, exp.AnyValue)
                else self.ignorenulls_sql(e)
            ),
        }


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> tuple[tuple[str, ...], tuple[str | int | None, ...]]:
    """DuckDB SQL → PostgreSQL statements, and the parameter each ``$n`` stands for.

    Args:
        sql: one or more ``;``-separated statements in DuckDB's dialect, with ``?``
            (positional) or ``$name`` (named) parameters, not both.

    Returns:
        ``(statements, names)``: the statements with placeholders ``$1…$n``, and for each
        n the DuckDB parameter it stands for: a name (``$name``), an index into a
        parameter list (``$1`` is 0), or None (a ``?``: the n-th positional one).

    Raises:
        sqlglot.errors.ParseError: SQL that DuckDB's dialect does not parse.
    """
    names: list[str | int | None] = []
    numbered: dict[str, int] = {}
    pieces: list[str] = []
    at = 0
    found = _StoreDuckDB().tokenize(sql)
    for i, token in enumerate(found):
        if token.token_type == tokens.TokenType.PLACEHOLDER and token.text == "?":
            names.append(None)
            pieces += [sql[at : token.start], f"${len(names)}"]
            at = token.end + 1
        elif token.token_type == tokens.TokenType.PARAMETER and i + 1 < len(found):
            name = found[i + 1]
            if name.start != token.end + 1:
                continue
            if name.text not in numbered:
                names.append(int(name.text) - 1 if name.text.isdigit() else name.text)
                numbered[name.text] = len(names)
            pieces += [sql[at : token.start], f"${numbered[name.text]}"]
            at = name.end + 1
    pieces.append(sql[at:])
    numbered_sql = "".join(pieces)
    statements: list[str] = []
    for tree in sqlglot.parse(numbered_sql, read=_StoreDuckDB):
        if tree is None:
            continue
        statements.append(tree.sql(dialect=_Postgres))
    return tuple(statements), tuple(names)


def _bind(names: Sequence[str | int | None], parameters: object) -> list[Any] | None:
    if parameters is None:
        return None
    if isinstance(parameters, Mapping):
        return [parameters[name] for name in names]
    values = list(parameters)  # type: ignore[call-overload]
    if all(name is None for name in names) and len(values) != len(names):
        raise ValueError(f"the statement has {len(names)} parameters, {len(values)} were given")
    return [values[i] if isinstance(i, int) else values[n] for n, i in enumerate(names)]


class PostgresResult:
    """The last statement's rows, as DuckDB's ``execute`` result offers them."""

    def __init__(self, cursor: psycopg.Cursor[Any] | None) -> None:
        self._cursor = cursor

    @property
    def description(self) -> list[tuple[str, ...]] | None:
        if self._cursor is None or self._cursor.description is None:
            return None
        return [(column.name,) for column in self._cursor.description]

    def fetchall(self) -> list[tuple[Any, ...]]:
        if self._cursor is None or self._cursor.description is None:
            return []
        return [tuple(row) for row in self._cursor.fetchall()]

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._cursor is None or self._cursor.description is None:
            return None
        row = self._cursor.fetchone()
        return None if row is None else tuple(row)

    def df(self) -> pd.DataFrame:
        import pandas as pd

        names = [d[0] for d in self.description or []]
        return pd.DataFrame(self.fetchall(), columns=names)


def _pg_type(field: pa.Field) -> str:
    import pyarrow as pa

    t = field.type
    if pa.types.is_timestamp(t):
        return "timestamptz" if t.tz else "timestamp"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "bigint"
    if pa.types.is_floating(t):
        return "double precision"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "bytea"
    if pa.types.is_dictionary(t):
        return _pg_type(pa.field(field.name, t.value_type))
    return "text"


class PostgresConnection:
    """One pooled PostgreSQL connection behind the subset of DuckDB's connection API the
    store modules use: ``execute``/``sql`` (DuckDB SQL, translated), ``register``,
    ``unregister``.

    Raises (from ``execute``): ``psycopg.Error`` for what the server refused;
    ``psycopg.errors.IntegrityError`` where DuckDB raises ``ConstraintException``.
    """

    dialect: Literal["postgres"] = "postgres"

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self._connection = connection

    @property
    def raw(self) -> psycopg.Connection[Any]:
        """The psycopg connection, for PostgreSQL-only statements (locks)."""
        return self._connection

    def execute(self, query: str, parameters: object = None) -> PostgresResult:
        statements, names = translate(query)
        values = _bind(names, parameters) if names else None
        if values is not None and len(statements) > 1:
            raise ValueError("parameters are only supported with a single statement")
        cursor: psycopg.Cursor[Any] | None = None
        for statement in statements:
            cursor = self._connection.cursor()
            cursor.execute(statement.encode(), values)
        return PostgresResult(cursor)

    sql = execute

    def register(self, view_name: str, python_object: pa.Table | pd.DataFrame) -> None:
        """A temporary table ``view_name`` holding the rows of an Arrow table or DataFrame."""
        import pyarrow as pa

        table = (
            python_object
            if isinstance(python_object, pa.Table)
            else pa.Table.from_pandas(python_object, preserve_index=False)
        )
        columns = ", ".join(f'"{f.name}" {_pg_type(f)}' for f in table.schema)
        with self._connection.cursor() as cur:
            cur.execute(f'DROP TABLE IF EXISTS pg_temp."{view_name}"'.encode())
            cur.execute(f'CREATE TEMP TABLE "{view_name}" ({columns})'.encode())
            if table.num_rows:
                names = ", ".join(f'"{n}"' for n in table.column_names)
                with cur.copy(f'COPY "{view_name}" ({names}) FROM STDIN'.encode()) as copy:
                    for row in zip(*(c.to_pylist() for c in table.columns), strict=True):
                        copy.write_row(row)

    def unregister(self, view_name: str) -> None:
        with self._connection.cursor() as cur:
            cur.execute(f'DROP TABLE IF EXISTS pg_temp."{view_name}"'.encode())

    def close(self) -> None:
        """Nothing: the pool owns the connection."""


class PostgresStore:
    """The store's tables in a PostgreSQL database: one connection pool per process.

    Args:
        url: ``postgresql://user:password@host:port/database`` (libpq's URI; any libpq
            parameter such as ``sslmode`` may follow ``?``).
        pool_max_size / timeout_s: see ``POOL_MAX_SIZE`` and ``POOL_TIMEOUT_S``.

    ``connect`` migrates the schema once per process (``edgeloop.store.migrations.migrate``,
    under an advisory lock so that two processes starting together migrate once).
    """

    dialect: Literal["postgres"] = "postgres"

    def __init__(
        self,
        url: str,
        *,
        pool_max_size: int = POOL_MAX_SIZE,
        timeout_s: float = POOL_TIMEOUT_S,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._pool_max_size = pool_max_size
        self._pool: ConnectionPool | None = None
        self._migrated = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresStore({self.location!r})"

    @property
    def location(self) -> str:
        """Where the tables live, for logs and messages: the URL without its password."""
        return redact(self.url)

    def _open_pool(self) -> ConnectionPool:
        import psycopg
        from psycopg_pool import ConnectionPool

        with self._lock:
            if self._pool is None or self._pool.closed:
                self._pool = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self._pool_max_size,
                    timeout=self.timeout_s,
                    # A connection is checked before it is handed out, so one broken by a
                    # server restart is replaced instead of failing a request.
                    check=ConnectionPool.check_connection,
                    kwargs={
                        "autocommit": True,
                        "cursor_factory": psycopg.RawCursor,
                        "options": "-c TimeZone=UTC",
                    },
                    open=False,
                    name="edgeloop-store",
                )
                self._pool.open(wait=False)
            return self._pool

    @contextmanager
    def connect(self, *, retry: bool = True) -> Iterator[PostgresConnection]:
        """A pooled connection (migrated once per process), returned to the pool after.

        Args:
            retry: False waits at most 1 s for a connection (``/api/health``).

        Raises:
            edgeloop.store.StoreUnavailableError: no connection within ``timeout_s`` (the
                server is down or unreachable, or every pooled connection is busy), or the
                server went away inside the block (``psycopg.OperationalError``; the open
                transaction did not commit).
        """
        from psycopg import OperationalError
        from psycopg_pool import PoolClosed, PoolTimeout

        timeout = self.timeout_s if retry else 1.0
        try:
            pool = self._open_pool()
            try:
                raw = pool.getconn(timeout=timeout)
            except PoolClosed:  # closed by another user of this store (an app's shutdown)
                pool = self._open_pool()
                raw = pool.getconn(timeout=timeout)
        except (PoolTimeout, PoolClosed, OperationalError) as exc:
            raise StoreUnavailableError(
                f"PostgreSQL at {self.location} is unavailable: {exc}"
            ) from exc
        try:
            con = PostgresConnection(raw)
            if not self._migrated:
                with advisory_lock(con, "edgeloop.schema"):
                    migrate(con)
                self._migrated = True
            yield con
        except OperationalError as exc:  # the server went away mid-request
            raise StoreUnavailableError(f"PostgreSQL at {self.location} went away: {exc}") from exc
        finally:
            # Back to the pool, which rolls back a transaction left open and checks the
            # connection before it hands it out again (``check_connection``).
            pool.putconn(raw)

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold PostgreSQL's advisory lock ``name`` for the block (waiting for it), against
        every process on the database: one pooled connection is held meanwhile.

        Raises:
            edgeloop.store.StoreUnavailableError: see ``connect``.
        """
        with self.connect() as con, advisory_lock(con, name):
            yield

    def close(self) -> None:
        """Close the pool (its connections)."""
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None


def redact(url: str) -> str:
    """``url`` without its password, for logs and errors."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name`` (its blake2b digest)."""
    import hashlib

    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def advisory_lock(con: PostgresConnection, name: str) -> Iterator[None]:
    """Hold PostgreSQL's session advisory lock ``name`` for the block (waits for it);
    every process and machine on the database shares it."""
    key = lock_key(name)
    con.raw.execute(b"SELECT pg_advisory_lock($1)", [key])
    try:
        yield
    finally:
        con.raw.execute(b"SELECT pg_advisory_unlock($1)", [key])
