"""The code location loads, every job resolves, and its config carries PipelineSettings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from support import REPO_ROOT

from edgeloop.cli.services import DAGSTER_FILES, dagster_home
from edgeloop.orchestration import JOB_TAG, RETRAIN_JOB
from edgeloop.settings import LoopSettings
from pipelines.definitions import defs
from pipelines.jobs import retrain_run_config
from pipelines.settings import PipelineSettings

ASSETS = {
    "detections",
    "drift_report",
    "labeling_queue",
    "crop_embeddings",
    "suggested_tags",
    "training_dataset",
    "detector_model",
    "model_evaluation",
    "model_promotion",
}


def test_every_job_resolves():
    names = {job.name for job in defs.resolve_all_job_defs()}
    assert {"retrain_job", "drift_job", "labeling_job"} <= names
    for name in names:
        assert defs.resolve_job_def(name).name == name


def test_every_asset_is_defined_with_its_group():
    specs = {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}
    assert set(specs) == ASSETS
    assert specs["detector_model"].group_name == "training"
    assert specs["model_evaluation"].group_name == "training"
    assert specs["model_promotion"].group_name == "registry"
    assert specs["detector_model"].description  # the docstring shows in the UI


def _selected(job_name: str) -> set[str]:
    job = defs.resolve_job_def(job_name)
    return {key.to_user_string() for key in job.asset_layer.selected_asset_keys}


def test_retrain_job_rebuilds_the_dataset_then_trains_evaluates_promotes():
    assert _selected("retrain_job") == {
        "detections",
        "training_dataset",
        "detector_model",
        "model_evaluation",
        "model_promotion",
    }
    checks = {
        key.name
        for key in defs.resolve_job_def("retrain_job").asset_layer.asset_graph.asset_check_keys
    }
    assert checks == {"boxes_inside_images", "known_classes", "no_train_val_leak", "minimum_size"}
    assert _selected("drift_job") == {"detections", "drift_report"}
    assert _selected("labeling_job") == {"labeling_queue", "crop_embeddings", "suggested_tags"}


def test_dataset_checks_are_blocking():
    checks = [spec for checks_def in defs.asset_checks or [] for spec in checks_def.check_specs]
    assert {spec.name for spec in checks} == {
        "boxes_inside_images",
        "known_classes",
        "no_train_val_leak",
        "minimum_size",
    }
    assert all(spec.blocking for spec in checks)
    assert all(spec.asset_key == dg.AssetKey("training_dataset") for spec in checks)


def test_retrain_job_config_comes_from_the_assets_configs_and_the_environment(monkeypatch):
    job = defs.resolve_job_def("retrain_job")
    assert dg.validate_run_config(job, {})["ops"]["detector_model"]["config"]["freeze"] == 10

    monkeypatch.setenv("EDGELOOP_PIPELINES_DETECTOR_MODEL__EPOCHS", "7")
    monkeypatch.setenv("EDGELOOP_PIPELINES_MODEL_PROMOTION__MIN_GAIN", "0.01")
    monkeypatch.setenv("EDGELOOP_PIPELINES_MODEL_PROMOTION__AUTO_PROMOTE", "false")
    settings = PipelineSettings()
    validated = dg.validate_run_config(job, retrain_run_config(settings))["ops"]
    assert validated["detector_model"]["config"]["epochs"] == 7
    assert validated["detector_model"]["config"]["lr0"] == pytest.approx(1e-4)  # others kept
    assert validated["model_promotion"]["config"]["min_gain"] == 0.01
    assert validated["model_promotion"]["config"]["auto_promote"] is False

    demo = settings.with_overrides(detector_model={"imgsz": 320})
    assert (demo.detector_model.imgsz, demo.detector_model.epochs) == (320, 7)
    with pytest.raises(ValueError, match="imgsz"):
        settings.with_overrides(detector_model={"imgsz": 1})
    with pytest.raises(ValueError, match="not an asset config"):
        settings.with_overrides(sensor_interval_s={"x": 1})


def test_sensors_and_schedules_start_running():
    for name in ("label_count_sensor", "drift_sensor"):
        sensor = defs.resolve_sensor_def(name)
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
        assert sensor.job_name == "retrain_job"
        assert sensor.minimum_interval_seconds == 30
    drift = defs.resolve_schedule_def("drift_schedule")
    assert (drift.job_name, drift.cron_schedule) == ("drift_job", "*/15 * * * *")
    labeling = defs.resolve_schedule_def("labeling_schedule")
    assert (labeling.job_name, labeling.cron_schedule) == ("labeling_job", "0 * * * *")


def test_one_retrain_at_a_time_counts_the_tag_the_retrain_job_sets():
    """The instance's concurrency limit and the job share one run-tag name (house rule 11:
    ``edgeloop.orchestration`` owns it; dagster.yaml, which cannot import it, is checked)."""
    import yaml

    limits = yaml.safe_load((DAGSTER_FILES / "dagster.yaml").read_text())["concurrency"]["runs"]
    (limit,) = limits["tag_concurrency_limits"]
    job = defs.resolve_job_def(RETRAIN_JOB)
    assert (limit["key"], limit["value"], limit["limit"]) == (JOB_TAG, job.tags[JOB_TAG], 1)


def test_dagster_yaml_keeps_the_instance_in_dagster_home(tmp_path, monkeypatch):
    # dagster_home copies the packaged dagster.yaml into <data_dir>/dagster.
    home = dagster_home(LoopSettings(data_dir=tmp_path))
    assert (home / "dagster.yaml").read_bytes() == (DAGSTER_FILES / "dagster.yaml").read_bytes()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert instance.root_directory == str(home)
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert not instance.telemetry_enabled
    assert (home / "history").is_dir() and (home / "schedules").is_dir()


@pytest.mark.integration
def test_packaged_workspace_yaml_loads_the_code_location(tmp_path):
    """The workspace file shipped in the package loads from any working directory."""
    venv_bin = Path(sys.executable).parent
    workspace = DAGSTER_FILES / "workspace.yaml"
    result = subprocess.run(
        [str(venv_bin / "dagster"), "definitions", "validate", "-w", str(workspace)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "PATH": f"{venv_bin}:/usr/bin:/bin",
            "DAGSTER_HOME": str(tmp_path),
            "EDGELOOP_DATA_DIR": str(tmp_path / "data"),
        },
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Validation successful for code location pipelines" in output


@pytest.mark.integration
def test_dagster_in_the_repository_root_finds_the_code_location_and_instance(tmp_path):
    """A Dagster user's first command, with no arguments and no DAGSTER_HOME: pyproject.toml's
    [tool.dagster] names the code location, and the root dagster.yaml configures the
    temporary instance Dagster makes in the working directory (it needs no DAGSTER_HOME)."""
    venv_bin = Path(sys.executable).parent
    env = {
        "PATH": f"{venv_bin}:/usr/bin:/bin",
        "EDGELOOP_DATA_DIR": str(tmp_path / "data"),
        "HOME": str(tmp_path),
    }
    validate = subprocess.run(
        [str(venv_bin / "dagster"), "definitions", "validate"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    output = validate.stdout + validate.stderr
    assert validate.returncode == 0, output[-3000:]
    assert "Validation successful for code location pipelines" in output
