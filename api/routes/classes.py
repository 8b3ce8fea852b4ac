"""``/api/classes``: the site's classes (issue 18), read by anyone with a token and changed
by admins: add, rename, merge, retire, each recorded with the token's name and a reason
(``edgeloop.store.classes``).

The list is seeded from the production model's class names the first time anything asks
for it (``site_class_names``), so a site that had only the model's classes keeps them,
with the same order. Refusals are 4xx that say what to do: 404 for an unknown class, 409
for a change the current list does not allow (a name some class has or had, merging a
class into itself, retiring the last active class), 422 for a bad name or reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from api import crud, deps
from api.deps import secured_router
from api.model_registry import ModelRegistry
from edgeloop.registry import PRODUCTION, ModelNotFoundError
from edgeloop.store import Connection, classes, deployments
from edgeloop.store.classes import (
    MAX_NAME_LEN,
    ClassChangeError,
    ClassNameError,
    SiteClass,
    UnknownClassError,
)

logger = logging.getLogger(__name__)

router = secured_router("/api/classes", tag="classes")

ClassId = Annotated[int, Path(ge=1, le=2**62, description="The class's stable id.")]
Reason = Annotated[
    str, Field(min_length=1, max_length=500, description="Why; recorded with the change.")
]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LEN, description="Class name.")]


def site_class_names(con: Connection, registry: ModelRegistry) -> list[str]:
    """The active classes' names (what labels may use, by class id), seeding the list from
    the production model's names on first use. Before any model is registered (nothing to
    seed from), the class names seen in the detections, unsaved."""
    names = classes.active_names(con=con)
    if names:
        return names
    try:
        production = registry.class_names(PRODUCTION, marker=deployments.latest_move_id(con=con))
    except ModelNotFoundError:
        return crud.detection_class_names(con=con)
    except Exception:
        logger.exception("could not read the production model's class names from MLflow")
        return crud.detection_class_names(con=con)
    if classes.seed(con=con, names=production):
        logger.info("site classes seeded from the production model: %s", production)
    return classes.active_names(con=con)


class SiteClassPublic(BaseModel):
    """One class: stable id, current name, status (active, merged, retired)."""

    model_config = ConfigDict(from_attributes=True)

    class_id: int
    name: str
    status: str
    merged_into: int | None
    created_at: datetime
    updated_at: datetime


class ClassChangePublic(BaseModel):
    """One entry of the append-only change log."""

    change_id: int
    changed_at: datetime
    action: str = Field(description="seed, add, rename, merge or retire.")
    class_id: int
    name: str = Field(description="The class's name after the change.")
    previous_name: str | None
    into_class_id: int | None
    actor: str = Field(description="Who: the token's name.")
    reason: str


class ClassesPublic(BaseModel):
    """``GET /api/classes``."""

    data: list[SiteClassPublic]
    active: list[str] = Field(description="Active names by class id: what labels may use.")
    changes: list[ClassChangePublic] = Field(description="The newest changes, newest first.")


class ClassCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    reason: Reason


class ClassRename(BaseModel):
    model_config = ConfigDict(extra="forbid")
    new_name: Name
    reason: Reason


class ClassMerge(BaseModel):
    model_config = ConfigDict(extra="forbid")
    into: int | Name = Field(description="The active class (id or name) that takes it in.")
    reason: Reason


class ClassRetire(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason


_REFUSALS: dict[int | str, dict[str, str]] = {
    404: {"description": "No such class"},
    409: {"description": "The change is refused by the current list (see detail)"},
    422: {"description": "Invalid name or reason"},
}


def _change(
    store: deps.StoreDep, registry: ModelRegistry, change: Callable[[Connection], SiteClass]
) -> SiteClassPublic:
    with store.connect() as con:
        site_class_names(con, registry)
        try:
            changed = change(con)
        except UnknownClassError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
        except ClassNameError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
        except ClassChangeError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    return SiteClassPublic.model_validate(changed)


@router.get("", response_model=ClassesPublic)
def read_classes(
    _principal: deps.CurrentPrincipal,
    store: deps.StoreDep,
    registry: deps.RegistryDep,
    changes: Annotated[int, Query(ge=0, le=1000, description="How many log entries.")] = 50,
) -> ClassesPublic:
    """Every class (active, merged, retired) by id, the active names, and the change log."""
    with store.connect() as con:
        site_class_names(con, registry)
        return ClassesPublic(
            data=[SiteClassPublic.model_validate(c) for c in classes.list_classes(con=con)],
            active=classes.active_names(con=con),
            changes=[ClassChangePublic(**c) for c in classes.changes(con=con, limit=changes)],
        )


@router.post(
    "", response_model=SiteClassPublic, status_code=status.HTTP_201_CREATED, responses=_REFUSALS
)
def add_class(
    body: ClassCreate,
    principal: deps.AdminPrincipal,
    store: deps.StoreDep,
    registry: deps.RegistryDep,
) -> SiteClassPublic:
    """Add an active class (role ``admin``): labelable at once, trained from the next
    dataset version (a model with a new head)."""
    return _change(
        store,
        registry,
        lambda con: classes.add(con=con, name=body.name, actor=principal.name, reason=body.reason),
    )


@router.post("/{class_id}/rename", response_model=SiteClassPublic, responses=_REFUSALS)
def rename_class(
    class_id: ClassId,
    body: ClassRename,
    principal: deps.AdminPrincipal,
    store: deps.StoreDep,
    registry: deps.RegistryDep,
) -> SiteClassPublic:
    """Rename a class (role ``admin``); labels given the old name count under the new one
    from the next dataset version."""
    return _change(
        store,
        registry,
        lambda con: classes.rename(
            con=con, ref=class_id, new_name=body.new_name, actor=principal.name, reason=body.reason
        ),
    )


@router.post("/{class_id}/merge", response_model=SiteClassPublic, responses=_REFUSALS)
def merge_class(
    class_id: ClassId,
    body: ClassMerge,
    principal: deps.AdminPrincipal,
    store: deps.StoreDep,
    registry: deps.RegistryDep,
) -> SiteClassPublic:
    """Merge a class into another, active one (role ``admin``); answers the class it went
    into. Its labels count as that class from the next dataset version."""
    return _change(
        store,
        registry,
        lambda con: classes.merge(
            con=con, ref=class_id, into=body.into, actor=principal.name, reason=body.reason
        ),
    )


@router.post("/{class_id}/retire", response_model=SiteClassPublic, responses=_REFUSALS)
def retire_class(
    class_id: ClassId,
    body: ClassRetire,
    principal: deps.AdminPrincipal,
    store: deps.StoreDep,
    registry: deps.RegistryDep,
) -> SiteClassPublic:
    """Retire a class (role ``admin``): no longer labelable; its boxes are left out of the
    dataset versions built from now on (older versions keep them)."""
    return _change(
        store,
        registry,
        lambda con: classes.retire(con=con, ref=class_id, actor=principal.name, reason=body.reason),
    )
