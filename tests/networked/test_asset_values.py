"""Dagster runs on hosts that share no folder: an asset value one run writes (as
``training_dataset`` writes the ``DatasetVersion`` that ``detector_model`` reads in the next
step or run) is read by a run on another host, with a Dagster instance and a data folder
of its own, through the code location's IO manager (``assets.resources.AssetValuesIOManager``)
on S3-compatible object storage (moto)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from servers import require_server, s3_server

from assets.resources import AssetValuesIOManager, LoopSettingsResource

pytestmark = pytest.mark.integration

BUCKET = "edgeloop-runs"


@dg.asset
def labeled_counts() -> dict[str, int]:
    return {"Normal": 7, "Fall": 2}


@dg.asset
def total_labels(labeled_counts: dict[str, int]) -> int:
    return sum(labeled_counts.values())


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _io_manager(folder: Path) -> AssetValuesIOManager:
    return AssetValuesIOManager(loop=LoopSettingsResource(data_dir=str(folder)))


def test_a_value_written_on_one_host_is_read_on_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_server("s3")
    with s3_server(tmp_path / "s3") as endpoint:
        endpoint.client().create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
        for name, value in endpoint.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("EDGELOOP_OBJECT_STORE_URL", f"s3://{BUCKET}/site")

        with dg.instance_for_test(temp_dir=str(_folder(tmp_path / "a"))) as host_a:
            wrote = dg.materialize(
                [labeled_counts],
                resources={"io_manager": _io_manager(tmp_path / "a")},
                instance=host_a,
            )
        assert wrote.success

        with dg.instance_for_test(temp_dir=str(_folder(tmp_path / "b"))) as host_b:
            read = dg.materialize(
                [total_labels, labeled_counts.to_source_asset()],
                resources={"io_manager": _io_manager(tmp_path / "b")},
                instance=host_b,
            )
        assert read.success
        assert read.output_for_node("total_labels") == 9
        keys = {o["Key"] for o in endpoint.client().list_objects_v2(Bucket=BUCKET)["Contents"]}  # type: ignore[attr-defined]
        assert {"site/dagster/storage/labeled_counts", "site/dagster/storage/total_labels"} <= keys


def test_without_object_storage_values_stay_in_the_instance_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDGELOOP_OBJECT_STORE_URL", raising=False)
    with dg.instance_for_test(temp_dir=str(_folder(tmp_path / "dagster"))) as instance:
        wrote = dg.materialize(
            [labeled_counts], resources={"io_manager": _io_manager(tmp_path)}, instance=instance
        )
        assert wrote.success
        stored = Path(instance.storage_directory()) / "labeled_counts"
        assert stored.is_file()
