"""Tags exported with a dataset version: the store's per-frame tags (both backends) and
the manifest carrying them, unchanged in bytes for a version without tags."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from support import frame_row, labeled_frames

from edgeloop.datasets.manifest import build_manifest, parse_manifest
from edgeloop.store import AnyStore, tags
from edgeloop.store.batches import tables_from_rows
from edgeloop.store.ingest import insert_batch

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_of_dataset_gives_each_frames_and_its_detections_tags(store: AnyStore) -> None:
    columns = "detection_id frame_key camera_id captured_at class_id class_name confidence"
    values = ("cam-a:1:0", "cam-a:1", "cam-a", NOW, 0, "Normal", 0.9)
    box = {"x1": 1.0, "y1": 1.0, "x2": 9.0, "y2": 9.0, "uncertain": False, "model_version": "1"}
    detection = {**dict(zip(columns.split(), values, strict=True)), **box}
    batch = tables_from_rows(
        [frame_row("cam-a:1", "cam-a", NOW, detection_count=1), frame_row("cam-a:2", "cam-a", NOW)],
        [detection],
    )
    with store.connect() as con:
        insert_batch(
            con=con, frames=batch.frames, detections=batch.detections, queue_items=batch.queue
        )
        tags.add(
            con=con,
            frame_keys=["cam-a:1"],
            tag="near door",
            source="person",
            created_by="a",
            now=NOW,
        )
        tags.suggest_from_detections(
            con=con, frame_keys=["cam-a:1", "cam-a:2"], created_by="loop", now=NOW
        )
        found = tags.of_dataset(con=con, frame_keys=["cam-a:1", "cam-a:2", "cam-a:9"])
    assert found == {"cam-a:1": ["near door", "normal", "scene:cam-a"], "cam-a:2": ["scene:cam-a"]}


def test_the_manifest_carries_tags_and_reads_them_back(tmp_path: Path) -> None:
    frames = labeled_frames(tmp_path, 3)
    plain = build_manifest(
        frames, ["Normal"], objects_root=tmp_path / "objects", pack="p1"
    ).manifest
    tagged = build_manifest(
        frames,
        ["Normal"],
        objects_root=tmp_path / "objects",
        pack="p1",
        tags={"cam-a:1": ["near door", "scene:cam-a", "near door"]},
    ).manifest
    assert '"tags"' not in plain.to_text()  # a version without tags: bytes as before
    entry = {e.frame_key: e for e in parse_manifest(tagged.to_text()).entries}
    assert entry["cam-a:1"].tags == ("near door", "scene:cam-a")
    assert entry["cam-a:0"].tags == ()
    assert parse_manifest(tagged.to_text()).to_text() == tagged.to_text()
