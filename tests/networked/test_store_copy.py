"""``edgeloop store copy``: an embedded installation moves to PostgreSQL and object storage
and reads the same afterwards (real DuckDB file, real PostgreSQL 15, moto S3)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from loopdata import T0, make_loop
from servers import S3Endpoint, require_server, s3_server
from typer.testing import CliRunner

from edgeloop.cli.app import app
from edgeloop.objects import open_object_store
from edgeloop.store import alerts, classes, deployments, labels, queue, retraining, tags
from edgeloop.store.postgres import PostgresStore

pytestmark = pytest.mark.integration

BUCKET = "edgeloop-copy"


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> S3Endpoint:
    require_server("s3")
    with s3_server(tmp_path / "s3") as endpoint:
        endpoint.client().create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
        for name, value in endpoint.environment().items():
            monkeypatch.setenv(name, value)
        yield endpoint


def test_an_embedded_site_copies_to_postgres_and_object_storage(
    tmp_path: Path, postgres_database: str, s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = make_loop(tmp_path)
    images = [np.full((576, 768, 3), 40 * i, np.uint8) for i in range(4)]
    keys = loop.add_frames("cam-1", images)
    loop.queue(keys, priority=0.5)
    loop.label(
        keys[0], [{"bbox_xyxy": [10, 20, 90, 200], "class_id": 0, "class_name": "Normal"}], at=T0
    )
    loop.label(keys[0], [], at=T0 + timedelta(minutes=1))  # an edit: two rows, one label
    with loop.store.connect() as con:
        retraining.record(
            con=con, trigger="manual", decision="launched", reason="test", labels_since_training=1
        )
        deployments.record(
            con=con,
            model_name="edgeloop-detector",
            version="1",
            alias="production",
            previous_version=None,
            action="register",
            actor="test",
            reason="seed",
            metrics={"map50_95": 0.5},
        )
        # The site's classes, tags and alerts travel too.
        classes.seed(con=con, names=["Normal", "Fall"])
        classes.add(con=con, name="forklift", actor="test", reason="new dock")
        tags.add(con=con, frame_keys=keys[:2], tag="night", source="person", created_by="t", now=T0)
    with loop.store.connect() as con:  # raise_alert runs its own transaction
        alert_id = alerts.raise_alert(
            con=con, camera_id="cam-1", kind="drift", summary="drift", description="share 0.6"
        )
        embedded = labels.latest_with_frames(con=con)
        embedded_queue = queue.list_items(
            con=con, status="pending", camera_id=None, limit=10, offset=0
        )
    monkeypatch.setenv("EDGELOOP_DATA_DIR", str(loop.data_dir))
    object_url = f"s3://{BUCKET}/site"
    result = CliRunner().invoke(
        app,
        ["store", "copy", "--database-url", postgres_database, "--object-store-url", object_url],
    )
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "labeling_queue: 4 rows" in said and "frame JPEGs: 4 written" in said

    store = PostgresStore(postgres_database)
    with store.connect() as con:
        assert labels.latest_with_frames(con=con) == embedded
        assert (
            queue.list_items(con=con, status="pending", camera_id=None, limit=10, offset=0)
            == embedded_queue
        )
        assert labels.count(con=con) == 2
        [event] = retraining.recent(con=con)
        assert event["reason"] == "test"
        assert classes.active_names(con=con) == ["Normal", "Fall", "forklift"]
        newest = classes.changes(con=con)[0]
        assert (newest["action"], newest["name"], newest["reason"]) == (
            "add",
            "forklift",
            "new dock",
        )
        assert set(tags.of_dataset(con=con, frame_keys=keys)) == set(keys[:2])
        [alert] = alerts.list_alerts(con=con)
        assert (alert["alert_id"], alert["camera_id"]) == (alert_id, "cam-1")
        # Ids continue after the copied ones, for the classes too.
        assert classes.add(con=con, name="helmet", actor="t", reason="r").class_id == 4
        # Ids continue after the copied ones.
        new_label = labels.create(
            con=con,
            item_id=int(embedded_queue[0][0]["item_id"]),
            frame_key=embedded_queue[0][0]["frame_key"],
            camera_id="cam-1",
            boxes=[],
            labeler="tester",
            labeled_at=T0 + timedelta(hours=1),
        )
        assert new_label > max(row["label_id"] for row in embedded)
    store.close()
    objects = open_object_store(object_url, data_dir=tmp_path / "elsewhere")
    for row in embedded:
        assert objects.exists(Path(row["jpeg_path"]).relative_to(loop.data_dir).as_posix())

    again = CliRunner().invoke(app, ["store", "copy", "--database-url", postgres_database])
    assert again.exit_code == 1
    assert "already holds rows" in " ".join(again.output.split())
