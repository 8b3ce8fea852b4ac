"""The site's classes (``edgeloop.store.classes``) on both store backends: seeding from the
production model's names, add / rename / merge / retire with who and why, the refusals,
and the ``old name -> current name`` map the dataset build applies."""

from __future__ import annotations

import pytest

from edgeloop.store import AnyStore, classes
from edgeloop.store.classes import ClassChangeError, UnknownClassError


def test_seed_once_in_model_order_with_stable_ids(store: AnyStore) -> None:
    with store.connect() as con:
        assert classes.active_names(con=con) == []
        assert classes.seed(con=con, names=["Normal", "Fall"]) is True
        assert classes.seed(con=con, names=["Other"]) is False  # seeded already
        listed = classes.list_classes(con=con)
        assert [(c.name, c.status) for c in listed] == [("Normal", "active"), ("Fall", "active")]
        assert listed[0].class_id < listed[1].class_id
        log = classes.changes(con=con)
        assert [(c["action"], c["name"], c["actor"]) for c in reversed(log)] == [
            ("seed", "Normal", "seed"),
            ("seed", "Fall", "seed"),
        ]


def test_add_rename_merge_retire_map_every_old_name(store: AnyStore) -> None:
    with store.connect() as con:
        classes.seed(con=con, names=["Normal", "Fall"])
        fall_id = classes.get(con=con, ref="Fall").class_id
        helmet = classes.add(con=con, name="helmet", actor="ana", reason="site wants helmets")
        assert helmet.status == "active" and helmet.class_id > fall_id
        classes.rename(con=con, ref="Fall", new_name="fallen", actor="ana", reason="clearer")
        assert classes.get(con=con, ref=fall_id).name == "fallen"  # same id, new name
        hardhat = classes.add(con=con, name="hard hat", actor="bo", reason="second site")
        into = classes.merge(
            con=con, ref=hardhat.class_id, into="helmet", actor="bo", reason="same thing"
        )
        assert into.name == "helmet"
        assert classes.get(con=con, ref="hard hat").status == "merged"
        assert classes.active_names(con=con) == ["Normal", "fallen", "helmet"]
        classes.retire(con=con, ref="Normal", actor="ana", reason="not needed")
        assert classes.active_names(con=con) == ["fallen", "helmet"]
        assert classes.name_map(con=con) == {
            "Normal": None,
            "Fall": "fallen",
            "fallen": "fallen",
            "helmet": "helmet",
            "hard hat": "helmet",
        }
        log = classes.changes(con=con, limit=4)
        assert [c["action"] for c in log] == ["retire", "merge", "add", "rename"]
        assert log[1]["into_class_id"] == helmet.class_id and log[1]["actor"] == "bo"
        assert log[3]["previous_name"] == "Fall" and log[3]["reason"] == "clearer"
        # Rename back to a name the class had is fine; the map still sends both to it.
        classes.rename(con=con, ref="fallen", new_name="Fall", actor="ana", reason="undo")
        assert classes.name_map(con=con)["fallen"] == "Fall"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda con: classes.add(con=con, name="Fall", actor="a", reason="r"), "belongs to class"),
        (lambda con: classes.add(con=con, name="  ", actor="a", reason="r"), "1 to 64"),
        (lambda con: classes.add(con=con, name="7", actor="a", reason="r"), "class id"),
        (lambda con: classes.add(con=con, name="new", actor="a", reason=" "), "reason"),
        (
            lambda con: classes.rename(
                con=con, ref="Normal", new_name="Fall", actor="a", reason="r"
            ),
            "belongs to class",
        ),
        (
            lambda con: classes.merge(con=con, ref="Fall", into="Fall", actor="a", reason="r"),
            "into itself",
        ),
        (
            lambda con: classes.merge(con=con, ref="Normal", into="gone", actor="a", reason="r"),
            "retired",
        ),
        (lambda con: classes.retire(con=con, ref="gone", actor="a", reason="r"), "already"),
    ],
)
def test_refused_changes_say_why_and_change_nothing(store: AnyStore, change, message) -> None:  # type: ignore[no-untyped-def]
    with store.connect() as con:
        classes.seed(con=con, names=["Normal", "Fall", "gone"])
        classes.retire(con=con, ref="gone", actor="a", reason="r")
        before = (classes.list_classes(con=con), len(classes.changes(con=con)))
        with pytest.raises(ClassChangeError, match=message):
            change(con)
        assert (classes.list_classes(con=con), len(classes.changes(con=con))) == before


def test_the_last_active_class_stays_and_unknown_classes_are_named(store: AnyStore) -> None:
    with store.connect() as con:
        classes.seed(con=con, names=["Normal", "Fall"])
        classes.retire(con=con, ref="Fall", actor="a", reason="r")
        with pytest.raises(ClassChangeError, match="last active class"):
            classes.retire(con=con, ref="Normal", actor="a", reason="r")
        with pytest.raises(UnknownClassError, match="no class 'forklift'"):
            classes.rename(con=con, ref="forklift", new_name="x", actor="a", reason="r")
        assert classes.active_names(con=con) == ["Normal"]
