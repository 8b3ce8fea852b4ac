"""The API's OpenAPI document, made whole: every ``$ref`` resolves, and the 413 of the
body-size middleware is documented on every operation with a body.

A request body schema given through ``openapi_extra`` (the ingest route reads its raw
body) carries pydantic's ``$defs``, whose ``#/$defs/...`` references do not resolve in an
OpenAPI document: they are moved to ``components/schemas``. The 503 of a locked DuckDB
file is declared by the routers (``api.deps.secured_router``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

RESPONSE_413 = {"description": "Body larger than EDGELOOP_API_MAX_BODY_BYTES"}


def _hoist_defs(node: Any, components: dict[str, Any]) -> Any:
    """``node`` with every ``$defs`` moved into ``components`` and its refs rewritten."""
    if isinstance(node, dict):
        for name, schema in node.pop("$defs", {}).items():
            components.setdefault(name, _hoist_defs(schema, components))
        return {
            key: (
                value.replace("#/$defs/", "#/components/schemas/")
                if key == "$ref" and isinstance(value, str)
                else _hoist_defs(value, components)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_hoist_defs(item, components) for item in node]
    return node


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the completed document (built once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        components = document.setdefault("components", {}).setdefault("schemas", {})
        document["paths"] = _hoist_defs(document["paths"], components)
        for operations in document["paths"].values():
            for operation in operations.values():
                if isinstance(operation, dict) and "requestBody" in operation:
                    operation.setdefault("responses", {}).setdefault("413", RESPONSE_413)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
