"""``/api/health``: liveness for anyone; the store, schema, production model and counts
for a caller with a token.

Without a token the answer touches neither the store nor MLflow: it comes in milliseconds
even while another process holds the DuckDB file or PostgreSQL is down (a liveness probe
must never wait on the store's back-off), and it tells an anonymous caller nothing about
the data. With a valid token the store is tried once, without retry: a locked file or an
unreachable server answers 503 ``degraded`` with the reason at once.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api import crud
from api.auth import Principal
from api.deps import TOKEN_COOKIE, RegistryDep, StoreDep, get_current_principal
from api.models import HealthPublic
from edgeloop.registry import PRODUCTION
from edgeloop.store import StoreUnavailableError
from edgeloop.store.connection import store_errors

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/health", tags=["health"])

_optional_bearer = HTTPBearer(
    auto_error=False,
    description="Optional on /api/health: with a token the answer includes the store's state.",
)


def optional_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_optional_bearer)],
) -> Principal | None:
    """The caller when a token (header, or the page's cookie on GET) was sent, else None.

    Raises:
        HTTPException: 401 when a token was sent but is unknown (a typo should not look
            like a healthy answer without counts).
    """
    if credentials is None and not request.cookies.get(TOKEN_COOKIE):
        return None
    return get_current_principal(request, credentials)


@router.get(
    "",
    response_model=HealthPublic,
    responses={
        401: {"description": "A token was sent but is unknown (send none for liveness only)"},
        503: {
            "model": HealthPublic,
            "description": "With a token: the store locked or unreachable",
        },
    },
)
def read_health(
    request: Request,
    store: StoreDep,
    registry: RegistryDep,
    principal: Annotated[Principal | None, Depends(optional_principal)],
) -> HealthPublic | JSONResponse:
    """Liveness without a token (200, nothing else checked); with any valid token, 200 when
    the store answers at once, 503 (same body, ``errors`` says why) when it does not.

    An unreachable MLflow store is reported in ``errors`` with a null production version,
    not as a failure: ingest and labeling work without it.
    """
    if principal is None:
        return HealthPublic(status="ok", scope="liveness", version=request.app.version)
    errors: list[str] = []
    schema = None
    counts = None
    try:
        with store.connect(retry=False) as con:
            schema = crud.schema_version(con=con)
            counts = crud.health_counts(con=con)
    except (*store_errors(), StoreUnavailableError, OSError) as exc:  # type: ignore[misc]
        logger.warning("health: store %s unreachable: %s", store.location, exc)
        errors.append(f"store {store.location}: {exc}")
    production = None
    try:
        mv = registry.version(PRODUCTION)
        production = str(mv.version) if mv is not None else None
    except Exception as exc:
        logger.warning("health: MLflow registry unreachable: %s", exc)
        errors.append(f"mlflow registry: {exc}")
    health = HealthPublic(
        status="ok" if counts is not None else "degraded",
        scope="full",
        version=request.app.version,
        store=counts is not None,
        store_backend=store.dialect,
        duckdb=counts is not None,
        schema_version=schema,
        production_model_version=production,
        counts=counts,
        errors=errors,
    )
    if counts is None:
        return JSONResponse(health.model_dump(mode="json"), status_code=503)
    return health
