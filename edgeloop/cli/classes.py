"""``edgeloop class``: the site's classes (issue 18; ``edgeloop.store.classes``).

- ``edgeloop class list``: every class (id, name, status) and the newest changes.
- ``edgeloop class add NAME --reason ...``
- ``edgeloop class rename CLASS NEW_NAME --reason ...``
- ``edgeloop class merge CLASS INTO --reason ...``
- ``edgeloop class retire CLASS --reason ...``

``CLASS`` is a class id or a current name. Each change is recorded with who (``--by``,
default ``cli:<user>``) and why. The list starts from the production model's class names
(seeded on first use, as the API and the dataset build do). Changes reach the labeling
page at once and the model with the next dataset version and retrain.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from edgeloop.cli.common import console, fail, loop_settings

if TYPE_CHECKING:
    from edgeloop.store import Connection
    from edgeloop.store.classes import SiteClass

app = typer.Typer(
    help="The site's classes: list, add, rename, merge, retire (recorded with who and why).",
    no_args_is_help=True,
)

Reason = Annotated[str, typer.Option("--reason", "-r", help="Why (required; recorded).")]
By = Annotated[
    str | None, typer.Option("--by", help="Who makes the change (default cli:<your user name>).")
]
Ref = Annotated[str, typer.Argument(help="The class: its id or current name.")]


def _seeded(con: Connection) -> None:
    """Seed the list from the production model's class names when it is empty."""
    from edgeloop.registry import PRODUCTION, ModelNotFoundError, alias_model_files, mlflow_client
    from edgeloop.store import classes

    if classes.active_names(con=con):
        return
    settings = loop_settings()
    try:
        names = alias_model_files(mlflow_client(settings), settings, PRODUCTION).class_names
    except ModelNotFoundError:
        return
    classes.seed(con=con, names=list(names))


def _change(action: Callable[[Connection, str], SiteClass], by: str | None, done: str) -> None:
    from edgeloop.store.classes import ClassChangeError, UnknownClassError

    with loop_settings().store().connect() as con:
        _seeded(con)
        try:
            changed = action(con, by or f"cli:{getpass.getuser()}")
        except (ClassChangeError, UnknownClassError) as exc:
            fail(str(exc))
    console.print(
        f"{done}: class {changed.class_id} [bold]{escape(changed.name)}[/] is {changed.status}. "
        "The labeling page has it now; the model follows with the next dataset version."
    )


@app.command("list")
def list_classes(
    changes: Annotated[int, typer.Option("--changes", help="How many changes to show.")] = 10,
) -> None:
    """Every class by id (active, merged, retired) and the newest changes."""
    from edgeloop.store import classes

    with loop_settings().store().connect() as con:
        _seeded(con)
        rows, log = classes.list_classes(con=con), classes.changes(con=con, limit=changes)
    if not rows:
        fail("no classes yet and no production model to start from: `edgeloop init`, or add one")
    table = Table(title="classes")
    for column in ("id", "name", "status", "merged into"):
        table.add_column(column)
    for c in rows:
        table.add_row(str(c.class_id), escape(c.name), c.status, str(c.merged_into or ""))
    console.print(table)
    history = Table(title="changes, newest first")
    for column in ("when (UTC)", "action", "class", "by", "why"):
        history.add_column(column)
    for entry in log:
        what = escape(entry["name"])
        if entry["previous_name"]:
            what = f"{escape(entry['previous_name'])} -> {what}"
        if entry["into_class_id"]:
            what += f" -> class {entry['into_class_id']}"
        history.add_row(
            f"{entry['changed_at']:%Y-%m-%d %H:%M}",
            entry["action"],
            what,
            escape(entry["actor"]),
            escape(entry["reason"]),
        )
    console.print(history)


@app.command()
def add(
    name: Annotated[str, typer.Argument(help="The new class's name.")],
    reason: Reason,
    by: By = None,
) -> None:
    """Add a class: labelable at once, trained from the next dataset version."""
    from edgeloop.store import classes

    _change(
        lambda con, actor: classes.add(con=con, name=name, actor=actor, reason=reason), by, "added"
    )


@app.command()
def rename(
    ref: Ref,
    new_name: Annotated[str, typer.Argument(help="The class's new name.")],
    reason: Reason,
    by: By = None,
) -> None:
    """Rename a class; labels given its old name count under the new one."""
    from edgeloop.store import classes

    _change(
        lambda con, actor: classes.rename(
            con=con, ref=ref, new_name=new_name, actor=actor, reason=reason
        ),
        by,
        "renamed",
    )


@app.command()
def merge(
    ref: Ref,
    into: Annotated[str, typer.Argument(help="The active class (id or name) that takes it in.")],
    reason: Reason,
    by: By = None,
) -> None:
    """Merge a class into another: its labels count as that class from the next version."""
    from edgeloop.store import classes

    _change(
        lambda con, actor: classes.merge(con=con, ref=ref, into=into, actor=actor, reason=reason),
        by,
        f"merged {ref} into it",
    )


@app.command()
def retire(ref: Ref, reason: Reason, by: By = None) -> None:
    """Retire a class: no longer labelable; its boxes are left out of new dataset versions."""
    from edgeloop.store import classes

    _change(
        lambda con, actor: classes.retire(con=con, ref=ref, actor=actor, reason=reason),
        by,
        "retired",
    )
