"""``edgeloop worker`` and ``edgeloop dagster-home``: the scaled-out orchestration's processes.

A networked site runs the Dagster webserver and daemon on one host and Celery workers on
others (a GPU node among them); all of them load the same instance file, which
``edgeloop dagster-home`` writes into ``DAGSTER_HOME`` (PostgreSQL storage when
``EDGELOOP_DAGSTER_DATABASE_URL`` is set). A worker takes steps from the queues it is
given (``edgeloop.orchestration``: ``dagster`` for most steps, ``gpu`` for the fine-tune
and the held-out evaluation) through the broker ``EDGELOOP_CELERY_BROKER_URL``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgeloop.cli.common import console, fail, loop_settings
from edgeloop.orchestration import DEFAULT_QUEUE, TRAINING_QUEUE

if TYPE_CHECKING:
    from edgeloop.settings import LoopSettings

CELERY_APP = "dagster_celery.app"
"""The Celery app whose tasks execute Dagster steps (dagster-celery's worker target)."""


def _home(settings: LoopSettings) -> Path:
    """``DAGSTER_HOME`` when set, else ``<data_dir>/dagster``, with the site's instance file
    written into it (``edgeloop.cli.services.write_instance``)."""
    from edgeloop.cli.services import dagster_home, write_instance

    if os.environ.get("DAGSTER_HOME"):
        return write_instance(Path(os.environ["DAGSTER_HOME"]).resolve(), settings)
    return dagster_home(settings)


def dagster_home_command() -> None:
    """Write the Dagster instance file (dagster.yaml: queued runs, one retrain at a time;
    PostgreSQL storage when EDGELOOP_DAGSTER_DATABASE_URL is set) into DAGSTER_HOME (default
    <data_dir>/dagster) and print the folder. Run it before dagster-webserver, dagster-daemon
    and the workers on every host."""
    print(_home(loop_settings()))


def worker_command(
    queue: Annotated[
        list[str] | None,
        typer.Option(
            help=(
                f"Queue to take steps from; repeat for several (at most 4). {TRAINING_QUEUE!r} "
                f"carries the fine-tune and the evaluation, {DEFAULT_QUEUE!r} the rest."
            )
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Steps this worker runs at once (processes).")
    ] = 1,
    name: Annotated[
        str | None,
        typer.Option(help="Worker name (the node is NAME@host); default: edgeloop-QUEUES."),
    ] = None,
) -> None:
    """Run a Celery worker that executes the code location's steps (dagster-celery), in the
    foreground; needs EDGELOOP_CELERY_BROKER_URL and the same instance as the daemon."""
    settings = loop_settings()
    if not settings.celery_broker_url:
        fail(
            "EDGELOOP_CELERY_BROKER_URL is not set: a worker takes steps from a Celery broker "
            "(redis://host:6379/0), the same one the code location's runs submit to"
        )
    try:
        from dagster_celery.cli import get_config_dir
    except ImportError:
        fail("dagster-celery is not installed: pip install 'edgeloop[networked]'")
    import yaml

    from edgeloop.cli.services import service_env
    from pipelines.executors import celery_config

    queues = queue or [DEFAULT_QUEUE]
    if len(queues) > 4:
        fail("a dagster-celery worker listens on at most four queues")
    env = service_env(settings)
    home = _home(settings)
    env["DAGSTER_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home)  # get_config_dir writes under the instance
    config = home / "celery-worker.yaml"
    config.write_text(
        yaml.safe_dump({"execution": {"config": celery_config(settings.celery_broker_url)}})
    )
    # dagster-celery's own step: the executor's settings as a module the Celery app imports.
    module_dir = get_config_dir(str(config))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [module_dir, env.get("PYTHONPATH")]))
    celery = Path(sys.executable).with_name("celery")
    node = f"{name or 'edgeloop-' + '-'.join(queues)}@%h"
    cmd = [str(celery), "-A", CELERY_APP, "worker", "--loglevel", "INFO"]
    cmd += ["--prefetch-multiplier", "1", "--concurrency", str(concurrency), "-n", node]
    cmd += ["-Q", ",".join(queues)]  # one -Q with a list: celery keeps only the last -Q
    console.print(f"worker {node} on queues {', '.join(queues)}; instance {home}", highlight=False)
    sys.stdout.flush()
    os.execve(str(celery), cmd, env)  # replaces this process: signals reach Celery itself
