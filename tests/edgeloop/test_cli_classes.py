"""``edgeloop class list|add|rename|merge|retire`` on the loop's store: changes recorded with
who and why, refusals exit 1 with the reason."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from edgeloop.cli import app
from edgeloop.settings import get_settings
from edgeloop.store import classes


@pytest.fixture
def seeded() -> None:
    """The store of the test's data folder, seeded as the production model would seed it."""
    get_settings.cache_clear()
    with get_settings().store().connect() as con:
        classes.seed(con=con, names=["Normal", "Fall"])


def _run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["class", *args], catch_exceptions=False)


@pytest.mark.usefixtures("seeded")
def test_class_commands_change_the_list_with_who_and_why() -> None:
    added = _run("add", "forklift", "--reason", "new dock", "--by", "ana")
    assert added.exit_code == 0, added.output
    assert "added: class 3 forklift is active" in added.output
    assert _run("rename", "Fall", "fallen", "-r", "clearer", "--by", "ana").exit_code == 0
    assert _run("merge", "fallen", "Normal", "-r", "one class", "--by", "bo").exit_code == 0
    assert _run("retire", "Normal", "-r", "not needed").exit_code == 0
    last = _run("retire", "forklift", "-r", "no dock")
    assert last.exit_code == 1 and "last active class" in last.output
    itself = _run("merge", "forklift", "forklift", "-r", "x")
    assert itself.exit_code == 1 and "into itself" in itself.output
    assert _run("add", "x", "-r", " ").exit_code == 1

    listed = _run("list", "--changes", "3")
    assert listed.exit_code == 0, listed.output
    assert "forklift" in listed.output and "retired" in listed.output
    with get_settings().store().connect() as con:
        assert classes.active_names(con=con) == ["forklift"]
        log = classes.changes(con=con, limit=3)
    assert [(c["action"], c["actor"]) for c in log][:2] == [
        ("retire", log[0]["actor"]),
        ("merge", "bo"),
    ]
    assert log[0]["actor"].startswith("cli:")
