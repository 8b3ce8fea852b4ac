"""A data folder that was copied or moved: its stores follow it (issue 20).

Whatever edgeloop stores names the data folder's files relative to it
(``LoopSettings.stored_path``): frame JPEGs and drift reports in DuckDB, the crop index
pointer, the dataset's ``data.yaml``, and the DVC remote of the data repo, written
relative to the repo's ``.dvc/`` folder (DVC resolves a relative remote URL against the
config file's folder, ``dvc.config.Config``). Two stores cannot be told that:

- **MLflow** resolves a relative artifact location to an absolute one when the experiment
  is created (``resolve_uri_if_local`` in ``SqlAlchemyStore.create_experiment``), then
  copies that prefix into every run's ``artifact_uri`` and every model version's
  ``source``/``storage_location``; ``mlflow-artifacts:`` URIs would follow the folder but
  need an ``mlflow server`` in every process (with a ``sqlite:`` tracking URI MLflow
  refuses them). MLflow's client API cannot change any of these fields, so
  ``follow_moved_mlflow_store`` rewrites them in the store's SQLite file, once, when the
  ``edgeloop`` experiment's artifact location names another folder, and logs it.
- A data repo made by an older edgeloop has the remote's absolute path in ``.dvc/config``:
  ``follow_moved_dvc_remote`` makes it relative when it names another data folder's
  ``dvc-remote``.

DuckDB rows written by an older edgeloop are made relative by the schema migration
(``edgeloop.store.schema``, version 5).
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlparse

logger = logging.getLogger(__name__)

MLFLOW_URI_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
    ("logged_models", "artifact_location"),
)
"""The columns of MLflow 3's SQLite store that hold artifact URIs (MLflow 3.17 schema; a
column an older store lacks is skipped)."""

_checked: set[tuple[Path, str]] = set()
_URL_LINE = re.compile(r"^(?P<lead>[ \t]*url[ \t]*=[ \t]*)(?P<url>.*?)[ \t]*$", re.MULTILINE)


def _local_path(uri: str) -> Path | None:
    """The local path a ``file:`` URI or a plain absolute path names, else None."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and uri.startswith("/"):
        return Path(uri)
    return None


def follow_moved_mlflow_store(db_path: Path, artifact_root: Path, experiment: str) -> int:
    """Point the artifact URIs of the MLflow SQLite store ``db_path`` at ``artifact_root``
    when its ``experiment`` was created in a data folder at another path; once per
    process and folder (cheap: one SELECT when nothing moved).

    Every URI that lies under the experiment's old artifact location (as a ``file:`` URI
    or a plain path) is rewritten to the same place under ``artifact_root``, in one
    transaction, with a warning naming both folders. URIs elsewhere (another experiment's
    own location, a remote store) are left as they are.

    Args:
        db_path: the store's SQLite file (``<data_dir>/mlflow/mlflow.db``).
        artifact_root: where this data folder keeps MLflow artifacts
            (``LoopSettings.artifact_root``).
        experiment: the experiment whose location tells the old folder (``edgeloop``).

    Returns:
        The number of URIs rewritten (0 when nothing had moved).

    Raises:
        sqlite3.OperationalError: the file is locked for longer than 30 s, or unreadable.
    """
    new_root = artifact_root.resolve()
    key = (db_path.resolve(), experiment)
    if key in _checked or not db_path.is_file():
        return 0
    con = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    try:
        old_root, changed = _old_root(con, experiment, new_root), 0
        if old_root is not None:
            # Checked again inside one write transaction: two processes starting on a moved
            # folder (the API and Dagster) rewrite it once.
            con.execute("BEGIN IMMEDIATE")
            try:
                old_root = _old_root(con, experiment, new_root)
                if old_root is not None:
                    changed = _rewrite_artifact_uris(con, old_root, new_root)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
    finally:
        con.close()
    _checked.add(key)
    if old_root is None:
        return 0
    logger.warning(
        "the data folder moved: MLflow store %s pointed at artifacts in %s; %s artifact URIs "
        "(experiment, runs, model versions) now point at %s",
        db_path,
        old_root,
        changed,
        new_root,
    )
    return changed


def _old_root(con: sqlite3.Connection, experiment: str, new_root: Path) -> Path | None:
    """The local folder ``experiment``'s artifacts were created in, when it is not
    ``new_root``; None when the store has no such experiment yet (or no tables), or its
    location is not a local folder, or it already is ``new_root``."""
    try:
        row = con.execute(
            "SELECT artifact_location FROM experiments WHERE name = ?", [experiment]
        ).fetchone()
    except sqlite3.OperationalError:  # an empty file: MLflow creates the tables later
        return None
    old_root = _local_path(row[0]) if row and row[0] else None
    return None if old_root == new_root else old_root


def _rewrite_artifact_uris(con: sqlite3.Connection, old_root: Path, new_root: Path) -> int:
    """Rewrite every URI under ``old_root`` (``file:`` URI or plain path) in
    ``MLFLOW_URI_COLUMNS`` to the same place under ``new_root``; returns how many."""
    changed = 0
    for table, column in MLFLOW_URI_COLUMNS:
        if column not in {r[1] for r in con.execute(f"PRAGMA table_info('{table}')")}:
            continue
        for old, new in ((old_root.as_uri(), new_root.as_uri()), (str(old_root), str(new_root))):
            changed += con.execute(
                f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                f"WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                [new, len(old) + 1, old, len(old) + 1, f"{old}/"],
            ).rowcount
    return changed


def dvc_remote_url(repo_root: Path, remote: Path) -> str:
    """The URL to write in ``<repo_root>/.dvc/config`` for the local remote folder
    ``remote``: relative to ``.dvc/`` (as DVC resolves it) when the remote lies in the
    folder that holds the data repo (the data folder), so both move together; absolute
    otherwise."""
    remote, config_dir = remote.resolve(), repo_root.resolve() / ".dvc"
    if remote.is_relative_to(repo_root.resolve().parent):
        return Path(os.path.relpath(remote, config_dir)).as_posix()
    return str(remote)


def follow_moved_dvc_remote(repo_root: Path, remote: Path) -> bool:
    """Rewrite the data repo's remote URL when an older edgeloop wrote it as the absolute
    path of another data folder's remote: an absolute ``url`` with the same folder name as
    ``remote``, which exists here (the copy of it), but not at this path. Returns whether
    the config changed (logged as a warning)."""
    config = repo_root / ".dvc" / "config"
    try:
        text = config.read_text()
    except FileNotFoundError:
        return False
    wanted = dvc_remote_url(repo_root, remote)
    for match in _URL_LINE.finditer(text):
        url = Path(match["url"])
        if (
            url.is_absolute()
            and url.name == remote.name
            and url != remote.resolve()
            and remote.is_dir()
        ):
            config.write_text(
                f"{text[: match.start()]}{match['lead']}{wanted}{text[match.end() :]}"
            )
            logger.warning(
                "the data folder moved: the data repo's DVC remote was %s; now %s (relative to %s)",
                url,
                wanted,
                config.parent,
            )
            return True
    return False


class ForeignDataFolderError(RuntimeError):
    """A location the loop host's processes share (``DAGSTER_HOME``, ``YOLO_CONFIG_DIR``)
    lies in another data folder than ``EDGELOOP_DATA_DIR``: left from a shell that ran the
    folder this one was copied from, it would make the stack write there."""


def check_own_location(name: str, value: str, data_dir: Path) -> None:
    """Refuse an environment variable ``name`` (e.g. ``DAGSTER_HOME``) whose folder ``value``
    lies directly in another edgeloop data folder (one holding ``edgeloop.duckdb``) than
    ``data_dir``; a folder anywhere else is the user's choice and is kept.

    Raises:
        ForeignDataFolderError: naming both folders and the fix.
    """
    folder = Path(value).resolve().parent
    if folder != data_dir.resolve() and (folder / "edgeloop.duckdb").is_file():
        raise ForeignDataFolderError(
            f"{name}={value} lies in the data folder {folder}, but EDGELOOP_DATA_DIR is "
            f"{data_dir.resolve()}: unset {name} (edgeloop then uses the data folder's own) "
            f"or point it into {data_dir.resolve()}"
        )
