"""POST /api/ingest with wire version 3 (``IngestBatchBinary``, MessagePack with typed
arrays): the same rows and acks as versions 1 and 2, every refusal a 422 naming the array
and index, and no body, however broken, a server error or a stored row.

Every test sends real bodies through the app to a real DuckDB file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from api_support import AGENT, batch, queued_frame
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_api_ingest_columnar import BATCHES, app_on, post, stored_rows, to_columnar

from edgeloop.store import Store
from edgeloop.wire import (
    MSGPACK_MEDIA_TYPE,
    FrameRecord,
    IngestBatchBinary,
    IngestBatchColumnar,
    decode_binary,
    encode_binary,
    encode_columnar,
    ingest_body,
    ingest_media_type,
    parse_ingest_batch,
)


def v3_body(v1: dict[str, Any]) -> bytes:
    """A version-1 body (JSON-ready dict) as the version-3 bytes of the same frames."""
    columnar = IngestBatchColumnar.model_validate_json(json.dumps(to_columnar(v1)))
    return encode_binary(columnar)


def post_v3(client: TestClient, body: bytes) -> Any:
    return client.post(
        "/api/ingest", content=body, headers={**AGENT, "Content-Type": MSGPACK_MEDIA_TYPE}
    )


def frame_count(store: Store) -> int:
    with store.connect() as con:
        row = con.execute("SELECT count(*) FROM frames").fetchone()
    assert row is not None
    return int(row[0])


def test_v1_and_v3_store_identical_rows_and_answer_identical_acks(tmp_path: Path) -> None:
    acks: dict[str, list[Any]] = {}
    rows: dict[str, dict[str, list[tuple[Any, ...]]]] = {}
    senders: dict[str, Callable[[TestClient, dict[str, Any]], Any]] = {
        "1": post,
        "3": lambda client, body: post_v3(client, v3_body(body)),
    }
    for version, send in senders.items():
        with app_on(tmp_path / f"v{version}") as (client, store, loop):
            acks[version] = []
            for frames in BATCHES:
                response = send(client, batch(*frames))
                assert response.status_code == 200, response.text
                acks[version].append(response.json())
            rows[version] = stored_rows(store, loop.frames_dir)

    assert acks["3"] == acks["1"]
    assert [a["conflicts"] for a in acks["3"]] == [0, 0, 1, 1]
    for table in ("frames", "prediction_logs", "labeling_queue"):
        assert rows["3"][table] == rows["1"][table], table
    assert len(rows["3"]["prediction_logs"]) == 14


def test_the_agent_sends_version_3_and_it_reads_back_as_the_same_batch() -> None:
    records = [FrameRecord.model_validate(f) for f in [*BATCHES[0], *BATCHES[1]]]
    columnar = encode_columnar(
        records, agent_id="agent-1", sent_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    body = ingest_body(columnar)

    assert ingest_media_type(body) == MSGPACK_MEDIA_TYPE
    decoded = parse_ingest_batch(body)  # told from the bytes, as for a spooled file
    assert isinstance(decoded, IngestBatchBinary)
    assert decoded.to_columnar().model_dump() == columnar.model_dump()
    assert [f.model_dump() for f in decoded.frames] == [r.model_dump() for r in records]
    # JPEGs travel as bytes: the body is smaller than version 2's base64 JSON.
    assert len(body) < len(columnar.model_dump_json())


def _map(mutate: Callable[[dict[str, Any]], None]) -> bytes:
    """A valid two-frame version-3 body (4 detections), changed by ``mutate``."""
    body = msgpack.unpackb(
        v3_body(batch(queued_frame("cam-1:1", 1), queued_frame("cam-1:2", 2))), raw=False
    )
    mutate(body)
    return bytes(msgpack.packb(body, use_bin_type=True))


def _typed(name: str, index: int, value: float, dtype: str) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        values = np.frombuffer(body[name], dtype=dtype).copy()
        values[index] = value
        body[name] = values.tobytes()

    return mutate


REFUSALS = [
    ("not MessagePack", b"\x85\xa1", (), "not one MessagePack value"),
    ("trailing bytes", _map(lambda b: None) + b"\x00", (), "not one MessagePack value"),
    ("an array, not a map", bytes(msgpack.packb([1, 2])), (), "valid dictionary"),
    (
        "an array past the decoder's limit",
        bytes(msgpack.packb({"frame_key": [1] * 1_000_000})),
        (),
        "not one MessagePack value",
    ),
    ("unknown key", _map(lambda b: b.update(extra=1)), ("extra",), "Extra inputs"),
    ("missing array", _map(lambda b: b.pop("x1")), ("x1",), "Field required"),
    (
        "version 2 in MessagePack",
        _map(lambda b: b.update(wire_version="2")),
        ("wire_version",),
        "'3'",
    ),
    ("str for a typed array", _map(lambda b: b.update(x1="abcdefgh")), ("x1",), "valid bytes"),
    ("ragged typed array", _map(lambda b: b.update(x1=b["x1"][:-1])), ("x1",), "whole number"),
    (
        "short per-frame array",
        _map(lambda b: b.update(width=b["width"][:4])),
        ("width",),
        "width has 1 items",
    ),
    ("NaN confidence", _map(_typed("confidence", 1, math.nan, "<f8")), ("confidence", 1), "finite"),
    ("infinite x2", _map(_typed("x2", 0, math.inf, "<f8")), ("x2", 0), "finite"),
    ("confidence above 1", _map(_typed("confidence", 3, 1.5, "<f8")), ("confidence", 3), "<= 1"),
    ("zero width", _map(_typed("width", 1, 0, "<i4")), ("width", 1), "> 0"),
    ("negative class", _map(_typed("class_id", 2, -1, "<i4")), ("class_id", 2), ">= 0"),
    ("uncertain 2", _map(_typed("uncertain", 0, 2, "|u1")), ("uncertain", 0), "0 (false) or 1"),
    (
        "time past year 9999",
        _map(_typed("captured_at_us", 0, 2**62, "<i8")),
        ("captured_at_us", 0),
        "years 1 to 9999",
    ),
    (
        "class name index",
        _map(_typed("class_name_index", 3, 7, "<i4")),
        ("class_name_index", 3),
        "not an index",
    ),
    ("box outside the frame", _map(_typed("x2", 0, 5000, "<f8")), ("x2", 0), "lies outside"),
    ("unordered box", _map(_typed("x1", 1, 639, "<f8")), ("x2", 1), "x1 <= x2"),
    (
        "bad frame key",
        _map(lambda b: b["frame_key"].__setitem__(0, "../x")),
        ("frame_key", 0),
        "pattern",
    ),
]


@pytest.mark.parametrize(
    ("body", "loc", "message"), [pytest.param(b, loc, m, id=name) for name, b, loc, m in REFUSALS]
)
def test_every_broken_v3_body_is_422_naming_the_array_and_stores_nothing(
    client: TestClient, store: Store, body: bytes, loc: tuple[Any, ...], message: str
) -> None:
    response = post_v3(client, body)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert ("body", *loc) in [tuple(e["loc"]) for e in errors], errors
    assert message in " ".join(e["msg"] for e in errors), errors
    assert frame_count(store) == 0


def test_a_v3_body_with_a_corrupt_jpeg_is_422_naming_the_frame(
    client: TestClient, store: Store
) -> None:
    body = _map(lambda b: b["jpeg"].__setitem__(0, b["jpeg"][0][:-40]))  # cut before EOI
    response = post_v3(client, body)
    assert response.status_code == 422
    assert "cam-1:1" in response.json()["detail"]
    assert frame_count(store) == 0


def test_a_json_body_declared_as_messagepack_is_422(client: TestClient, store: Store) -> None:
    body = json.dumps(to_columnar(batch(queued_frame("cam-1:1", 1)))).encode()
    assert post_v3(client, body).status_code == 422
    assert frame_count(store) == 0


def test_decode_checks_what_the_encoder_never_writes() -> None:
    good = _map(lambda b: None)
    assert decode_binary(good).frame_count == 2
    assert decode_binary(good).arrays().boxes.shape == (4, 4)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.one_of(
        st.binary(max_size=2000),
        st.tuples(st.integers(0, 2000), st.integers(0, 255)).map(
            lambda pos_byte: _flip(_map(lambda b: None), *pos_byte)
        ),
    )
)
def test_no_v3_body_is_a_server_error(client: TestClient, store: Store, data: bytes) -> None:
    """Random bytes, and valid bodies with one byte changed: 200 or 422, never a 5xx."""
    before = frame_count(store)
    response = post_v3(client, data)
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert frame_count(store) == before


def _flip(body: bytes, position: int, value: int) -> bytes:
    changed = bytearray(body)
    changed[position % len(changed)] = value
    return bytes(changed)
