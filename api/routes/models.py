"""``/api/model-status`` and ``/api/models/production[/onnx]``: the registry's aliases for
people (status) and for agents (which model to run, and its ONNX file)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

from fastapi import Header, HTTPException, Path, Query, Response, status
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from api import crud, deps
from api.deps import secured_router
from api.model_registry import ModelRegistry
from api.models import ModelStatusPublic, ModelVersionPublic, RollbackCreate, RollbackPublic
from edgeloop.registry import (
    PRODUCTION,
    STAGING,
    ModelFiles,
    ModelNotFoundError,
    promote,
    rollback,
)
from edgeloop.store import AnyStore
from edgeloop.wire import ProductionModel

logger = logging.getLogger(__name__)

router = secured_router("/api/models", tag="models")
status_router = secured_router("/api/model-status", tag="models")

T = TypeVar("T")

ONNX_PATH = "/api/models/production/onnx"


def _registry_call(registry: ModelRegistry, call: Callable[[], T]) -> T:
    """Run a registry call; MLflow failures become 503 naming the tracking URI."""
    try:
        return call()
    except ModelNotFoundError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
    except HTTPException:
        raise
    except Exception as exc:
        logger.exception("MLflow registry call failed")
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"MLflow registry at {registry.settings.tracking_uri} failed: {exc}",
        ) from None


def _alias_move(registry: ModelRegistry, move: Callable[[], T]) -> T:
    """Run a registry rule that moves an alias (``edgeloop.registry.promote``/``rollback``):
    no such version is 404, a move the rule refuses (``ValueError``) is 409, any other
    MLflow failure 503 (``_registry_call``)."""

    def mapped() -> T:
        try:
            return move()
        except ModelNotFoundError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
        except ValueError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None

    return _registry_call(registry, mapped)


def _version_public(
    registry: ModelRegistry, store: AnyStore, alias: str
) -> ModelVersionPublic | None:
    mv = registry.version(alias)
    if mv is None:
        return None
    with store.connect() as con:
        metrics = crud.version_metrics(
            con=con, model_name=registry.model_name, version=str(mv.version)
        )
    created = (
        datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC)
        if mv.creation_timestamp
        else None
    )
    return ModelVersionPublic(
        version=str(mv.version),
        alias=alias,
        run_id=mv.run_id,
        description=mv.description or None,
        created_at=created,
        metrics=metrics,
    )


@status_router.get("", response_model=ModelStatusPublic)
def read_model_status(
    _principal: deps.CurrentPrincipal, registry: deps.RegistryDep, store: deps.StoreDep
) -> ModelStatusPublic:
    """Production and staging versions, each with its own held-out evidence
    (``crud.version_metrics``: kept through rollbacks and hand promotions), and the recent
    alias moves."""
    production = _registry_call(registry, lambda: _version_public(registry, store, PRODUCTION))
    staging = _registry_call(registry, lambda: _version_public(registry, store, STAGING))
    with store.connect() as con:
        deployments = crud.recent_deployments(con=con, model_name=registry.model_name)
    return ModelStatusPublic(
        model_name=registry.model_name,
        production=production,
        staging=staging,
        recent_deployments=deployments,
    )


@router.post(
    "/production/rollback",
    response_model=RollbackPublic,
    responses={
        404: {"description": "No earlier production version, or no such version"},
        409: {"description": "The version asked for already is production"},
        503: {"description": "The MLflow registry failed"},
    },
)
def rollback_production(
    body: RollbackCreate,
    principal: deps.AdminPrincipal,
    registry: deps.RegistryDep,
    store: deps.StoreDep,
) -> RollbackPublic:
    """Move ``production`` back to the previous production version, or to ``to_version``
    (role ``admin``); recorded in ``model_deployments`` with the caller's name and reason
    like every alias move. Agents follow within one model check interval."""
    before = _registry_call(registry, lambda: registry.version(PRODUCTION))
    version = _alias_move(
        registry,
        lambda: rollback(
            registry.client(),
            store,
            model_name=registry.model_name,
            to_version=body.to_version,
            actor=principal.name,
            reason=body.reason,
        ),
    )
    logger.info(
        "production of %s rolled back to v%s by %s", registry.model_name, version, principal.name
    )
    return RollbackPublic(
        model_name=registry.model_name,
        production_version=version,
        rolled_back_from=str(before.version) if before is not None else None,
    )


class PromoteCreate(BaseModel):
    """``POST /api/models/{version}/promote`` body."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, description="Why; recorded with the move.")


class PromotePublic(BaseModel):
    model_name: str
    production_version: str
    previous_version: str | None = Field(description="The version production pointed at before.")


@router.post(
    "/{version}/promote",
    response_model=PromotePublic,
    responses={
        404: {"description": "No such registered version"},
        409: {"description": "The version already is production"},
        503: {"description": "The MLflow registry failed"},
    },
)
def promote_version(
    version: Annotated[
        str, Path(pattern=r"^[0-9]{1,9}$", description="Registered model version, e.g. 3.")
    ],
    body: PromoteCreate,
    principal: deps.AdminPrincipal,
    registry: deps.RegistryDep,
    store: deps.StoreDep,
) -> PromotePublic:
    """Point ``production`` at ``version`` (role ``admin``), recorded in
    ``model_deployments`` with the caller's name and reason like every alias move (action
    ``promote``). Agents follow within one model check interval; roll back with
    ``POST /api/models/production/rollback``."""
    previous = _alias_move(
        registry,
        lambda: promote(
            registry.client(),
            store,
            model_name=registry.model_name,
            version=version,
            actor=principal.name,
            reason=body.reason,
        ),
    )
    logger.info(
        "production of %s promoted to v%s by %s (was v%s)",
        registry.model_name,
        version,
        principal.name,
        previous,
    )
    return PromotePublic(
        model_name=registry.model_name, production_version=version, previous_version=previous
    )


def _production_files(registry: ModelRegistry) -> ModelFiles:
    return _registry_call(registry, lambda: registry.files(PRODUCTION))


@router.get(
    "/production",
    response_model=ProductionModel,
    responses={
        304: {"description": "Unchanged since the ETag sent in If-None-Match"},
        503: {"description": "No production model registered (run `edgeloop init`)"},
    },
)
def read_production_model(
    _principal: deps.CurrentPrincipal,
    registry: deps.RegistryDep,
    settings: deps.SettingsDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The model agents should run: version, ONNX sha256, class names, input size, and the
    loop's uncertainty band (``EDGELOOP_UNCERTAINTY_LOW/HIGH``) agents flag detections with.

    Agents poll it (``EDGELOOP_AGENT_MODEL_CHECK_INTERVAL_S``): the answer carries an
    ``ETag``, and a request whose ``If-None-Match`` names it gets an empty 304 (RFC 9110,
    13.1.2), so an unchanged production model costs no body and no parsing.
    """
    files = _production_files(registry)
    model = ProductionModel(
        name=files.name,
        version=files.version,
        alias=PRODUCTION,
        sha256=files.onnx_sha256,
        onnx_url=f"{ONNX_PATH}?version={files.version}",
        class_names=files.class_names,
        imgsz=files.imgsz,
        uncertainty_low=settings.loop.uncertainty_low,
        uncertainty_high=settings.loop.uncertainty_high,
    )
    body = model.model_dump_json().encode()
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    named = {tag.strip() for tag in (if_none_match or "").split(",")}
    if etag in named or "*" in named:  # "*": any current representation (RFC 9110 13.1.2)
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(content=body, media_type="application/json", headers=headers)


@router.get(
    "/production/onnx",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        409: {"description": "Production moved to another version than the one asked for"},
        503: {"description": "No production model registered (run `edgeloop init`)"},
    },
)
def download_production_onnx(
    _agent: deps.AgentPrincipal,
    registry: deps.RegistryDep,
    version: str | None = Query(
        None, description="Expected production version; 409 when production moved since."
    ),
) -> FileResponse:
    """The production model's ONNX file (role ``agent``); headers carry version and sha256."""
    files = _production_files(registry)
    if version is not None and version != files.version:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=(
                f"production is now version {files.version}, not {version}; "
                "fetch /api/models/production again"
            ),
        )
    return FileResponse(
        files.onnx_path,
        media_type="application/octet-stream",
        filename=f"{files.name}-v{files.version}.onnx",
        headers={"X-Model-Version": files.version, "X-Model-Sha256": files.onnx_sha256},
    )
