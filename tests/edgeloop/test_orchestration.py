"""The stack id of a data folder: written once, the same for every process that asks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support import REPO_ROOT

from edgeloop.orchestration import read_stack_id, stack_id, stack_id_path


def test_the_first_ask_writes_the_id_and_later_asks_read_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert read_stack_id(data_dir) is None
    first = stack_id(data_dir)
    assert len(first) == 32 and int(first, 16) >= 0
    assert stack_id(data_dir) == first == read_stack_id(data_dir)
    assert stack_id_path(data_dir).read_text() == f"{first}\n{data_dir.resolve()}\n"
    assert stack_id(tmp_path / "other") != first


def test_processes_asking_at_once_agree_on_one_id(tmp_path: Path) -> None:
    code = "import sys; from pathlib import Path; from edgeloop.orchestration import stack_id; print(stack_id(Path(sys.argv[1])))"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / "data")],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    ids = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert ids == {read_stack_id(tmp_path / "data")}


def test_a_copied_folder_is_a_stack_of_its_own_and_a_moved_one_is_not(tmp_path: Path) -> None:
    """Issue 20: a site cloned for testing must not launch runs on the original's Dagster."""
    import shutil

    original = tmp_path / "site"
    first = stack_id(original)
    copy = tmp_path / "site-copy"
    shutil.copytree(original, copy)
    before = stack_id_path(original).read_bytes()

    copied = stack_id(copy)
    assert copied != first
    assert read_stack_id(copy) == copied  # stable from now on
    assert stack_id_path(original).read_bytes() == before
    assert stack_id(original) == first

    moved = tmp_path / "site-moved"
    original.rename(moved)
    assert stack_id(moved) == first
    assert stack_id_path(moved).read_text().splitlines()[1] == str(moved.resolve())


def test_a_stack_file_of_one_line_keeps_its_id(tmp_path: Path) -> None:
    stack_id_path(tmp_path).write_text("0123456789abcdef0123456789abcdef\n")
    assert stack_id(tmp_path) == "0123456789abcdef0123456789abcdef"
