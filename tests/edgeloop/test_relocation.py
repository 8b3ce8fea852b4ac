"""Stored paths that follow a copied or moved data folder (issue 20), piece by piece on
real files; ``tests/e2e/test_data_folder_moves.py`` retrains from a copy end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgeloop.relocation import (
    ForeignDataFolderError,
    check_own_location,
    dvc_remote_url,
    follow_moved_dvc_remote,
)
from edgeloop.settings import LoopSettings
from edgeloop.store import Store, migrate


def test_a_stored_path_is_relative_to_the_data_folder_and_found_in_a_copy(tmp_path: Path) -> None:
    here = LoopSettings(data_dir=tmp_path / "a" / "data")
    jpeg = here.frames_dir / "cam-1" / "cam-1~7.jpg"
    assert here.stored_path(jpeg) == "frames/cam-1/cam-1~7.jpg"
    outside = tmp_path / "elsewhere" / "best.pt"
    assert here.stored_path(outside) == str(outside.resolve())  # the user's own file

    there = LoopSettings(data_dir=tmp_path / "b" / "data")
    assert there.data_path("frames/cam-1/cam-1~7.jpg") == there.frames_dir / "cam-1" / "cam-1~7.jpg"
    assert there.data_path(str(outside)) == outside

    # A data folder reached through a symlink stores the same relative path.
    here.data_dir.mkdir(parents=True)
    (tmp_path / "link").symlink_to(here.data_dir)
    linked = LoopSettings(data_dir=tmp_path / "link")
    assert linked.stored_path(jpeg.resolve()) == "frames/cam-1/cam-1~7.jpg"


def test_the_schema_migration_makes_an_older_folders_absolute_paths_relative(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "data" / "edgeloop.duckdb")
    old = "/srv/old site/data"  # where the previous edgeloop wrote them
    with store.connect() as con:
        con.execute("DELETE FROM schema_version WHERE version > 3")  # a schema-3 file
        frames = [
            ("cam-1:1", "cam-1", f"{old}/frames/cam-1/cam-1~1.jpg"),
            ("cam-2:1", "cam-2", None),  # no JPEG
            ("cam-3:1", "cam-3", "/mnt/photos/cam-3/x.jpg"),  # not edgeloop's layout
        ]
        for key, camera, path in frames:
            con.execute(
                "INSERT INTO frames VALUES (?, ?, 0, now(), now(), 1, 1, 0, 0, 0, 0, 0, NULL, "
                "1, '1', 'a', ?)",
                [key, camera, path],
            )
        con.execute(
            "INSERT INTO drift_reports (camera_id, computed_at, reference_frames, current"
            "_frames, drift_share, min_p_value, drifted, p_values, report_path) VALUES ('cam-1', now(), 1, 1, 0, NULL, false, '{}', ?)",
            [f"{old}/reports/drift/cam-1/20260101T000000Z.html"],
        )
        migrate(con)
        stored = con.execute("SELECT jpeg_path FROM frames ORDER BY frame_key").fetchall()
        report = con.execute("SELECT report_path FROM drift_reports").fetchall()
    assert stored == [("frames/cam-1/cam-1~1.jpg",), (None,), ("/mnt/photos/cam-3/x.jpg",)]
    assert report == [("reports/drift/cam-1/20260101T000000Z.html",)]


OLD_CONFIG = """[core]
    analytics = false
    remote = local
['remote "local"']
    url = {url}

"""


def test_an_older_data_repos_absolute_dvc_remote_follows_the_copy(tmp_path: Path) -> None:
    original = tmp_path / "a" / "data"
    (original / "dvc-remote").mkdir(parents=True)
    (original / "datasets" / ".dvc").mkdir(parents=True)
    config = original / "datasets" / ".dvc" / "config"
    config.write_text(OLD_CONFIG.format(url=original / "dvc-remote"))
    # In place, nothing moved: left as it is.
    assert not follow_moved_dvc_remote(original / "datasets", original / "dvc-remote")

    copy = tmp_path / "b" / "data"
    shutil.copytree(original, copy)
    assert follow_moved_dvc_remote(copy / "datasets", copy / "dvc-remote")
    assert (copy / "datasets" / ".dvc" / "config").read_text() == OLD_CONFIG.format(
        url="../../dvc-remote"
    )
    assert dvc_remote_url(copy / "datasets", copy / "dvc-remote") == "../../dvc-remote"
    assert not follow_moved_dvc_remote(copy / "datasets", copy / "dvc-remote")  # once
    assert config.read_text() == OLD_CONFIG.format(url=original / "dvc-remote")

    # A remote the user keeps elsewhere stays where it is.
    nas = tmp_path / "nas" / "edgeloop-remote"
    assert dvc_remote_url(copy / "datasets", nas) == str(nas)
    (copy / "datasets" / ".dvc" / "config").write_text(OLD_CONFIG.format(url=nas))
    assert not follow_moved_dvc_remote(copy / "datasets", copy / "dvc-remote")


def test_a_dagster_home_left_in_another_data_folder_is_refused(tmp_path: Path) -> None:
    original, copy = tmp_path / "a" / "data", tmp_path / "b" / "data"
    for folder in (original, copy):
        folder.mkdir(parents=True)
        (folder / "edgeloop.duckdb").write_bytes(b"")
    with pytest.raises(ForeignDataFolderError, match=r"lies in the data folder .*/a/data"):
        check_own_location("DAGSTER_HOME", str(original / "dagster"), copy)
    check_own_location("DAGSTER_HOME", str(copy / "dagster"), copy)
    check_own_location("DAGSTER_HOME", str(tmp_path / "dagster-home"), copy)  # the user's own
