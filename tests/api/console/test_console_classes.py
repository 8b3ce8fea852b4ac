"""The console's classes panel: every role sees the classes and who changed what and why;
only admins get the forms, and what a form posts changes the list (and is refused with
the API's reason otherwise)."""

from __future__ import annotations

import re

from api_support import ADMIN, LABELER
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.deps import get_registry
from edgeloop.store import AnyStore, classes


class _NoProduction:
    model_name = "edgeloop-detector"

    def class_names(self, alias: str, *, marker: object) -> list[str]:
        from edgeloop.registry import ModelNotFoundError

        raise ModelNotFoundError("no production model")


def test_classes_panel_lists_changes_and_gives_admins_the_forms(
    app: FastAPI, store: AnyStore
) -> None:
    app.dependency_overrides[get_registry] = _NoProduction
    with store.connect() as con:
        classes.seed(con=con, names=["Normal", "Fall"])
    with TestClient(app) as client:
        assert client.get("/console/classes").status_code == 200
        labeler = client.get("/console/classes/fragment", headers=LABELER)
        assert labeler.status_code == 200
        assert "Normal" in labeler.text and "admin-action" not in labeler.text
        admin = client.get("/console/classes/fragment", headers=ADMIN).text
        urls = re.findall(r'data-url="([^"]+)"', admin)
        assert urls[0] == "/api/classes" and "/api/classes/1/rename" in urls
        # What the add form posts (console.js sends its fields as JSON).
        added = client.post(
            "/api/classes", json={"name": "forklift", "reason": "dock"}, headers=ADMIN
        )
        assert added.status_code == 201
        merged = client.post(
            "/api/classes/3/merge", json={"into": "2", "reason": "x"}, headers=ADMIN
        )
        assert merged.status_code == 200 and merged.json()["name"] == "Fall"
        panel = client.get("/console/api/classes", headers=LABELER).json()
        assert panel["active"] == ["Normal", "Fall"]
        assert [c["action"] for c in panel["changes"]][:2] == ["merge", "add"]
        fragment = client.get("/console/classes/fragment", headers=LABELER).text
        assert "forklift" in fragment and "merged" in fragment and "dock" in fragment
