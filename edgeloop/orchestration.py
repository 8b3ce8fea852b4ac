"""What the API, the CLI and the Dagster code location share about runs: the retrain job's
name, the stack-identity keys, and the stack id that tells one stack's Dagster from another's.

A *stack* is one data folder and the processes that work on it: the API, the Dagster code
location (its code server and run workers), the CLI. Two stacks on one machine each run
a Dagster webserver; Dagster's default address (:3000) is the same for both, so an API
of one stack can reach the other's Dagster. Before it launches a run the API asks
Dagster (GraphQL) for the job's metadata, where the code location put its stack id and
data folder (``pipelines/jobs.py``), and refuses when the id is not its own; it also tags
the run with its id (``STACK_TAG``), and each asset's store resource fails a run whose
tag names another stack before it touches anything (``assets/resources.py``).

The id is a random UUID written once to ``<data_dir>/stack-id``, by whichever comes
first: ``edgeloop init``, the start of a service by ``edgeloop up`` or ``edgeloop demo``
(``edgeloop.cli.services.service_env``), or the API before its first launch (``O_EXCL``:
two writers at once end up with the same id). The code location only reads it, when it
loads; one loaded before the id existed names no stack, and the API refuses it until it
is restarted. The id moves with a moved folder; a copied folder (the original still in
place) gets an id of its own on its first read, so a site cloned for testing never
launches runs on the original's Dagster. A networked site (``EDGELOOP_DATABASE_URL``) keeps
its id in the database instead, which all its processes share (``edgeloop.store.stack``,
through ``LoopSettings.stack_id``). Standard library (and ``edgeloop.files``) only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from edgeloop.files import atomic_write_text

logger = logging.getLogger(__name__)

RETRAIN_JOB = "retrain_job"
"""The Dagster job the API and the sensors launch: dataset -> fine-tune -> evaluate -> promote."""
DRIFT_JOB = "drift_job"
"""The Dagster job that computes each camera's drift report (``drift_schedule``)."""
LABELING_JOB = "labeling_job"
"""The Dagster job that refreshes the labeling queue and crop embeddings (``labeling_schedule``)."""

DEFAULT_QUEUE = "dagster"
"""Celery queue of the steps that need no accelerator (dagster-celery's own default queue,
``dagster_celery.defaults.task_default_queue``): dataset builds, drift, the labeling queue."""
TRAINING_QUEUE = "gpu"
"""Celery queue of the fine-tune and held-out evaluation steps, so that a worker on a GPU
node (``edgeloop worker --queue gpu``) takes them when ``EDGELOOP_CELERY_BROKER_URL`` is set."""
CELERY_QUEUE_TAG = "dagster-celery/queue"
"""Op tag naming a step's Celery queue (``dagster_celery.tags.DAGSTER_CELERY_QUEUE_TAG``,
repeated here so that the assets need not import dagster-celery, a networked-only extra)."""
CELERY_EXECUTOR = "celery"
"""Name of the code location's executor when steps go to Celery workers
(``pipelines.executors.loop_executor``); ``edgeloop.cli.headless`` tells it by this name."""
TRAINING_OP_TAGS = {CELERY_QUEUE_TAG: TRAINING_QUEUE}
"""Op tags of the steps that want the accelerator; ignored by Dagster's own executors."""

PIPELINES_ENV_PREFIX = "EDGELOOP_PIPELINES_"
"""Env prefix of the code location's settings (``pipelines/settings.py``), which the API's
console and ``edgeloop up`` read back without importing the code location."""

# Run tags: who launched a run and why (the API, the sensors, the console read them back).
JOB_TAG = "edgeloop/job"
"""Tag on a job's runs naming its kind (``retrain``): the key ``dagster.yaml``'s
``tag_concurrency_limits`` counts, so that one retrain runs at a time."""
TRIGGER_TAG = "edgeloop/trigger"
"""What launched a retrain: ``label_count``, ``drift`` or ``manual``."""
LABELS_TAG = "edgeloop/labels"
"""Reviewed labels since the last training run, when a label-count retrain was launched."""
CAMERAS_TAG = "edgeloop/cameras"
"""The drifted cameras (comma-separated) a drift retrain was launched for."""
PUSHED_TAG = "edgeloop/pushed"
"""Set (to ``api``) when the API's label push launched the run, not the sensor."""
ACTOR_TAG = "edgeloop/actor"
"""The token name that asked for a manual retrain."""

STACK_TAG = "edgeloop/stack"
"""Run tag (set by the API on the runs it launches) and job-metadata key (set by the code
location on its jobs) holding a stack id."""

DATA_DIR_KEY = "edgeloop/data_dir"
"""Job-metadata key holding the code location's data folder (absolute), for messages."""

STACK_ID_FILE = "stack-id"
"""Name of the file in the data folder that holds its stack id (32 hex) and, on a second
line, the folder it was written for (absolute)."""


class StackMismatchError(RuntimeError):
    """A run was to be launched on, or run by, another stack's Dagster; the message names
    both stack ids and data folders and what to change."""


def stack_id_path(data_dir: Path) -> Path:
    """``<data_dir>/stack-id``."""
    return data_dir / STACK_ID_FILE


def read_stack_id(data_dir: Path) -> str | None:
    """The data folder's stack id, or None when it has none yet.

    The file also names the folder it was written for. Read in another folder, it was
    copied or moved there: while the folder it names still holds a ``stack-id`` (checked
    with a stat, the original's files are never opened) this is a **copy**, a stack of its
    own, and gets a new id, logged; otherwise the folder moved and keeps its id. A file
    written before the folder was recorded (one line) is taken as written here.

    Raises:
        ValueError: the file exists but holds no id (it was emptied or damaged).
    """
    path = stack_id_path(data_dir)
    try:
        lines = path.read_text().split("\n")
    except FileNotFoundError:
        return None
    stack = lines[0].strip()
    if not stack:
        raise ValueError(f"{path} is empty: delete it, and `edgeloop init` writes a new stack id")
    here = data_dir.resolve()
    recorded = Path(lines[1].strip()) if len(lines) > 1 and lines[1].strip() else here
    if recorded == here:
        return stack
    if stack_id_path(recorded).exists():
        copied_from = stack
        stack = uuid.uuid4().hex
        logger.warning(
            "data folder %s is a copy of %s: it gets a stack id of its own (%s, was %s), so "
            "its API never launches runs on the original's Dagster",
            here,
            recorded,
            stack,
            copied_from,
        )
    atomic_write_text(path, f"{stack}\n{here}\n")
    return stack


def stack_id(data_dir: Path) -> str:
    """The data folder's stack id, written first (a new UUID, hex) when it has none.

    Raises:
        ValueError: the file exists but holds no id.
        OSError: the data folder cannot be created or written.
    """
    existing = read_stack_id(data_dir)
    if existing is not None:
        return existing
    data_dir.mkdir(parents=True, exist_ok=True)
    path = stack_id_path(data_dir)
    # Written whole under a private name, then linked into place: link(2) fails when the
    # name exists, so of processes asking at once exactly one id wins, and no reader ever
    # sees the file created but not yet written (O_EXCL on the final name allowed that).
    draft = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        with draft.open("w") as out:
            out.write(f"{uuid.uuid4().hex}\n{data_dir.resolve()}\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another process wrote it just now
            os.link(draft, path)
    finally:
        draft.unlink(missing_ok=True)
    found = read_stack_id(data_dir)
    assert found is not None
    return found


def check_run_stack(run_tags: Mapping[str, str], ours: Callable[[], str], data_dir: Path) -> None:
    """Refuse a run that another stack launched into this one.

    A run without ``STACK_TAG`` (launched by this code location's sensors, schedules or the
    Dagster UI) passes.

    Args:
        ours: this stack's id (``LoopSettings.stack_id``: the data folder's file, or the
            networked site's database), called only for a tagged run.
        data_dir: this stack's data folder, for the message.

    Raises:
        StackMismatchError: the run's ``STACK_TAG`` is not this stack's id.
    """
    theirs = run_tags.get(STACK_TAG)
    if theirs is None:
        return
    own = ours()
    if theirs != own:
        raise StackMismatchError(
            f"this run was launched by stack {theirs}, but this Dagster code location belongs "
            f"to stack {own} (data folder {data_dir.resolve()}): nothing was done. Point that "
            "stack's API at its own Dagster (EDGELOOP_API_DAGSTER_URL)."
        )
