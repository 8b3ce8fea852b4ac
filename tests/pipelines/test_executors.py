"""Where steps execute (pipelines.executors), the instance file for a networked site
(edgeloop.cli.services.instance_yaml) and the `edgeloop worker` / `edgeloop dagster-home`
commands, without servers; tests/networked/test_orchestration.py runs them on PostgreSQL
and Redis."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from edgeloop.cli.app import app
from edgeloop.cli.services import DAGSTER_FILES, dagster_home, instance_yaml
from edgeloop.devices import executed_on
from edgeloop.orchestration import CELERY_EXECUTOR, CELERY_QUEUE_TAG, TRAINING_QUEUE
from edgeloop.settings import LoopSettings
from pipelines.definitions import defs
from pipelines.executors import CELERY_CONFIG_SOURCE, celery_config, loop_executor


def test_without_a_broker_steps_run_on_the_daemons_host(tmp_path):
    assert loop_executor(LoopSettings(data_dir=tmp_path)) is None
    assert defs.resolve_job_def("retrain_job").executor_def.name != CELERY_EXECUTOR


def test_with_a_broker_the_celery_executor_takes_the_workers_config(tmp_path):
    broker = "redis://broker.example:6379/0"
    executor = loop_executor(LoopSettings(data_dir=tmp_path, celery_broker_url=broker))
    assert executor is not None and executor.name == CELERY_EXECUTOR
    # The worker is started on the same config (dagster-celery requires it).
    config = celery_config(broker)
    assert (config["broker"], config["backend"]) == (broker, broker)
    assert config["config_source"] == CELERY_CONFIG_SOURCE
    assert CELERY_CONFIG_SOURCE["worker_prefetch_multiplier"] == 1


def test_the_fine_tune_and_the_evaluation_go_to_the_training_queue():
    job = defs.resolve_job_def("retrain_job")
    queues = {node.name: node.definition.tags.get(CELERY_QUEUE_TAG) for node in job.graph.nodes}
    assert queues["detector_model"] == TRAINING_QUEUE
    assert queues["model_evaluation"] == TRAINING_QUEUE
    assert queues["training_dataset"] is None  # the default queue
    # The tag dagster-celery reads, spelled the same (repeated so assets need not import it).
    from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG

    assert CELERY_QUEUE_TAG == DAGSTER_CELERY_QUEUE_TAG


def test_the_instance_file_gains_postgres_storage_by_reference_only(tmp_path):
    url = "postgresql://dagster:s3cret@db.example:5432/dagster"
    settings = LoopSettings(data_dir=tmp_path, dagster_database_url=url)
    text = instance_yaml(settings).decode()
    assert "s3cret" not in text and "db.example" not in text  # read from the env at load
    config = yaml.safe_load(text)
    assert config["storage"] == {
        "postgres": {"postgres_url": {"env": "EDGELOOP_DAGSTER_DATABASE_URL"}}
    }
    base = yaml.safe_load((DAGSTER_FILES / "dagster.yaml").read_text())
    assert {k: v for k, v in config.items() if k != "storage"} == base
    assert (
        instance_yaml(LoopSettings(data_dir=tmp_path))
        == (DAGSTER_FILES / "dagster.yaml").read_bytes()
    )
    assert (dagster_home(settings) / "dagster.yaml").read_text() == text


def test_dagster_home_command_writes_into_dagster_home(tmp_path, monkeypatch):
    home = tmp_path / "instance"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("EDGELOOP_DAGSTER_DATABASE_URL", "postgresql://u@h/d")
    result = CliRunner().invoke(app, ["dagster-home"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(home.resolve())
    assert "EDGELOOP_DAGSTER_DATABASE_URL" in (home / "dagster.yaml").read_text()


def test_a_worker_without_a_broker_says_which_setting(monkeypatch):
    monkeypatch.delenv("EDGELOOP_CELERY_BROKER_URL", raising=False)
    result = CliRunner().invoke(app, ["worker", "--queue", TRAINING_QUEUE])
    assert result.exit_code == 1
    assert "EDGELOOP_CELERY_BROKER_URL is not set" in result.output


def test_executed_on_names_the_host_outside_a_worker():
    import os
    import socket

    assert executed_on() == f"{socket.gethostname()} (pid {os.getpid()})"


@pytest.mark.parametrize("queues", [["a", "b", "c", "d", "e"]])
def test_a_worker_listens_on_at_most_four_queues(monkeypatch, queues):
    monkeypatch.setenv("EDGELOOP_CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    args = ["worker"] + [arg for q in queues for arg in ("--queue", q)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "at most four queues" in result.output
