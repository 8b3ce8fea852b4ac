"""A NUL character anywhere in a request is a 422 on both backends: PostgreSQL cannot
compare a text holding one (``psycopg.DataError``), so without the check the same request
was a 500 there and a 404 or an empty page on the DuckDB file (found by the schema fuzz
test on ``POST /api/review/grid`` and ``GET /api/review/grid``)."""

from __future__ import annotations

from typing import Any

import pytest
from api_support import ADMIN
from fastapi.testclient import TestClient

NUL = "cam-1:\x00"

IN_URL = [
    ("GET", "/api/tags", {"params": {"prefix": NUL}}),
    ("GET", "/api/review/grid", {"params": {"camera_id": NUL, "class_name": NUL}}),
    ("GET", "/api/browse/detections", {"params": {"tag": NUL, "camera_id": NUL}}),
    ("GET", "/api/frames/cam-1%3A%00.jpg", {}),
    ("GET", "/console/browse/fragment", {"params": {"class_name": NUL}}),
]


@pytest.mark.backends
@pytest.mark.parametrize(("method", "url", "kwargs"), IN_URL)
def test_a_nul_in_the_url_is_refused(
    client: TestClient, method: str, url: str, kwargs: dict[str, Any]
) -> None:
    response = client.request(method, url, headers=ADMIN, **kwargs)
    assert response.status_code == 422, response.text
    assert "NUL" in response.json()["detail"]


@pytest.mark.backends
@pytest.mark.parametrize(
    "body",
    [
        {"frames": [{"frame_key": NUL, "verdict": "missed"}]},
        {"reviews": [{"frame_key": NUL, "detection_id": f"{NUL}:0"}]},
    ],
)
def test_a_nul_in_a_grid_review_is_refused(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post("/api/review/grid", json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert "frame_key" in response.text
