"""The grid review's audit source (``/api/review/grid?source=audit``), its verdicts and the
rates ``/api/review/audit`` reports from them, on each store. The audit share is 0.5 here,
and the frame keys are picked by the hash rule itself, so the sample is known."""

from __future__ import annotations

from typing import Any

import pytest
from api_support import LABELER, detection, frame, ingest, jpeg_bytes
from fastapi.testclient import TestClient

from edgeloop.audit import in_audit_sample
from edgeloop.store import AnyStore, labels, queue, verdicts

pytestmark = pytest.mark.backends

SHARE = 0.5
COLUMNS = (
    "target_kind",
    "target_id",
    "class_name",
    "verdict",
    "corrected_class",
    "audit",
    "reviewer",
)


@pytest.fixture(autouse=True)
def _audit_half(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGELOOP_AUDIT_SHARE", str(SHARE))


def _keys(sampled: bool, n: int) -> list[str]:
    """The first ``n`` frame keys ``cam-1:<i>`` in (or out of) the sample."""
    keys = (f"cam-1:{i}" for i in range(1000))
    return [k for k in keys if in_audit_sample(k, SHARE) == sampled][:n]


IN = _keys(True, 5)
OUT = _keys(False, 2)


def _frame(key: str, *dets: dict[str, Any]) -> dict[str, Any]:
    index = int(key.split(":")[1])
    return frame(key, index=index, detections=list(dets), jpeg=jpeg_bytes(seed=index))


def _setup(client: TestClient) -> None:
    """Sampled: IN[0] (0.95 Normal, 0.9 Fall, 0.5 Normal), IN[1] (0.8 Normal), IN[2] and
    IN[3] with no detection, IN[4] no detection and no JPEG. Not sampled: OUT[0] (0.99),
    OUT[1] (no detection)."""
    ingest(
        client,
        _frame(
            IN[0],
            detection(10, 10, 60, 120, 0.95),
            detection(200, 10, 260, 130, 0.9, "Fall"),
            detection(300, 10, 360, 130, 0.5),
        ),
        _frame(IN[1], detection(20, 20, 80, 140, 0.8)),
        _frame(IN[2]),
        _frame(IN[3]),
        frame(IN[4], index=int(IN[4].split(":")[1])),
        _frame(OUT[0], detection(30, 30, 90, 150, 0.99)),
        _frame(OUT[1]),
    )


def test_the_audit_grid_shows_the_samples_confident_detections_and_empty_frames(
    client: TestClient,
) -> None:
    _setup(client)
    response = client.get("/api/review/grid?source=audit", headers=LABELER)
    assert response.status_code == 200, response.text
    grid = response.json()
    assert [(c["detection_id"], c["audit"]) for c in grid["crops"]] == [
        (f"{IN[0]}:2", False),  # uncertain: shown, so the frame's label accepts it seen
        (f"{IN[1]}:0", True),
        (f"{IN[0]}:1", True),
        (f"{IN[0]}:0", True),
    ]
    assert [f["frame_key"] for f in grid["frames"]] == [IN[2], IN[3]]
    assert grid["frames"][0]["frame_url"] == f"/api/frames/{IN[2]}.jpg"
    plain = client.get("/api/review/grid", headers=LABELER).json()
    assert plain["frames"] == []
    assert {c["detection_id"]: c["audit"] for c in plain["crops"]}[f"{OUT[0]}:0"] is False
    only_fall = client.get("/api/review/grid?source=audit&class_name=Fall", headers=LABELER)
    assert [c["detection_id"] for c in only_fall.json()["crops"]] == [f"{IN[0]}:1"]
    assert only_fall.json()["frames"] == []
    bad = client.get("/api/review/grid?source=sample", headers=LABELER)
    assert bad.status_code == 422


def test_audit_verdicts_are_stored_and_give_the_rates(client: TestClient, store: AnyStore) -> None:
    _setup(client)
    body = {
        "reviews": [
            {"frame_key": IN[0], "detection_id": f"{IN[0]}:0", "verdict": "ok"},
            {"frame_key": IN[0], "detection_id": f"{IN[0]}:1", "verdict": "wrong"},
            {
                "frame_key": IN[1],
                "detection_id": f"{IN[1]}:0",
                "verdict": "wrong_class",
                "class_name": "Fall",
            },
            {"frame_key": OUT[0], "detection_id": f"{OUT[0]}:0", "verdict": "wrong"},
        ],
        "frames": [
            {"frame_key": IN[2], "verdict": "ok"},
            {"frame_key": IN[3], "verdict": "missed"},
        ],
    }
    response = client.post("/api/review/grid", json=body, headers=LABELER)
    assert response.status_code == 200, response.text
    result = response.json()
    assert sorted(r["frame_key"] for r in result["labeled"]) == sorted(
        [IN[0], IN[1], IN[2], OUT[0]]
    )
    assert [q["frame_key"] for q in result["queued"]] == [IN[3]] and result["refused"] == []
    with store.connect() as con:
        stored = verdicts.for_frames(con=con, frame_keys=[IN[0], IN[1], IN[2], IN[3], OUT[0]])
        empty_label = labels.latest_for_frame(con=con, frame_key=IN[2])
        missed_item = queue.item_for_frame(con=con, frame_key=IN[3])
        missed_label = labels.latest_for_frame(con=con, frame_key=IN[3])
    rows = [(*(r[k] for k in COLUMNS), r["label_id"] is not None) for r in stored]
    assert sorted(rows) == sorted(
        [
            ("detection", f"{OUT[0]}:0", "Normal", "wrong", None, False, "labeler", True),
            ("detection", f"{IN[0]}:0", "Normal", "ok", None, True, "labeler", True),
            ("detection", f"{IN[0]}:1", "Fall", "wrong", None, True, "labeler", True),
            ("detection", f"{IN[1]}:0", "Normal", "wrong_class", "Fall", True, "labeler", True),
            ("frame", IN[2], None, "ok", None, True, "labeler", True),
            ("frame", IN[3], None, "missed", None, True, "labeler", False),
        ]
    )
    assert empty_label is not None and empty_label["boxes"] == []
    assert missed_item is not None and missed_item["status"] == "pending" and missed_label is None
    again = client.get("/api/review/grid?source=audit", headers=LABELER).json()
    assert again["crops"] == [] and again["frames"] == []  # reviewed and queued leave the grid

    report = client.get("/api/review/audit?window=all", headers=LABELER)
    assert report.status_code == 200, report.text
    audit = report.json()
    assert (audit["audit_share"], audit["confident_at"]) == (SHARE, 0.7)
    assert {k: audit["mistakes"][k] for k in ("k", "n", "rate")} == {"k": 2, "n": 3, "rate": 2 / 3}
    assert audit["mistakes"]["low"] == pytest.approx(0.2077, abs=1e-4)
    assert audit["mistakes"]["high"] == pytest.approx(0.9385, abs=1e-4)
    assert [
        (c["class_name"], c["wrong"], c["wrong_class"], c["mistakes"]["n"])
        for c in audit["classes"]
    ] == [
        ("Fall", 1, 0, 1),
        ("Normal", 0, 1, 2),
    ]
    assert {k: audit["misses"][k] for k in ("k", "n", "rate")} == {"k": 1, "n": 2, "rate": 0.5}
    assert client.get("/api/review/audit?window=1y", headers=LABELER).status_code == 422
    assert client.get("/api/review/audit").status_code == 401


def test_bad_frame_reviews_store_nothing(client: TestClient, store: AnyStore) -> None:
    _setup(client)
    cases = [
        ({"frames": [{"frame_key": IN[0], "verdict": "ok"}]}, "has detections"),
        ({"frames": [{"frame_key": "cam-1:nope", "verdict": "missed"}]}, "is not stored"),
        ({"frames": [{"frame_key": IN[2], "verdict": "wrong"}]}, "verdict"),
        ({"frames": [], "reviews": []}, "nothing to review"),
        (
            {"frames": [{"frame_key": IN[2]}, {"frame_key": IN[2], "verdict": "missed"}]},
            "frames reviewed twice",
        ),
        (
            {
                "frames": [{"frame_key": IN[2], "verdict": "missed"}],
                "reviews": [{"frame_key": IN[2], "detection_id": f"{IN[0]}:0"}],
            },
            "both whole and as crops",
        ),
        # Not a frame key (PostgreSQL cannot even compare a text holding NUL).
        ({"frames": [{"frame_key": "cam-1:\x00", "verdict": "missed"}]}, "frame_key"),
        ({"reviews": [{"frame_key": "a\x00", "detection_id": "a\x00:0"}]}, "frame_key"),
    ]
    for body, message in cases:
        response = client.post("/api/review/grid", json=body, headers=LABELER)
        assert response.status_code == 422, (body, response.text)
        assert message in response.text, (message, response.text)
    with store.connect() as con:
        assert verdicts.for_frames(con=con, frame_keys=IN + OUT) == []
        assert queue.item_for_frame(con=con, frame_key=IN[2]) is None
