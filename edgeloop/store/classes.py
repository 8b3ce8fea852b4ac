"""The site's classes (issue 18): ``site_classes``, ``class_aliases`` and ``class_changes``.

Classes are the site's data, not the seed model's fixed list. A site starts with the
production model's class names (``seed``, on first use, in the model's order, so the
dataset and the model keep the same class indexes until someone changes the list) and
then adds, renames, merges and retires classes. Each class keeps its ``class_id`` for
ever (a sequence; never reused). Every change is appended to ``class_changes`` with who
made it (the token's name) and why (a reason is required); nothing there is updated or
deleted.

Stored labels are never rewritten: a label keeps the class name it was given.
``class_aliases`` records every name any class has had, pointing at the class that
answers to it now (a rename adds the new name; a merge repoints the merged class's names
at the class it went into), and ``name_map`` turns that into ``old name -> current
name`` (``None`` for a retired class), which the dataset build applies. So a name, once
used, belongs to its class for good: renaming or adding to a name another class had is
refused (a label holding that name would be ambiguous).

YOLO class indexes are not class ids: a dataset's ``names`` are the active classes in
``class_id`` order (``active_names``), so index ``i`` is the ``i``-th active class.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from edgeloop.store.connection import Connection, fetch_dicts, row_lock, transaction

ClassStatus = Literal["active", "merged", "retired"]
ACTIVE: ClassStatus = "active"
MERGED: ClassStatus = "merged"
RETIRED: ClassStatus = "retired"
SEED_ACTOR = "seed"
"""The ``actor`` of the changes that seeded the list from the production model."""
MAX_NAME_LEN = 64
"""Longest class name, characters (``edgeloop.annotations.ReviewedBox.class_name``)."""

_CHANGES = threading.Lock()
"""Serialises changes in this process (the DuckDB file); PostgreSQL rows are locked too."""


class ClassChangeError(ValueError):
    """A class change was refused (a taken name, merging a class into itself, retiring the
    last active class, a missing reason): the message says what to do instead."""


class ClassNameError(ClassChangeError):
    """A class name or a reason that is not valid on its own (blank, too long, digits)."""


class UnknownClassError(LookupError):
    """No class has this id or current name."""


@dataclass(frozen=True)
class SiteClass:
    """One class of the site.

    Attributes:
        class_id: stable id (never reused, not the YOLO index).
        name: current name.
        status: ``active`` (labelable, trained), ``merged`` (its labels count as
            ``merged_into``'s) or ``retired`` (its labels are left out of datasets).
        merged_into: the class_id a merge sent it into, else None.
    """

    class_id: int
    name: str
    status: ClassStatus
    merged_into: int | None
    created_at: datetime
    updated_at: datetime


def list_classes(*, con: Connection, active_only: bool = False) -> list[SiteClass]:
    """Every class (or the active ones), by ``class_id``."""
    where = f"WHERE status = '{ACTIVE}'" if active_only else ""
    rows = fetch_dicts(con.execute(f"SELECT * FROM site_classes {where} ORDER BY class_id"))
    return [SiteClass(**row) for row in rows]


def active_names(*, con: Connection) -> list[str]:
    """The active classes' names by ``class_id``: what labels may use and what a dataset's
    ``names`` are (YOLO index = position in this list)."""
    return [c.name for c in list_classes(con=con, active_only=True)]


def name_map(*, con: Connection) -> dict[str, str | None]:
    """Every name a class has had -> the name to use now: the current name of the active
    class it belongs to, or None when that class is retired."""
    rows = con.execute(
        """
        SELECT a.name, c.name, c.status FROM class_aliases a
        JOIN site_classes c USING (class_id)
        """
    ).fetchall()
    return {alias: (name if status == ACTIVE else None) for alias, name, status in rows}


def get(*, con: Connection, ref: int | str, lock: bool = False) -> SiteClass:
    """The class with this ``class_id`` (an int, or digits) or current name.

    Raises:
        UnknownClassError: none has.
    """
    column, value = ("class_id", int(ref)) if str(ref).isdigit() else ("name", ref)
    lock_sql = row_lock(con) if lock else ""
    rows = fetch_dicts(
        con.execute(f"SELECT * FROM site_classes WHERE {column} = ?{lock_sql}", [value])
    )
    if not rows:
        raise UnknownClassError(f"no class {ref!r}; `edgeloop class list` shows the classes")
    return SiteClass(**rows[0])


def changes(*, con: Connection, limit: int = 100) -> list[dict[str, Any]]:
    """The newest ``limit`` changes, newest first: ``change_id``, ``changed_at``,
    ``action`` (seed, add, rename, merge, retire), ``class_id``, ``name``,
    ``previous_name``, ``into_class_id``, ``actor``, ``reason``."""
    return fetch_dicts(
        con.execute("SELECT * FROM class_changes ORDER BY change_id DESC LIMIT ?", [limit])
    )


def seed(*, con: Connection, names: Sequence[str], now: datetime | None = None) -> bool:
    """Create the list from ``names`` (the production model's, index order) when no class
    exists yet; idempotent, and safe when two processes seed at once (a name taken by the
    other is skipped). Returns True when this call created classes."""
    if not names or con.execute("SELECT 1 FROM site_classes LIMIT 1").fetchall():
        return False
    now = now or datetime.now(UTC)
    created = False
    with _CHANGES, transaction(con):
        for name in names:
            rows = con.execute(
                "INSERT INTO site_classes (name, status, created_at, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING class_id",
                [name, ACTIVE, now, now],
            ).fetchall()
            if rows:
                created = True
                _alias(con, name, rows[0][0])
                _log(
                    con, now, "seed", rows[0][0], name, SEED_ACTOR, "the production model's classes"
                )
    return created


def add(*, con: Connection, name: str, actor: str, reason: str) -> SiteClass:
    """A new active class named ``name``.

    Raises:
        ClassChangeError: the name is blank, too long, or some class has or had it; no reason.
    """
    name, reason = _name(name), _reason(reason)
    now = datetime.now(UTC)
    with _CHANGES, transaction(con):
        _check_free(con, name, class_id=None)
        rows = con.execute(
            "INSERT INTO site_classes (name, status, created_at, updated_at) "
            "VALUES (?, ?, ?, ?) RETURNING class_id",
            [name, ACTIVE, now, now],
        ).fetchall()
        class_id = int(rows[0][0])
        _alias(con, name, class_id)
        _log(con, now, "add", class_id, name, actor, reason)
    return get(con=con, ref=class_id)


def rename(*, con: Connection, ref: int | str, new_name: str, actor: str, reason: str) -> SiteClass:
    """Rename the class ``ref`` (id or current name); labels given its old name follow.

    Raises:
        UnknownClassError: no such class.
        ClassChangeError: merged class, same name, or a name another class has or had.
    """
    new_name, reason = _name(new_name), _reason(reason)
    now = datetime.now(UTC)
    with _CHANGES, transaction(con):
        cls = get(con=con, ref=ref, lock=True)
        if cls.status == MERGED:
            raise ClassChangeError(f"class {cls.name!r} was merged; rename the class it went into")
        if new_name == cls.name:
            raise ClassChangeError(f"class {cls.class_id} is named {new_name!r} already")
        _check_free(con, new_name, class_id=cls.class_id)
        con.execute(
            "UPDATE site_classes SET name = ?, updated_at = ? WHERE class_id = ?",
            [new_name, now, cls.class_id],
        )
        _alias(con, new_name, cls.class_id)
        _log(con, now, "rename", cls.class_id, new_name, actor, reason, previous=cls.name)
    return get(con=con, ref=cls.class_id)


def merge(
    *, con: Connection, ref: int | str, into: int | str, actor: str, reason: str
) -> SiteClass:
    """Merge the class ``ref`` into the active class ``into``: every label of ``ref`` (under
    any of its names) counts as ``into`` from the next dataset version on. Returns ``into``.

    Raises:
        UnknownClassError: either class is missing.
        ClassChangeError: the same class, ``ref`` merged already, or ``into`` not active.
    """
    reason = _reason(reason)
    now = datetime.now(UTC)
    with _CHANGES, transaction(con):
        source = get(con=con, ref=ref, lock=True)
        target = get(con=con, ref=into, lock=True)
        if source.class_id == target.class_id:
            raise ClassChangeError(f"cannot merge class {source.name!r} into itself")
        if source.status == MERGED:
            raise ClassChangeError(f"class {source.name!r} was merged already")
        if target.status != ACTIVE:
            raise ClassChangeError(
                f"cannot merge into class {target.name!r}: it is {target.status}; "
                "merge into an active class"
            )
        _check_not_last(con, source)
        con.execute(
            "UPDATE site_classes SET status = ?, merged_into = ?, updated_at = ? WHERE class_id = ?",
            [MERGED, target.class_id, now, source.class_id],
        )
        con.execute(
            "UPDATE class_aliases SET class_id = ? WHERE class_id = ?",
            [target.class_id, source.class_id],
        )
        _log(con, now, "merge", source.class_id, source.name, actor, reason, into=target.class_id)
    return get(con=con, ref=target.class_id)


def retire(*, con: Connection, ref: int | str, actor: str, reason: str) -> SiteClass:
    """Retire the active class ``ref``: no longer labelable, and its labels' boxes are left
    out of the dataset versions built from now on.

    Raises:
        UnknownClassError: no such class.
        ClassChangeError: not active, or the last active class.
    """
    reason = _reason(reason)
    now = datetime.now(UTC)
    with _CHANGES, transaction(con):
        cls = get(con=con, ref=ref, lock=True)
        if cls.status != ACTIVE:
            raise ClassChangeError(f"class {cls.name!r} is {cls.status} already")
        _check_not_last(con, cls)
        con.execute(
            "UPDATE site_classes SET status = ?, updated_at = ? WHERE class_id = ?",
            [RETIRED, now, cls.class_id],
        )
        _log(con, now, "retire", cls.class_id, cls.name, actor, reason)
    return get(con=con, ref=cls.class_id)


def _name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME_LEN or not name.isprintable():
        raise ClassNameError(
            f"a class name is 1 to {MAX_NAME_LEN} printable characters, got {name!r}"
        )
    if name.isdigit():
        raise ClassNameError(f"a class name needs a letter ({name!r} would read as a class id)")
    return name


def _reason(reason: str) -> str:
    if not reason.strip():
        raise ClassNameError("say why: a class change needs a reason")
    return reason.strip()


def _check_free(con: Connection, name: str, *, class_id: int | None) -> None:
    """Refuse ``name`` when a class other than ``class_id`` has or had it."""
    rows = con.execute(
        "SELECT c.class_id, c.name, c.status FROM class_aliases a "
        "JOIN site_classes c USING (class_id) WHERE a.name = ?",
        [name],
    ).fetchall()
    if rows and rows[0][0] != class_id:
        owner_id, owner, status = rows[0]
        now_named = "" if owner == name else f", now named {owner!r}"
        raise ClassChangeError(
            f"the name {name!r} belongs to class {owner_id} ({status}{now_named}): labels given "
            "that name count as that class; choose another name"
        )


def _check_not_last(con: Connection, cls: SiteClass) -> None:
    active = con.execute(
        f"SELECT class_id FROM site_classes WHERE status = '{ACTIVE}'{row_lock(con)}"
    ).fetchall()
    if cls.status == ACTIVE and [r[0] for r in active] == [cls.class_id]:
        raise ClassChangeError(
            f"class {cls.name!r} is the last active class; add another before retiring "
            "or merging it"
        )


def _alias(con: Connection, name: str, class_id: int) -> None:
    con.execute(
        "INSERT INTO class_aliases (name, class_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
        [name, class_id],
    )


def _log(
    con: Connection,
    now: datetime,
    action: str,
    class_id: int,
    name: str,
    actor: str,
    reason: str,
    *,
    previous: str | None = None,
    into: int | None = None,
) -> None:
    con.execute(
        "INSERT INTO class_changes (changed_at, action, class_id, name, previous_name, "
        "into_class_id, actor, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [now, action, class_id, name, previous, into, actor, reason],
    )
