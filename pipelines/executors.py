"""Where a run's steps execute.

Unset ``EDGELOOP_CELERY_BROKER_URL``: Dagster's default executor, each step a subprocess of
the run on the daemon's host (the embedded default). Set: the Celery executor
(``dagster-celery``, the networked extra) hands every step to the broker, and
``edgeloop worker`` processes on any host take them from their queues: the fine-tune and
the held-out evaluation from ``TRAINING_QUEUE`` (a GPU node's worker), the rest from
``DEFAULT_QUEUE``. Workers and the run share nothing on disk: asset values go through
object storage (``assets.resources.AssetValuesIOManager``), events through the instance's
PostgreSQL (``EDGELOOP_DAGSTER_DATABASE_URL``).
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from edgeloop.orchestration import CELERY_EXECUTOR, DEFAULT_QUEUE
from edgeloop.settings import LoopSettings

CELERY_CONFIG_SOURCE: dict[str, Any] = {
    # One step at a time per worker process: a fine-tune holds the accelerator for minutes,
    # and a prefetched step would wait behind it instead of going to an idle worker.
    "worker_prefetch_multiplier": 1,
    "task_default_queue": DEFAULT_QUEUE,
    # A broker restart is ridden out: connections are retried at start and after a loss.
    "broker_connection_retry_on_startup": True,
    "broker_connection_max_retries": None,
}
"""Celery settings shared by the executor and the workers (celery's "new lowercase"
settings; https://docs.celeryq.dev/en/stable/userguide/configuration.html)."""


def celery_config(broker_url: str) -> dict[str, Any]:
    """The Celery executor's config (``dagster_celery.celery_executor``'s schema): the
    broker, results through the same Redis (``redis://`` URLs), and
    ``CELERY_CONFIG_SOURCE``. ``edgeloop worker`` starts its workers on the same config, as
    dagster-celery requires."""
    return {"broker": broker_url, "backend": broker_url, "config_source": CELERY_CONFIG_SOURCE}


def loop_executor(settings: LoopSettings) -> dg.ExecutorDefinition | None:
    """The code location's executor: Celery when ``settings.celery_broker_url`` is set,
    else None (Dagster's default, multiprocess).

    Raises:
        ImportError: a broker is set but dagster-celery is missing (install the
            ``networked`` extra).
    """
    if not settings.celery_broker_url:
        return None
    try:
        from dagster_celery import celery_executor
    except ImportError as exc:
        raise ImportError(
            "EDGELOOP_CELERY_BROKER_URL is set, but dagster-celery is not installed: "
            "pip install 'edgeloop[networked]'"
        ) from exc
    return celery_executor.configured(
        celery_config(settings.celery_broker_url), name=CELERY_EXECUTOR
    )


def code_location_job(name: str) -> dg.JobDefinition:
    """The code location's job ``name``, resolved: the reconstructor that
    ``dagster.build_reconstructable_job`` points run workers and Celery workers at when a
    run is orchestrated outside a code server (``edgeloop.cli.headless``)."""
    from pipelines.definitions import defs

    return defs.resolve_job_def(name)
