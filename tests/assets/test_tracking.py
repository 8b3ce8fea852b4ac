"""The MLflow run lifecycle (``assets.tracking``) against a real MLflow sqlite store."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from assets.tracking import log_metrics, mlflow_run, mlflow_run_url, production_files
from edgeloop.files import sha256_file
from edgeloop.registry import MODEL_ARTIFACT_DIR, ensure_experiment, mlflow_client, write_model_dir


@pytest.fixture
def client_and_experiment(loop):
    settings, _ = loop
    client = mlflow_client(settings)
    return settings, client, ensure_experiment(client, settings)


@pytest.mark.integration
def test_a_run_that_succeeds_is_finished_with_its_name_tags_params_and_metrics(
    client_and_experiment,
):
    _, client, experiment_id = client_and_experiment
    with mlflow_run(
        client, experiment_id, run_name="retrain-v2-from-v1", tags={"dataset_version": "v2"}
    ) as run:
        run.log_params({"epochs": 3, "lr0": 1e-4})
        for epoch, value in enumerate((0.4, 0.5)):
            run.log_metrics({"mAP50-95": value}, epoch)
        assert client.get_run(run.run_id).info.status == "RUNNING"

    logged = client.get_run(run.run_id)
    assert logged.info.status == "FINISHED"
    assert logged.info.run_name == "retrain-v2-from-v1"
    assert logged.info.experiment_id == experiment_id
    assert logged.data.tags["dataset_version"] == "v2"
    assert logged.data.params == {"epochs": "3", "lr0": "0.0001"}
    history = client.get_metric_history(run.run_id, "mAP50-95")
    assert [(p.step, p.value) for p in sorted(history, key=lambda p: p.step)] == [
        (0, 0.4),
        (1, 0.5),
    ]


@pytest.mark.integration
@pytest.mark.parametrize("error", [RuntimeError("loss is NaN"), KeyboardInterrupt()])
def test_a_run_whose_block_raises_is_failed_and_the_error_propagates(client_and_experiment, error):
    _, client, experiment_id = client_and_experiment
    with (
        pytest.raises(type(error)),
        mlflow_run(client, experiment_id, run_name="doomed", tags={}) as run,
    ):
        raise error
    assert client.get_run(run.run_id).info.status == "FAILED"


@pytest.mark.integration
def test_register_model_logs_the_files_and_tags_version_and_run(
    client_and_experiment, tmp_path: Path
):
    settings, client, experiment_id = client_and_experiment
    (tmp_path / "in").mkdir()
    pt, onnx = tmp_path / "in" / "best.pt", tmp_path / "in" / "best.onnx"
    pt.write_bytes(b"weights")
    onnx.write_bytes(b"onnx graph")
    model_dir = write_model_dir(
        tmp_path / "model", pt_path=pt, onnx_path=onnx, class_names=["Normal"], imgsz=640
    )
    with mlflow_run(client, experiment_id, run_name="r", tags={}) as run:
        version = run.register_model(
            model_dir,
            model_name=settings.model_name,
            description="fine-tuned",
            tags={"kind": "retrain", "base_version": "1"},
        )

    registered = client.get_model_version(settings.model_name, version)
    assert registered.run_id == run.run_id and registered.description == "fine-tuned"
    assert registered.tags == {
        "kind": "retrain",
        "base_version": "1",
        "pt_sha256": sha256_file(pt),
        "onnx_sha256": sha256_file(onnx),
    }
    assert client.get_run(run.run_id).data.tags["model_version"] == version
    artifacts = {Path(a.path).name for a in client.list_artifacts(run.run_id, MODEL_ARTIFACT_DIR)}
    assert artifacts == {"best.pt", "best.onnx", "model.json"}


@pytest.mark.integration
def test_log_metrics_adds_to_a_finished_run(client_and_experiment):
    _, client, experiment_id = client_and_experiment
    with mlflow_run(client, experiment_id, run_name="r", tags={}) as run:
        pass
    log_metrics(client, run.run_id, {"heldout_mAP50": 0.81, "heldout_recall": 0.7})
    assert client.get_run(run.run_id).data.metrics == {"heldout_mAP50": 0.81, "heldout_recall": 0.7}


def test_mlflow_run_url_points_at_the_run_page():
    assert (
        mlflow_run_url("http://127.0.0.1:5000/", "3", "abc")
        == "http://127.0.0.1:5000/#/experiments/3/runs/abc"
    )


@pytest.mark.integration
def test_production_files_fails_loudly_without_a_production_version(client_and_experiment):
    settings, client, _ = client_and_experiment
    with pytest.raises(dg.Failure, match="edgeloop init"):
        production_files(client, settings)
