"""/api/search/similar on real uvicorn: the API keeps the published qdrant-edge version
open, keeps answering while a new version is published, and follows the pointer."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
from api_support import LABELER, LiveServer
from support import crop_points

from edgeloop.settings import LoopSettings
from edgeloop.vectors import VectorIndex
from edgeloop.vectors.versions import is_held_open


def test_live_api_serves_through_a_publish_and_reopens_the_new_version(
    live_server: LiveServer, loop_settings: LoopSettings
) -> None:
    index = VectorIndex.from_settings(loop_settings, keep_versions=1)
    # Both versions hold s1-d4, so every request can be answered by either.
    v1 = index.publish(crop_points(200, seed=1), embedder="e")
    params = {"detection_id": "s1-d4", "camera_id": "cam-b", "limit": 10}  # even ids: cam-b
    with httpx.Client(base_url=live_server.base_url, headers=LABELER, timeout=30) as http:
        first = http.get("/api/search/similar", params=params)
        assert first.status_code == 200, first.text
        body = first.json()
        assert body["index_version"] == "v0001" and body["hits"][0]["detection_id"] == "s1-d4"
        assert {h["camera_id"] for h in body["hits"]} == {"cam-b"}
        assert is_held_open(Path(v1.location))  # the API process holds it

        seen: list[tuple[int, str]] = []
        stop = threading.Event()

        def hammer() -> None:
            with httpx.Client(base_url=live_server.base_url, headers=LABELER, timeout=30) as c:
                while not stop.is_set():
                    r = c.get("/api/search/similar", params=params)
                    seen.append((r.status_code, r.json().get("index_version", r.text)))

        workers = [threading.Thread(target=hammer) for _ in range(3)]
        for w in workers:
            w.start()
        index.publish(crop_points(200, seed=1) + crop_points(100, seed=2), embedder="e")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(v == "v0002" for _, v in seen):
            time.sleep(0.1)
        stop.set()
        for w in workers:
            w.join()
        assert seen and {code for code, _ in seen} == {200}, seen[:5]
        assert {v for _, v in seen} <= {"v0001", "v0002"} and ("v0002" in {v for _, v in seen})

        after = http.get("/api/search/similar", params={"detection_id": "s2-d3"}).json()
        assert after["index_version"] == "v0002" and after["hits"][0]["detection_id"] == "s2-d3"
    assert not is_held_open(Path(v1.location))  # released on the swap
    index.publish(crop_points(10, seed=3), embedder="e")
    assert not Path(v1.location).exists()  # so the next publish pruned it
