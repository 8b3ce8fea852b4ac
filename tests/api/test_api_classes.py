"""``/api/classes``: seeded from the production model's names, changed by admins only with a
reason, refusals as clear 4xx; labels may use any active class and no other (422)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from api_support import ADMIN, LABELER, ingest, queued_frame
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.deps import get_registry

pytestmark = pytest.mark.backends


class ProductionRegistry:
    """Registry stub whose production model has the seed's classes."""

    model_name = "edgeloop-detector"

    def class_names(self, alias: str, *, marker: object) -> list[str]:
        return ["Normal", "Fall"]


@pytest.fixture
def admin_client(app: FastAPI) -> Iterator[TestClient]:
    app.dependency_overrides[get_registry] = ProductionRegistry
    with TestClient(app) as test_client:
        yield test_client


def _post(client: TestClient, path: str, body: dict[str, Any], headers: dict = ADMIN) -> Any:
    return client.post(f"/api/classes{path}", json=body, headers=headers)


def test_classes_are_seeded_from_production_and_changed_by_admins(
    admin_client: TestClient,
) -> None:
    listed = admin_client.get("/api/classes", headers=LABELER).json()
    assert listed["active"] == ["Normal", "Fall"]
    assert [c["action"] for c in listed["changes"]] == ["seed", "seed"]
    fall = listed["data"][1]

    refused = _post(admin_client, "", {"name": "forklift", "reason": "r"}, headers=LABELER)
    assert refused.status_code == 403
    added = _post(admin_client, "", {"name": "forklift", "reason": "new dock"})
    assert added.status_code == 201, added.text
    renamed = _post(
        admin_client, f"/{fall['class_id']}/rename", {"new_name": "fallen", "reason": "r"}
    )
    assert renamed.json()["name"] == "fallen" and renamed.json()["class_id"] == fall["class_id"]

    listed = admin_client.get("/api/classes", headers=LABELER).json()
    assert listed["active"] == ["Normal", "fallen", "forklift"]
    newest = listed["changes"][0]
    assert (newest["action"], newest["previous_name"], newest["actor"]) == (
        "rename",
        "Fall",
        "admin",
    )


def test_refusals_are_4xx_that_say_why(admin_client: TestClient) -> None:
    data = admin_client.get("/api/classes", headers=ADMIN).json()["data"]
    normal, fall = data[0]["class_id"], data[1]["class_id"]
    cases = [
        ("", {"name": "Fall", "reason": "r"}, 409, "belongs to class"),
        ("", {"name": "x", "reason": ""}, 422, "reason"),
        ("", {"name": "   ", "reason": "r"}, 422, "1 to 64"),
        (f"/{normal}/rename", {"new_name": "Fall", "reason": "r"}, 409, "belongs to class"),
        (f"/{normal}/merge", {"into": normal, "reason": "r"}, 409, "into itself"),
        (f"/{normal}/merge", {"into": "nothing", "reason": "r"}, 404, "no class 'nothing'"),
        ("/999/retire", {"reason": "r"}, 404, "no class 999"),
    ]
    for path, body, code, message in cases:
        response = _post(admin_client, path, body)
        assert response.status_code == code, (path, body, response.text)
        assert message in response.text
    assert _post(admin_client, f"/{fall}/retire", {"reason": "r"}).status_code == 200
    last = _post(admin_client, f"/{normal}/retire", {"reason": "r"})
    assert last.status_code == 409 and "last active class" in last.json()["detail"]


def test_labels_use_any_active_class_and_no_other(admin_client: TestClient) -> None:
    ingest(admin_client, queued_frame("cam-1:1", 1), queued_frame("cam-1:2", 2))
    forklift = _post(admin_client, "", {"name": "forklift", "reason": "new dock"}).json()
    _post(admin_client, "/2/retire", {"reason": "no falls here"})  # Fall (seeded second)

    item = admin_client.get("/api/labeling-queue/next", headers=LABELER).json()
    assert item["class_names"] == ["Normal", "forklift"]
    box = {"bbox_xyxy": [10, 10, 60, 60]}
    retired = admin_client.post(
        f"/api/labeling-queue/{item['item_id']}/label",
        json={"boxes": [box | {"class_name": "Fall"}]},
        headers=LABELER,
    )
    assert retired.status_code == 422 and "unknown class 'Fall'" in retired.text
    ok = admin_client.post(
        f"/api/labeling-queue/{item['item_id']}/label",
        json={"boxes": [box | {"class_name": forklift["name"]}]},
        headers=LABELER,
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["boxes"][0]["class_name"] == "forklift"


def test_pre_labels_show_a_renamed_class_under_its_new_name(admin_client: TestClient) -> None:
    """The model that drew the boxes still says the old name; the labeler sees, and can send
    back unchanged, the current one."""
    ingest(admin_client, queued_frame("cam-1:1", 1))
    item = admin_client.get("/api/labeling-queue/next", headers=LABELER).json()
    assert [box["class_name"] for box in item["proposed_boxes"]] == ["Normal", "Fall"]
    renamed = _post(admin_client, "/1/rename", {"new_name": "person", "reason": "clearer"})
    assert renamed.status_code == 200, renamed.text

    item = admin_client.get(f"/api/labeling-queue/{item['item_id']}", headers=LABELER).json()
    assert item["class_names"] == ["person", "Fall"]
    boxes = item["proposed_boxes"]
    assert [(box["class_name"], box["class_id"]) for box in boxes] == [("person", 0), ("Fall", 1)]
    unchanged = [
        {"bbox_xyxy": box["bbox_xyxy"], "class_name": box["class_name"]}
        for box in item["proposed_boxes"]
    ]
    sent = admin_client.post(
        f"/api/labeling-queue/{item['item_id']}/label", json={"boxes": unchanged}, headers=LABELER
    )
    assert sent.status_code == 201, sent.text
