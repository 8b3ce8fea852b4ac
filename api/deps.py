"""FastAPI dependencies and their ``Annotated`` aliases.

Per-app state (settings, store, principals, registry, metrics) is created by
``api.main.create_app`` and kept on ``app.state``; these functions hand it to routes, so
tests can swap any of them with ``app.dependency_overrides``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import Principal, authenticate
from api.dagster_launch import DagsterLauncher, JobLauncher
from api.model_registry import ModelRegistry
from api.settings import ApiSettings
from api.telemetry import ApiMetrics
from api.writer import IngestWriter
from edgeloop.store import AnyStore
from edgeloop.store.frames import ConfidenceHistograms
from edgeloop.tokens import Role
from edgeloop.wire import MAX_INT64

logger = logging.getLogger(__name__)

TOKEN_COOKIE = "edgeloop_token"
"""Cookie the labeling page sets so plain links (HTML reports) work; accepted for GET only."""

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "Missing or unknown bearer token",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "example": "Bearer"}},
    },
    403: {"description": "The token's role may not do this (see the route's required role)"},
}
"""The 401 and 403 answers of every route that needs a token, for OpenAPI: pass it as
``APIRouter(..., responses=AUTH_RESPONSES)`` (``get_current_principal``, ``require_role``)."""


MAX_OFFSET = 1_000_000_000
"""Largest ``offset`` a list route takes (DuckDB's OFFSET is a BIGINT; past the rows it is
an empty page, so a larger bound only invites overflow)."""

ItemId = Annotated[int, Path(ge=1, le=MAX_INT64, description="Labeling-queue item id.")]
"""A labeling-queue item id in a path: a BIGINT of the ``labeling_queue_seq`` sequence."""

CameraQuery = Annotated[
    str | None, Query(max_length=64, description="Only this camera (camera_id).")
]
"""An optional ``camera_id`` filter (the wire's camera ids are at most 64 characters)."""

T = TypeVar("T")


def app_state(name: str, kind: type[T]) -> Callable[[Request], T]:
    """A dependency that returns ``request.app.state.<name>``, set by ``api.main.create_app``.

    The returned function raises ``TypeError`` when that attribute is not a ``kind``.
    """

    def dependency(request: Request) -> T:
        value = getattr(request.app.state, name)
        if not isinstance(value, kind):
            raise TypeError(
                f"app.state.{name} is a {type(value).__name__}, not a {kind.__name__}: "
                "build the app with api.main.create_app"
            )
        return value

    dependency.__name__ = dependency.__qualname__ = f"get_{name}"
    return dependency


get_api_settings = app_state("settings", ApiSettings)


def get_store(request: Request) -> AnyStore:
    """``request.app.state.store``: the store of either backend ``api.main.create_app`` set."""
    store: AnyStore = request.app.state.store
    return store


get_registry = app_state("registry", ModelRegistry)
get_writer = app_state("writer", IngestWriter)
get_metrics = app_state("metrics", ApiMetrics)
get_histograms = app_state("histograms", ConfidenceHistograms)

SettingsDep = Annotated[ApiSettings, Depends(get_api_settings)]
StoreDep = Annotated[AnyStore, Depends(get_store)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
WriterDep = Annotated[IngestWriter, Depends(get_writer)]
HistogramsDep = Annotated[ConfidenceHistograms, Depends(get_histograms)]


def get_dagster_client(settings: SettingsDep) -> JobLauncher:
    """Dagster's webserver at ``settings.dagster_url`` (no request is made here)."""
    return DagsterLauncher(settings)


DagsterDep = Annotated[JobLauncher, Depends(get_dagster_client)]

_bearer = HTTPBearer(
    auto_error=False, description="A token from `edgeloop token create NAME --role ROLE`."
)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": "Bearer"},
    )


def get_current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from ``Authorization: Bearer <token>`` (or, on GET, the token cookie).

    Raises:
        HTTPException: 401 with ``WWW-Authenticate: Bearer`` when the token is missing or unknown.
    """
    token = credentials.credentials if credentials is not None else None
    if token is None and request.method in ("GET", "HEAD"):
        token = request.cookies.get(TOKEN_COOKIE)
    if not token:
        raise _unauthorized(
            "missing bearer token: send 'Authorization: Bearer <token>' "
            "(create one on the loop host: `edgeloop token create NAME --role labeler`)"
        )
    principal = authenticate(request.app.state.principals, token)
    if principal is None:
        raise _unauthorized("invalid bearer token")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_current_principal)]


def require_role(role: Role) -> Callable[[Principal], Principal]:
    """A dependency that lets through ``role`` and ``admin``; others get 403."""

    def check(principal: CurrentPrincipal) -> Principal:
        if not principal.may(role):
            raise HTTPException(
                status_code=status.HTTP_403_FORBIDDEN,
                detail=f"this action needs the role {role!r} (or 'admin'); your token has {principal.role!r}",
            )
        return principal

    return check


AgentPrincipal = Annotated[Principal, Depends(require_role("agent"))]
LabelerPrincipal = Annotated[Principal, Depends(require_role("labeler"))]
AdminPrincipal = Annotated[Principal, Depends(require_role("admin"))]


STORE_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {
        "description": (
            "The DuckDB file is held by another process (a Dagster run): retry after the "
            "Retry-After header's seconds"
        ),
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    }
}
"""The 503 that ``api.main``'s ``StoreLockedError`` handler answers, for OpenAPI."""


def secured_router(prefix: str, *, tag: str, store: bool = True) -> APIRouter:
    """An ``APIRouter`` whose routes all need a token: 401 and 403 documented on each,
    and the 503 of a locked DuckDB file unless ``store`` is False (routes that never
    open it)."""
    responses = AUTH_RESPONSES | (STORE_RESPONSES if store else {})
    return APIRouter(prefix=prefix, tags=[tag], responses=responses)
