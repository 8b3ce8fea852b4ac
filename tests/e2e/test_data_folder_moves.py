"""A data folder copied to another path works from there and never touches the original
(issue 20): a restored backup, a move to a bigger disk, a site cloned for testing.

The original is built by the real components in their own processes, as a user's stack
does (``edgeloop init``; frames and labels through the API; the detections, drift and
embedding assets; a retrain through ``retrain_job``: ``data_folder_site.py build``). It
is copied, and a second process started with ``EDGELOOP_DATA_DIR`` on the copy ingests and
labels more frames, writes a drift report and retrains (dataset version -> fine-tune ->
evaluation -> promotion). Meanwhile inotify watches the original: not one file of it may
be opened (its DuckDB and SQLite files included), and afterwards every file hashes as
before. The same holds for a folder in the layout the previous edgeloop wrote (absolute
paths in DuckDB, the DVC config, data.yaml and the crop index pointer).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest
from support import SAMPLES_DIR, SEED_PT, require

from edgeloop.settings import LoopSettings
from edgeloop.vectors.versions import read_pointer

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SITE = Path(__file__).with_name("data_folder_site.py")
SMALL = {  # the smallest run config the code location accepts (as tests/e2e's demo test)
    "EDGELOOP_PIPELINES_DETECTOR_MODEL__EPOCHS": "1",
    "EDGELOOP_PIPELINES_DETECTOR_MODEL__IMGSZ": "160",
    "EDGELOOP_PIPELINES_DETECTOR_MODEL__BATCH": "4",
    "EDGELOOP_PIPELINES_MODEL_EVALUATION__BATCH": "4",
    "EDGELOOP_PIPELINES_DRIFT_REPORT__WINDOW_FRAMES": "10",
    "EDGELOOP_PIPELINES_DRIFT_REPORT__MIN_WINDOW_FRAMES": "5",
}


STORED_FILES = (
    "datasets/.dvc/config",
    "datasets/yolo/data.yaml",
    "datasets/manifest.json",
    "qdrant/PUBLISHED.json",
)
"""Files of the data folder that name locations (the DVC remote, the dataset root, frames,
the crop index version)."""


def _run(data_dir: Path, *args: str, timeout_s: float = 600) -> str:
    """Run ``python *args`` as a loop-host process of ``data_dir`` (its own
    ``EDGELOOP_DATA_DIR``, ``DAGSTER_HOME``, ``YOLO_CONFIG_DIR``); returns its output."""
    env = dict(os.environ) | SMALL
    env |= {
        "EDGELOOP_DATA_DIR": str(data_dir),
        "DAGSTER_HOME": str(data_dir / "dagster"),
        "YOLO_CONFIG_DIR": str(data_dir / "ultralytics"),
    }
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=data_dir.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "Traceback" not in output, output[-6000:]
    return output


def _tree(root: Path) -> dict[str, str]:
    """Every entry under ``root``: relative path -> sha256 of a file, the target of a
    link, or ``dir``."""
    tree: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        if path.is_symlink():
            tree[key] = f"-> {os.readlink(path)}"
        elif path.is_dir():
            tree[key] = "dir"
        else:
            tree[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return tree


@contextmanager
def _watched(root: Path) -> Iterator[list[str]]:
    """Every inotify event under ``root`` while the block runs (opened, read-closed,
    modified, created, deleted, moved), from any process, as ``"<event> <path>"``."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers.inotify import InotifyObserver

    events: list[str] = []

    class Record(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            events.append(f"{event.event_type} {event.src_path}")

    observer = InotifyObserver()
    observer.schedule(Record(), str(root), recursive=True)
    observer.start()
    try:
        yield events
        time.sleep(1.0)  # inotify delivers asynchronously
    finally:
        observer.stop()
        observer.join()


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True)
    return target


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site's data folder after ``edgeloop init``, 20 ingested and labeled frames, the
    data assets and one retrain (dataset v1, model v2)."""
    data_dir = tmp_path_factory.mktemp("site-a") / "data"
    require(SAMPLES_DIR / "vtest.avi")
    require(SEED_PT)
    for folder, source in (("samples", SAMPLES_DIR), ("seed", SEED_PT.parent)):
        shutil.copytree(source, data_dir / folder, copy_function=os.link)
    _run(data_dir, "-m", "edgeloop.cli", "init")
    _run(data_dir, str(SITE), "build")
    return data_dir


def _stored_text(data_dir: Path) -> dict[str, list[str]]:
    """Every text value of the DuckDB and MLflow stores of ``data_dir`` (read from copies of
    their files), by ``duckdb:table.column`` / ``mlflow:table.column``, and the text of
    ``STORED_FILES`` by ``file:<path>``."""
    values: dict[str, list[str]] = {}
    scratch = data_dir.parent / "scratch"
    scratch.mkdir(exist_ok=True)
    db = scratch / "edgeloop.duckdb"
    shutil.copyfile(data_dir / "edgeloop.duckdb", db)
    with duckdb.connect(str(db), read_only=True) as con:
        columns = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE data_type IN ('VARCHAR', 'JSON')"
        ).fetchall()
        for table, column in columns:
            rows = con.execute(f'SELECT "{column}"::VARCHAR FROM "{table}"').fetchall()
            values[f"duckdb:{table}.{column}"] = [r[0] for r in rows if r[0]]
    mlflow_db = scratch / "mlflow.db"
    shutil.copyfile(data_dir / "mlflow" / "mlflow.db", mlflow_db)
    con = sqlite3.connect(mlflow_db)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for column in [r[1] for r in con.execute(f"PRAGMA table_info('{table}')")]:
                rows = con.execute(f'SELECT CAST("{column}" AS TEXT) FROM "{table}"').fetchall()
                values[f"mlflow:{table}.{column}"] = [r[0] for r in rows if r[0]]
    finally:
        con.close()
    shutil.rmtree(scratch)
    for name in STORED_FILES:
        values[f"file:{name}"] = [(data_dir / name).read_text()]
    return values


def _naming(values: dict[str, list[str]], folder: Path) -> dict[str, list[str]]:
    """The stored values that name ``folder`` (as a path or a ``file:`` URI)."""
    needles = (str(folder), folder.as_uri())
    found = {k: [v for v in vs if any(n in v for n in needles)] for k, vs in values.items()}
    return {k: vs for k, vs in found.items() if vs}


def _check_works_on_its_own(copy: Path, original: Path) -> None:
    """The copy retrained in itself: its stores name its own files, and the API on it
    serves its frames and drift reports."""
    settings = LoopSettings(data_dir=copy)
    stored = _stored_text(copy)
    own_uri = settings.artifact_root.resolve().as_uri()
    for column in (
        "mlflow:experiments.artifact_location",
        "mlflow:runs.artifact_uri",
        "mlflow:model_versions.source",
        "mlflow:model_versions.storage_location",
    ):
        edgeloop = [v for v in stored[column] if "/mlruns" not in v]  # MLflow's Default
        assert edgeloop and all(v.startswith(own_uri) for v in edgeloop), (column, edgeloop)
    assert len(stored["mlflow:model_versions.source"]) == 3  # seed, 1st and 2nd retrain
    jpegs = stored["duckdb:frames.jpeg_path"]
    assert len(jpegs) == 25 and all(v.startswith("frames/") for v in jpegs), jpegs[:3]
    reports = stored["duckdb:drift_reports.report_path"]
    assert len(reports) == 2 and all(v.startswith("reports/drift/") for v in reports)
    assert all((copy / v).is_file() for v in jpegs + reports)

    config = (copy / "datasets" / ".dvc" / "config").read_text()
    assert "url = ../../dvc-remote\n" in config, config
    assert "path:" not in (copy / "datasets" / "yolo" / "data.yaml").read_text()
    # The crop index opens from the copy's own folder (an older pointer's path is ignored).
    assert read_pointer(settings.qdrant_path).location == str(
        (settings.qdrant_path / "v0001").resolve()
    )
    # Dataset v2 (the copy's new labels) was pushed to the copy's own DVC remote.
    pushed = {p.name for p in (copy / "dvc-remote").rglob("*") if p.is_file()}
    assert len(pushed) > len([p for p in (original / "dvc-remote").rglob("*") if p.is_file()])
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        runs = con.execute(
            "SELECT dataset_version, model_version FROM training_runs ORDER BY started_at"
        ).fetchall()
    assert runs == [("v1", "2"), ("v2", "3")]

    from fastapi.testclient import TestClient

    from api.main import create_app
    from api.settings import ApiSettings

    api = ApiSettings(
        loop=settings,
        tokens={"admin-token": "admin"},  # type: ignore[arg-type]
        warm_registry=False,
        dagster_url="http://127.0.0.1:9",
    )
    admin = {"Authorization": "Bearer admin-token"}
    with TestClient(create_app(api)) as client:
        jpeg = client.get("/api/frames/cam-site:00000.jpg", headers=admin)
        assert jpeg.status_code == 200 and jpeg.content == (copy / jpegs[0]).read_bytes()
        drift = client.get("/api/metrics/drift", headers=admin)
        assert drift.status_code == 200, drift.text
        links = [r["report_url"] for r in drift.json()["data"]]
        assert links and all(links), drift.json()
        for link in links:
            assert client.get(link, headers=admin).status_code == 200, link
        similar = client.get(
            "/api/search/similar",
            params={"detection_id": "cam-site:00000:0", "limit": 3},
            headers=admin,
        )
        assert similar.status_code == 200 and similar.json()["hits"], similar.text


def _retrain_in(copy: Path, original: Path, *, logged: str) -> dict[str, list[str]]:
    """Retrain in ``copy`` (its own process) and check it works on its own, while inotify
    watches ``original``: nothing may open a file of it, and every file hashes as before.
    The retrain's output must say ``logged``. Returns the copy's stored text."""
    before = _tree(original)
    with _watched(original) as events:
        output = _run(copy, str(SITE), "retrain")
        assert logged in output, output[-3000:]
        _check_works_on_its_own(copy, original)
        stored = _stored_text(copy)
    assert events == [], f"the original was touched: {events[:20]}"
    assert _tree(original) == before
    return stored


def test_a_copied_data_folder_retrains_in_itself_and_leaves_the_original_as_it_was(
    original: Path, tmp_path: Path
) -> None:
    copy = _copy(original, tmp_path / "site-b" / "data")
    # MLflow makes every artifact URI absolute: the copy's first client rewrites them.
    stored = _retrain_in(copy, original, logged="the data folder moved: MLflow store")
    # Nothing a store of the copy holds names the original (MLflow's URIs rewritten, the
    # rest stored relative to the data folder).
    assert _naming(stored, original) == {}


def _as_previous_version(data_dir: Path) -> None:
    """Turn ``data_dir`` (a fresh copy) into what the previous edgeloop left at that path:
    absolute paths in ``frames.jpeg_path``, ``drift_reports.report_path`` (schema 3), the
    DVC remote URL, ``data.yaml``'s ``path`` and the crop index pointer; MLflow's URIs on
    the folder itself."""
    root = str(data_dir.resolve())
    with duckdb.connect(str(data_dir / "edgeloop.duckdb")) as con:
        for table, column in (("frames", "jpeg_path"), ("drift_reports", "report_path")):
            con.execute(f"UPDATE {table} SET {column} = ? || '/' || {column}", [root])
        con.execute("DELETE FROM schema_version WHERE version > 3")
    config = data_dir / "datasets" / ".dvc" / "config"
    config.write_text(config.read_text().replace("../../dvc-remote", f"{root}/dvc-remote"))
    data_yaml = data_dir / "datasets" / "yolo" / "data.yaml"
    data_yaml.write_text(f"path: {root}/datasets/yolo\n{data_yaml.read_text()}")
    pointer = data_dir / "qdrant" / "PUBLISHED.json"
    location = '"location": "v0001"'
    assert location in pointer.read_text()
    pointer.write_text(pointer.read_text().replace(location, f'"location": "{root}/qdrant/v0001"'))
    con = sqlite3.connect(data_dir / "mlflow" / "mlflow.db")
    with con:
        row = con.execute("SELECT artifact_location FROM experiments WHERE name = 'edgeloop'")
        old = row.fetchone()[0].removesuffix("/mlflow/artifacts")
        for table, column in (
            ("experiments", "artifact_location"),
            ("runs", "artifact_uri"),
            ("model_versions", "source"),
            ("model_versions", "storage_location"),
        ):
            new = Path(root).as_uri()
            con.execute(f"UPDATE {table} SET {column} = replace({column}, ?, ?)", [old, new])
    con.close()


def test_a_copied_data_folder_of_the_previous_version_is_migrated_and_works(
    original: Path, tmp_path: Path
) -> None:
    previous = _copy(original, tmp_path / "site-old" / "data")
    _as_previous_version(previous)
    copy = _copy(previous, tmp_path / "site-new" / "data")
    _retrain_in(copy, previous, logged="the data folder moved: the data repo's DVC remote was")
