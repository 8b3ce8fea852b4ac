"""Run the code location headless: tick a sensor, run what it asks for, materialize assets.

``edgeloop demo`` (and the tests) use these without the Dagster daemon, against the same instance that
``dagster dev`` shows later (``DAGSTER_HOME=data/dagster``, ``DagsterInstance.get()``),
so every run appears in the UI with its sensor and run key tags. Runs execute in this
process (``execute_in_process``), one after another.

The cursor of each sensor ticked here is kept in ``<instance root>/headless_sensor_cursors.json``:
Dagster has no public API to write a sensor's stored cursor outside the daemon. The
sensors are idempotent on their run keys (see ``pipelines/sensors.py``), so the
daemon, which keeps its own cursor, does not launch or record a trigger twice.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from edgeloop.files import atomic_write_text
from edgeloop.orchestration import CELERY_EXECUTOR

logger = logging.getLogger(__name__)

CURSOR_FILE = "headless_sensor_cursors.json"
CONSOLE_LOG_LEVEL = os.environ.get("EDGELOOP_PIPELINES_CONSOLE_LOG_LEVEL", "INFO")
"""Level of Dagster's console logger for headless runs: INFO shows the assets' own log
lines and hides the engine's DEBUG events (step starts, handled outputs), which stay in
the instance's event log and the UI."""
RUN_KEY_TAG = "dagster/run_key"
SENSOR_NAME_TAG = "dagster/sensor_name"


class RunFailedError(RuntimeError):
    """A run launched headless did not succeed; the message names the run and its failure."""


def cursor_path(instance: dg.DagsterInstance) -> Path:
    """Where ``tick_sensor`` keeps sensor cursors for this instance."""
    return Path(instance.root_directory) / CURSOR_FILE


def _load_cursors(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {str(k): str(v) for k, v in data.items()}


def _save_cursors(path: Path, cursors: dict[str, str]) -> None:
    atomic_write_text(path, json.dumps(cursors, indent=2, sort_keys=True), durable=False)


def _run_requests(result: Any) -> tuple[list[dg.RunRequest], str | None, bool]:
    """(run requests, cursor set by the result, whether the result set one)."""
    if result is None or isinstance(result, dg.SkipReason):
        return [], None, False
    if isinstance(result, dg.SensorResult):
        return list(result.run_requests or []), result.cursor, result.cursor is not None
    if isinstance(result, dg.RunRequest):
        return [result], None, False
    if isinstance(result, Iterable):
        requests: list[dg.RunRequest] = []
        cursor, has_cursor = None, False
        for item in result:
            more, item_cursor, item_has = _run_requests(item)
            requests.extend(more)
            if item_has:
                cursor, has_cursor = item_cursor, True
        return requests, cursor, has_cursor
    raise TypeError(f"unexpected sensor result {type(result).__name__}")


def _console_level(run_config: dg.RunConfig | Mapping[str, Any] | None) -> dict[str, Any]:
    """``run_config`` as a dict, with the console logger at ``CONSOLE_LOG_LEVEL`` unless set."""
    if run_config is None:
        config: dict[str, Any] = {}
    elif isinstance(run_config, dg.RunConfig):
        config = run_config.to_config_dict()
    else:
        config = dict(run_config)
    loggers = dict(config.get("loggers") or {})
    loggers.setdefault("console", {"config": {"log_level": CONSOLE_LOG_LEVEL}})
    config["loggers"] = loggers
    return config


def _run_exists(instance: dg.DagsterInstance, run_key: str) -> bool:
    return bool(instance.get_run_ids(filters=dg.RunsFilter(tags={RUN_KEY_TAG: run_key}), limit=1))


def _execute(
    defs: dg.Definitions,
    job_name: str,
    instance: dg.DagsterInstance,
    run_config: dict[str, Any],
    tags: dict[str, str],
) -> dg.ExecuteInProcessResult | dg.JobExecutionResult:
    """Run ``job_name`` in this process, or, when the code location's executor hands steps
    to Celery workers (``pipelines.executors``), orchestrate it here with its steps on the
    workers (``dagster.execute_job`` on a reconstructable pointer, which the workers load)."""
    job = defs.resolve_job_def(job_name)
    if job.executor_def.name != CELERY_EXECUTOR:
        return job.execute_in_process(
            instance=instance, run_config=run_config, tags=tags, raise_on_error=False
        )
    pointer = dg.build_reconstructable_job(
        "pipelines.executors", "code_location_job", reconstructable_args=(job_name,)
    )
    return dg.execute_job(pointer, instance, run_config=run_config, tags=tags)


def tick_sensor(
    defs: dg.Definitions,
    sensor_name: str,
    instance: dg.DagsterInstance,
    *,
    run_config: dg.RunConfig | dict[str, Any] | None = None,
    raise_on_error: bool = True,
) -> list[str]:
    """Evaluate one sensor once, then execute each new run it requests, in process (its
    steps on Celery workers when the code location has a broker configured).

    The sensor sees the cursor it left at its previous headless tick. A request whose
    run key already has a run on the instance is skipped, as the daemon would.

    Args:
        defs: the code location (``pipelines.definitions.defs``).
        sensor_name: e.g. ``label_count_sensor``, ``drift_sensor``.
        instance: the Dagster instance (``DagsterInstance.get()`` for ``data/dagster``).
        run_config: the run config of every run it launches, in place of the job's
            default (the demo passes its smaller training knobs here); a run config the
            sensor set on its request wins.
        raise_on_error: raise ``RunFailedError`` when a run fails (after saving the cursor).

    Returns:
        The ids of the runs executed (empty when the sensor skipped).

    Raises:
        RunFailedError: a launched run failed and ``raise_on_error`` is true.
    """
    sensor_def = defs.resolve_sensor_def(sensor_name)
    path = cursor_path(instance)
    cursors = _load_cursors(path)
    # Direct invocation takes resources from the context only, not from ``definitions``.
    resources = {key: (defs.resources or {})[key] for key in sensor_def.required_resource_keys}
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursors.get(sensor_name),
        definitions=defs,
        sensor_name=sensor_name,
        resources=resources,
    ) as context:
        result = sensor_def(context)
        requests, cursor, has_cursor = _run_requests(result)
        new_cursor = cursor if has_cursor else context.cursor
    if new_cursor is not None and new_cursor != cursors.get(sensor_name):
        cursors[sensor_name] = new_cursor
        _save_cursors(path, cursors)
    if isinstance(result, dg.SkipReason):
        logger.info("%s skipped: %s", sensor_name, result.skip_message)

    run_ids: list[str] = []
    failures: list[str] = []
    for request in requests:
        if request.run_key and _run_exists(instance, request.run_key):
            logger.info("%s: a run with key %s exists; skipped", sensor_name, request.run_key)
            continue
        job_name = request.job_name or sensor_def.job_name
        if job_name is None:
            raise ValueError(f"{sensor_name} requested a run without naming a job")
        tags = {**request.tags, SENSOR_NAME_TAG: sensor_name}
        if request.run_key:
            tags[RUN_KEY_TAG] = request.run_key
        logger.info("%s: running %s (run key %s)", sensor_name, job_name, request.run_key)
        config = _console_level(request.run_config or run_config)
        outcome = _execute(defs, job_name, instance, config, tags)
        run_ids.append(outcome.run_id)
        if not outcome.success:
            failures.append(f"{job_name} run {outcome.run_id} (key {request.run_key}) failed")
    if failures and raise_on_error:
        raise RunFailedError("; ".join(failures))
    return run_ids


def materialize(
    defs: dg.Definitions,
    selection: str | Sequence[str],
    instance: dg.DagsterInstance,
    *,
    run_config: dg.RunConfig | dict[str, Any] | None = None,
) -> str:
    """Materialize assets of ``defs`` (asset names, e.g. ``["detections", "drift_report"]``)
    in process on ``instance``, with the code location's resources. Returns the run id.

    ``run_config`` defaults to the assets' own config defaults (e.g.
    ``pipelines.jobs.drift_run_config(get_pipeline_settings())`` gives drift_job's).

    Raises:
        RunFailedError: the run failed.
    """
    names = [selection] if isinstance(selection, str) else list(selection)
    job = defs.resolve_implicit_global_asset_job_def()
    outcome = job.execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey.from_user_string(name) for name in names],
        run_config=_console_level(run_config),
        raise_on_error=False,
    )
    if not outcome.success:
        raise RunFailedError(f"materializing {', '.join(names)} failed (run {outcome.run_id})")
    return outcome.run_id
