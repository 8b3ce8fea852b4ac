"""``/api/health``: is the store reachable, which schema and production model, what it holds."""

from __future__ import annotations

import logging

import duckdb
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api import crud
from api.deps import RegistryDep, StoreDep
from api.models import HealthPublic
from edgeloop.registry import PRODUCTION
from edgeloop.store import StoreLockedError

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/health", tags=["health"])


@router.get(
    "",
    response_model=HealthPublic,
    responses={503: {"model": HealthPublic, "description": "DuckDB unreachable"}},
)
def read_health(store: StoreDep, registry: RegistryDep) -> HealthPublic | JSONResponse:
    """Public: 200 when DuckDB answers, 503 (same body) when it does not.

    An unreachable MLflow store is reported in ``errors`` with a null production version,
    not as a failure: ingest and labeling work without it.
    """
    errors: list[str] = []
    schema = None
    counts = None
    try:
        with store.connect() as con:
            schema = crud.schema_version(con=con)
            counts = crud.health_counts(con=con)
    except (duckdb.Error, StoreLockedError, OSError) as exc:
        logger.warning("health: DuckDB %s unreachable: %s", store.path, exc)
        errors.append(f"duckdb {store.path}: {exc}")
    production = None
    try:
        mv = registry.version(PRODUCTION)
        production = str(mv.version) if mv is not None else None
    except Exception as exc:
        logger.warning("health: MLflow registry unreachable: %s", exc)
        errors.append(f"mlflow registry: {exc}")
    health = HealthPublic(
        status="ok" if counts is not None else "degraded",
        duckdb=counts is not None,
        schema_version=schema,
        production_model_version=production,
        counts=counts,
        errors=errors,
    )
    if counts is None:
        return JSONResponse(health.model_dump(mode="json"), status_code=503)
    return health
