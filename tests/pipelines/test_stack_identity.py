"""The code location names the stack it serves, and refuses runs another stack launched.

The API side of the check is in ``tests/api/test_api_retraining.py`` (stand-in Dagster)
and ``test_two_stacks.py`` (two real Dagster webservers).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pytest
from loopdata import make_loop
from support import run_python

from assets.detections import detections
from edgeloop.orchestration import DATA_DIR_KEY, STACK_TAG, stack_id, stack_id_path

JOB_METADATA = """
import json
from pipelines.definitions import defs
print(json.dumps({
    job: {key: value.value for key, value in defs.resolve_job_def(job).metadata.items()}
    for job in ("retrain_job", "drift_job", "labeling_job")
}))
"""


def _code_location_metadata(data_dir: Path) -> dict[str, dict[str, str]]:
    """Each job's metadata as the code location defines it, loaded on ``data_dir``."""
    stdout = run_python(JOB_METADATA, env=os.environ | {"EDGELOOP_DATA_DIR": str(data_dir)})
    return dict(json.loads(stdout.splitlines()[-1]))


def test_every_job_names_the_stack_and_data_folder_it_serves(tmp_path: Path) -> None:
    data_dir = tmp_path / "site-a"
    ours = stack_id(data_dir)
    metadata = _code_location_metadata(data_dir)
    expected = {STACK_TAG: ours, DATA_DIR_KEY: str(data_dir.resolve())}
    assert metadata == dict.fromkeys(("retrain_job", "drift_job", "labeling_job"), expected)


def test_a_folder_without_a_stack_id_is_named_but_not_written(tmp_path: Path) -> None:
    """Loading the code location writes nothing: the API then refuses it, saying why."""
    data_dir = tmp_path / "fresh"
    metadata = _code_location_metadata(data_dir)
    assert metadata["retrain_job"] == {DATA_DIR_KEY: str(data_dir.resolve())}
    assert not stack_id_path(data_dir).exists()


def test_a_run_launched_by_another_stack_fails_before_any_asset_runs(tmp_path: Path) -> None:
    loop = make_loop(tmp_path)
    loop.add_frames("cam-a", count=2)
    ours = stack_id(loop.data_dir)

    refused = dg.materialize(
        [detections],
        resources={"store": loop.store_resource},
        tags={STACK_TAG: "f" * 32},
        raise_on_error=False,
    )
    assert not refused.success
    assert refused.asset_materializations_for_node("detections") == []
    message = " ".join(
        str(event.event_specific_data)
        for event in refused.all_events
        if event.event_type == dg.DagsterEventType.RESOURCE_INIT_FAILURE
    )
    assert f"launched by stack {'f' * 32}" in message
    assert ours in message and str(loop.data_dir.resolve()) in message

    own = dg.materialize(
        [detections], resources={"store": loop.store_resource}, tags={STACK_TAG: ours}
    )
    assert own.success


@pytest.mark.parametrize("content", ["", "\n"])
def test_an_emptied_stack_id_file_is_an_error_not_a_new_stack(tmp_path: Path, content: str) -> None:
    from edgeloop.orchestration import read_stack_id

    stack_id_path(tmp_path).write_text(content)
    with pytest.raises(ValueError, match="empty"):
        read_stack_id(tmp_path)
