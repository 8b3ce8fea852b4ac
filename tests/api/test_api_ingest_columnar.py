"""POST /api/ingest with wire version 2 (``IngestBatchColumnar``): the same rows, acks and
refusals as version 1, on the same route.

Every test sends real bodies through the app to a real DuckDB file; the equivalence tests
run one app per wire version, each on its own data folder, and compare the stored tables.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from api_support import (
    AGENT,
    batch,
    client_on,
    detection,
    frame,
    jpeg_bytes,
    queued_frame,
)
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeloop.settings import LoopSettings
from edgeloop.store import Store
from edgeloop.wire import (
    MAX_DETECTIONS_PER_FRAME,
    MAX_JPEG_BYTES,
    FrameRecord,
    IngestBatch,
    IngestBatchColumnar,
    encode_columnar,
    parse_ingest_batch,
)
from edgeloop.wire.arrays import FRAME_FIELDS

pytestmark = pytest.mark.backends


def _frame_value(row: dict[str, Any], field: str) -> Any:
    """The value of version 2's per-frame column ``field`` in the version-1 frame ``row``."""
    if field in ("brightness", "contrast", "sharpness", "saturation"):
        return row["quality"][field]
    if field == "detection_count":
        return len(row["detections"])
    return row[field]


def to_columnar(body: dict[str, Any]) -> dict[str, Any]:
    """A version-1 body (JSON-ready dict, possibly invalid) as the version-2 body of the same
    frames: written independently of ``encode_columnar`` so that the two check each other."""
    frames = body["frames"]
    dets = [d for f in frames for d in f["detections"]]
    names: dict[str, int] = {}
    jpegs = [f.get("jpeg") for f in frames]
    return {
        "wire_version": "2",
        "agent_id": body["agent_id"],
        "sent_at": body["sent_at"],
        **{field: [_frame_value(f, field) for f in frames] for field in FRAME_FIELDS},
        "jpeg": jpegs if any(j is not None for j in jpegs) else None,
        **{
            name: [d["bbox_xyxy"][i] for d in dets]
            for i, name in enumerate(("x1", "y1", "x2", "y2"))
        },
        "class_id": [d["class_id"] for d in dets],
        "class_name_index": [names.setdefault(d["class_name"], len(names)) for d in dets],
        "class_names": list(names),
        "confidence": [d["confidence"] for d in dets],
        "uncertain": [d["uncertain"] for d in dets],
    }


def post(client: TestClient, body: dict[str, Any]) -> Any:
    # json.dumps writes NaN and Infinity as JSON's common extension; pydantic then refuses them.
    return client.post(
        "/api/ingest",
        content=json.dumps(body).encode(),
        headers={**AGENT, "Content-Type": "application/json"},
    )


@contextmanager
def app_on(data_dir: Path) -> Iterator[tuple[TestClient, Store, LoopSettings]]:
    loop = LoopSettings(data_dir=data_dir)
    with client_on(loop) as client:
        yield client, Store(loop.duckdb_path), loop


def stored_rows(store: Store, frames_dir: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of frames, prediction_logs and labeling_queue, without the receive times
    (the clock's) and with JPEG paths relative to the data folder's frames/."""
    root = str(frames_dir.resolve())
    with store.connect() as con:
        return {
            "frames": [
                (*row[:-1], row[-1] and row[-1].removeprefix(root))
                for row in con.execute(
                    "SELECT * EXCLUDE (received_at, jpeg_path), jpeg_path FROM frames "
                    "ORDER BY frame_key"
                ).fetchall()
            ],
            "prediction_logs": con.execute(
                "SELECT * FROM prediction_logs ORDER BY detection_id"
            ).fetchall(),
            "labeling_queue": con.execute(
                # item_id comes from a sequence that DuckDB's parallel insert draws in no
                # fixed order: compare the rows by frame.
                "SELECT * EXCLUDE (item_id, created_at, updated_at) FROM labeling_queue "
                "ORDER BY frame_key"
            ).fetchall(),
        }


def forged(key: str, index: int) -> dict[str, Any]:
    record = queued_frame(key, index, confidence=0.41)
    record["jpeg"] = base64.b64encode(jpeg_bytes(seed=99)).decode()
    return record


BATCHES: list[list[dict[str, Any]]] = [
    [
        frame(
            "cam-1:1",
            index=1,
            detections=[
                detection(10, 20, 110, 220, 0.55),
                detection(200, 40, 260, 200, 0.45, "Fall"),
                detection(300, 50, 641, 481, 0.91),  # on the 1 px tolerance
            ],
            jpeg=jpeg_bytes(seed=1),
        ),
        frame("cam-1:2", index=2, detections=[detection(5, 5, 50, 90, 0.95, "Fall")]),
        frame("cam-2:1", camera_id="cam-2", index=1),  # no detection
        frame("cam-1:3", index=3, detections=[detection(1, 1, 9, 9, 0.5)]),  # uncertain, no JPEG
        queued_frame("cam-1:4", 4),
        queued_frame("cam-1:4", 4),  # repeated within the batch
        frame("cam-1:5", index=5, detections=[detection(0, 0, 0, 0, 0.0)], jpeg=jpeg_bytes(seed=5)),
    ],
    # A retry of two frames, a new one, one with the same key and another JPEG (conflict).
    [queued_frame("cam-1:4", 4), frame("cam-1:2", index=2), queued_frame("cam-1:6", 6)],
    [forged("cam-1:6", 6), queued_frame("cam-2:7", 7, camera_id="cam-2")],
    # The key of a cam-1 frame sent by cam-2: a conflict, nothing changes.
    [queued_frame("cam-1:1", 1, camera_id="cam-2"), queued_frame("cam-1:8", 8)],
]


def test_v1_and_v2_store_identical_rows_and_answer_identical_acks(tmp_path: Path) -> None:
    acks: dict[str, list[Any]] = {}
    rows: dict[str, dict[str, list[tuple[Any, ...]]]] = {}
    for version, encode in (("1", lambda b: b), ("2", to_columnar)):
        with app_on(tmp_path / f"v{version}") as (client, store, loop):
            acks[version] = []
            for frames in BATCHES:
                response = post(client, encode(batch(*frames)))
                assert response.status_code == 200, response.text
                acks[version].append(response.json())
            rows[version] = stored_rows(store, loop.frames_dir)

    assert acks["2"] == acks["1"]
    assert acks["1"][0] == {
        "accepted": 6,
        "duplicates": 1,
        "detections": 8,
        "queued": 2,
        "conflicts": 0,
    }
    assert [a["conflicts"] for a in acks["1"]] == [0, 0, 1, 1]
    for table in ("frames", "prediction_logs", "labeling_queue"):
        assert rows["2"][table] == rows["1"][table], table
    assert len(rows["1"]["prediction_logs"]) == 8 + 2 + 2 + 2
    assert rows["1"]["prediction_logs"][2][:2] == ("cam-1:1:2", "cam-1:1")


def test_the_agent_encoder_gives_the_same_body_as_the_frames_encoded_by_hand() -> None:
    frames = [*BATCHES[0], *BATCHES[1]]
    sent_at = datetime(2026, 1, 1, tzinfo=UTC)
    records = [FrameRecord.model_validate(f) for f in frames]

    encoded = encode_columnar(records, agent_id="agent-1", sent_at=sent_at)

    by_hand = IngestBatchColumnar.model_validate_json(json.dumps(to_columnar(batch(*frames))))
    assert json.loads(encoded.model_dump_json()) == json.loads(by_hand.model_dump_json())
    parsed = parse_ingest_batch(encoded.model_dump_json().encode())
    assert isinstance(parsed, IngestBatchColumnar)
    assert parsed.model_dump() == encoded.model_dump()
    assert parsed.frame_count == len(frames)


def test_the_agent_encoder_refuses_an_empty_batch() -> None:
    with pytest.raises(ValueError, match="1 to 2000 frames"):
        encode_columnar([], agent_id="a", sent_at=datetime(2026, 1, 1, tzinfo=UTC))


def _set_detection(body: dict[str, Any], field: str, value: Any) -> None:
    body["frames"][0]["detections"][1][field] = value


def _set_box(i: int, value: float) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        body["frames"][0]["detections"][1]["bbox_xyxy"][i] = value

    return mutate


def _too_many(body: dict[str, Any]) -> None:
    body["frames"][1]["detections"] = [
        detection(1, 1, 20, 20, 0.9) for _ in range(MAX_DETECTIONS_PER_FRAME + 1)
    ]


def _frame_field(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        body["frames"][1][field] = value

    return mutate


def _oversize_jpeg(body: dict[str, Any]) -> None:
    jpeg = jpeg_bytes()
    padded = jpeg[:-2] + b"\x00" * (MAX_JPEG_BYTES - len(jpeg) + 1) + jpeg[-2:]
    body["frames"][1]["jpeg"] = base64.b64encode(padded).decode()


# Detection 1 of frame 0 is detection 1 of the batch; frame 1 is the second frame.
REFUSALS: list[tuple[str, Callable[[dict[str, Any]], None], tuple[Any, ...], str]] = [
    ("bbox outside the frame", _set_box(2, 645.0), ("x2", 1), "lies outside the 640x480 frame"),
    ("bbox below the frame", _set_box(3, 482.0), ("y2", 1), "lies outside the 640x480 frame"),
    ("unordered bbox", _set_box(0, 400.0), ("x2", 1), "x1 <= x2"),
    ("negative coordinate", _set_box(1, -1.0), ("y1", 1), "greater than or equal to 0"),
    ("NaN confidence", lambda b: _set_detection(b, "confidence", math.nan), ("confidence", 1), ""),
    ("Infinity coordinate", _set_box(2, math.inf), ("x2", 1), "finite"),
    ("confidence above 1", lambda b: _set_detection(b, "confidence", 1.5), ("confidence", 1), ""),
    ("class_id past 32 bits", lambda b: _set_detection(b, "class_id", 2**31), ("class_id", 1), ""),
    ("too many detections", _too_many, ("detection_count", 1), "less than or equal to 300"),
    ("bad frame_key", _frame_field("frame_key", "cam 1/../x"), ("frame_key", 1), "pattern"),
    ("bad camera_id", _frame_field("camera_id", "../etc"), ("camera_id", 1), "pattern"),
    ("naive datetime", _frame_field("captured_at", "2026-01-01T00:00:00"), ("captured_at", 1), ""),
    ("frame_index past 64 bits", _frame_field("frame_index", 2**64), ("frame_index", 1), ""),
    ("zero width", _frame_field("width", 0), ("width", 1), "greater than 0"),
    ("oversize JPEG", _oversize_jpeg, ("jpeg", 1), "at most 8388608 bytes"),
]


@pytest.mark.parametrize(
    ("mutate", "loc", "message"),
    [pytest.param(m, loc, msg, id=name) for name, m, loc, msg in REFUSALS],
)
def test_every_v1_refusal_has_its_v2_counterpart_naming_field_and_index(
    client: TestClient,
    store: Store,
    mutate: Callable[[dict[str, Any]], None],
    loc: tuple[Any, ...],
    message: str,
) -> None:
    body = batch(queued_frame("cam-1:1", 1), queued_frame("cam-1:2", 2))
    mutate(body)

    v1 = post(client, body)
    v2 = post(client, to_columnar(body))

    assert v1.status_code == 422, v1.text
    assert v2.status_code == 422, v2.text
    errors = v2.json()["detail"]
    assert ("body", *loc) in [tuple(e["loc"]) for e in errors], errors
    assert message in " ".join(e["msg"] for e in errors)
    assert len(v2.content) < 10_000  # inputs are not echoed
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM frames").fetchone() == (0,)


def _v2(mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    body = to_columnar(batch(queued_frame("cam-1:1", 1), queued_frame("cam-1:2", 2)))
    mutate(body)
    return body


@pytest.mark.parametrize(
    ("body", "loc", "message"),
    [
        pytest.param(
            _v2(lambda b: b["width"].pop()),
            ("width",),
            "width has 1 items, frame_key has 2",
            id="per-frame lengths",
        ),
        pytest.param(
            _v2(lambda b: b["x1"].pop()),
            ("x1",),
            "x1 has 3 items, detection_count sums to 4",
            id="per-detection lengths",
        ),
        pytest.param(
            _v2(lambda b: b.update(detection_count=[2, 3])),
            ("x1",),
            "detection_count sums to 5",
            id="counts past the detections",
        ),
        pytest.param(
            _v2(lambda b: b["class_name_index"].__setitem__(3, 2)),
            ("class_name_index", 3),
            "is not an index of class_names (2 names)",
            id="class name index",
        ),
        pytest.param(_v2(lambda b: b.update(wire_version="3")), ("wire_version",), "'1' or '2'"),
        pytest.param(_v2(lambda b: b.update(extra=1)), ("extra",), "Extra inputs"),
    ],
)
def test_v2_only_rules_are_422_naming_the_array(
    client: TestClient, store: Store, body: dict[str, Any], loc: tuple[Any, ...], message: str
) -> None:
    response = post(client, body)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert ("body", *loc) in [tuple(e["loc"]) for e in errors], errors
    assert message in " ".join(e["msg"] for e in errors)
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM frames").fetchone() == (0,)


def test_wire_version_is_found_anywhere_in_the_body(client: TestClient) -> None:
    v2 = to_columnar(batch(queued_frame("cam-1:1", 1)))
    moved = {**{k: v for k, v in v2.items() if k != "wire_version"}, "wire_version": "2"}
    assert post(client, moved).json()["accepted"] == 1
    v1 = batch(queued_frame("cam-1:2", 2))
    del v1["wire_version"]  # version 1's default
    assert post(client, v1).json()["accepted"] == 1


def test_v2_corrupt_jpeg_is_422_naming_the_frame(client: TestClient, store: Store) -> None:
    truncated = frame(
        "cam-1:2", detections=[detection(1, 1, 50, 50, 0.5)], jpeg=jpeg_bytes()[:-200]
    )
    response = post(client, to_columnar(batch(queued_frame("cam-1:1", 1), truncated)))
    assert response.status_code == 422
    assert "cam-1:2" in response.json()["detail"] and "truncated" in response.json()["detail"]
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM frames").fetchone() == (0,)


def test_v2_camera_scope_is_checked(
    gate_agent: tuple[TestClient, dict[str, str]], store: Store
) -> None:
    scoped, headers = gate_agent
    mixed = to_columnar(
        batch(queued_frame("cam-1:2", 2), queued_frame("cam-9:1", 1, camera_id="cam-9"))
    )
    refused = scoped.post("/api/ingest", json=mixed, headers=headers)
    assert refused.status_code == 403 and "cam-9" in refused.json()["detail"]
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM frames").fetchone() == (0,)


def test_openapi_documents_both_versions_with_resolving_refs(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    body = document["paths"]["/api/ingest"]["post"]["requestBody"]["content"]["application/json"]
    refs = [option["$ref"] for option in body["schema"]["oneOf"]]
    assert refs == ["#/components/schemas/IngestBatch", "#/components/schemas/IngestBatchColumnar"]
    schemas = document["components"]["schemas"]
    assert schemas["IngestBatchColumnar"]["properties"]["wire_version"]["const"] == "2"
    assert "FrameRecord" in schemas


# -- property: both versions accept and refuse the same frames ---------------------------

_coordinate = st.one_of(
    st.floats(min_value=-2, max_value=700, allow_nan=False), st.sampled_from([math.nan, math.inf])
)


@st.composite
def _frames(draw: st.DrawFn) -> list[dict[str, Any]]:
    frames = []
    for i in range(draw(st.integers(1, 3))):
        width, height = draw(st.sampled_from([(640, 480), (32, 600), (1, 1)]))
        boxes = draw(st.lists(st.tuples(*[_coordinate] * 4), max_size=4))
        dets = [
            {
                **detection(*box, draw(st.floats(0, 1.1))),
                "class_name": draw(st.sampled_from(["Normal", "Fall"])),
            }
            for box in boxes
        ]
        key = draw(st.sampled_from([f"cam-1:{i}", "cam-1:0", "bad key"]))
        frames.append(frame(key, index=i, detections=dets, width=width, height=height))
    return frames


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(frames=_frames())
def test_v1_and_v2_accept_and_refuse_the_same_frames(frames: list[dict[str, Any]]) -> None:
    body = batch(*frames)
    v1_json = json.dumps(body)
    v2_json = json.dumps(to_columnar(body))
    try:
        v1: IngestBatch | None = IngestBatch.model_validate_json(v1_json)
    except ValueError:
        v1 = None
    try:
        v2: IngestBatchColumnar | None = IngestBatchColumnar.model_validate_json(v2_json)
    except ValueError:
        v2 = None
    assert (v1 is None) == (v2 is None), (v1_json, v2_json)
    if v1 is not None and v2 is not None:
        encoded = encode_columnar(v1.frames, agent_id=v1.agent_id, sent_at=v1.sent_at)
        assert encoded.model_dump() == v2.model_dump()


def test_a_preparation_never_runs_during_a_duckdb_write(
    app: FastAPI, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GIL gate: a parse running beside ``insert_batch`` slows it 2-3x (api/routes/ingest.py)."""
    import api.routes.ingest as route

    spans: list[tuple[str, float, float]] = []
    prepare, lock = route._prepare, threading.Lock()

    def spied(stage: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                with lock:
                    spans.append((stage, start, time.perf_counter()))

        return run

    monkeypatch.setattr(route, "_prepare", spied("prepare", prepare))
    boxes = [detection(10 + i, 20, 110 + i, 220, 0.3 + i / 40) for i in range(20)]
    bodies = [
        to_columnar(
            batch(*(frame(f"cam-1:{b}-{i}", index=i, detections=boxes) for i in range(200)))
        )
        for b in range(12)
    ]
    with TestClient(app) as client:
        writer = app.state.writer
        monkeypatch.setattr(writer, "_write_group", spied("write", writer._write_group))
        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(lambda body: post(client, body).status_code, bodies))

    assert statuses == [200] * 12
    prepares = [s for s in spans if s[0] == "prepare"]
    writes = [s for s in spans if s[0] == "write"]
    assert len(prepares) == 12
    assert writes  # one per group of batches written together
    overlaps = [(p, w) for p in prepares for w in writes if p[1] < w[2] and w[1] < p[2]]
    assert overlaps == []
