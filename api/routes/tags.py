"""``/api/tags``: tags on frames and detections — set by people, suggested by the loop,
listed and searched.

Any role reads; tagging, untagging and asking for suggestions need ``labeler`` (or
``admin``). The browser's ``tag`` filter (``/api/browse/detections?tag=``) finds what is
tagged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import HTTPException, Query, status
from pydantic import BaseModel, Field, field_validator

from api.browse_models import MAX_IDS, ItemId
from api.deps import CurrentPrincipal, LabelerPrincipal, SettingsDep, StoreDep, secured_router
from api.search_index import SearchIndexDep, TextEmbedderDep
from api.tag_prompts import PromptTagsUnavailableError
from api.tag_prompts import suggest as prompt_tags
from edgeloop.store import browse, tags
from edgeloop.store.connection import transaction
from edgeloop.tag_prompts import record as record_prompt_tags
from edgeloop.vectors.versions import CorruptIndexError, IndexLockedError, IndexNotPublishedError

router = secured_router("/api/tags", tag="tags")


class TagTargets(BaseModel):
    frame_keys: list[ItemId] = Field(default_factory=list, max_length=MAX_IDS)
    detection_ids: list[ItemId] = Field(default_factory=list, max_length=MAX_IDS)


class TagRequest(TagTargets):
    tag: str = Field(max_length=128, description="Normalised: lower case, single spaces.")

    @field_validator("tag")
    @classmethod
    def _valid(cls, value: str) -> str:
        return tags.normalise(value)


class TagCountPublic(BaseModel):
    tag: str
    frames: int
    detections: int
    suggested: int


@router.get("", response_model=list[TagCountPublic])
def read_tags(
    _principal: CurrentPrincipal,
    store: StoreDep,
    prefix: Annotated[str | None, Query(max_length=64, description="Tags starting so.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[TagCountPublic]:
    """Tags in use, most used first, with the frames and detections tagged."""
    with store.connect() as con:
        rows = tags.counts(con=con, prefix=prefix, limit=limit)
    return [TagCountPublic(**r) for r in rows]


def _targets_given(body: TagTargets) -> None:
    if not body.frame_keys and not body.detection_ids:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail="give frame_keys and/or detection_ids"
        )


@router.post("", status_code=status.HTTP_201_CREATED)
def add_tag(principal: LabelerPrincipal, store: StoreDep, body: TagRequest) -> dict[str, Any]:
    """Tag frames and/or detections (a person's tag; it replaces a suggestion of the same
    text). Ids not stored are ignored; ``tagged`` counts the rows added or changed."""
    _targets_given(body)
    with store.connect() as con, transaction(con):
        tagged = tags.add(
            con=con,
            frame_keys=body.frame_keys,
            detection_ids=body.detection_ids,
            tag=body.tag,
            source="person",
            created_by=principal.name,
            now=datetime.now(UTC),
        )
    return {"tag": body.tag, "tagged": tagged}


@router.delete("", responses={404: {"description": "No such tag on that target"}})
def remove_tag(
    _principal: LabelerPrincipal,
    store: StoreDep,
    target_kind: Literal["frame", "detection"],
    target_id: Annotated[str, Query(max_length=220)],
    tag: Annotated[str, Query(max_length=128)],
) -> dict[str, str]:
    """Take a tag off one frame or detection (a person's or a suggestion)."""
    try:
        tag = tags.normalise(tag)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    with store.connect() as con:
        removed = tags.remove(con=con, target_kind=target_kind, target_id=target_id, tag=tag)
    if not removed:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"{target_kind} {target_id} has no tag {tag!r}"
        )
    return {"removed": tag}


@router.post("/suggest")
def suggest_tags(
    principal: LabelerPrincipal,
    store: StoreDep,
    settings: SettingsDep,
    search_index: SearchIndexDep,
    text_embedder: TextEmbedderDep,
    body: TagTargets,
) -> dict[str, Any]:
    """The loop's suggestions for the frames given (and the frames of the detections
    given): each detection's class, each frame's scene (``scene:<camera_id>``) and, with
    an OpenCLIP embedder, each indexed crop's best tag prompt above the threshold
    (``EDGELOOP_TAG_PROMPTS``, ``EDGELOOP_TAG_PROMPT_MIN_SCORE``). ``prompts`` says why
    no prompt was matched when none could be."""
    _targets_given(body)
    now = datetime.now(UTC)
    with store.connect() as con:
        frame_keys, detections = browse.with_frames(
            con=con, frame_keys=body.frame_keys, detection_ids=body.detection_ids
        )
        with transaction(con):
            suggested = tags.suggest_from_detections(
                con=con, frame_keys=frame_keys, created_by="loop", now=now
            )
    note = None
    matches = []
    try:
        matches = prompt_tags(
            loop=settings.loop,
            search_index=search_index,
            text_embedder=text_embedder,
            detection_ids=detections,
        )
    except PromptTagsUnavailableError as exc:
        note = str(exc)
    except (IndexNotPublishedError, CorruptIndexError, IndexLockedError) as exc:
        note = f"no crop index to match tag prompts against: {exc}"
    if matches:
        with store.connect() as con, transaction(con):
            suggested += record_prompt_tags(con=con, matches=matches, created_by="loop", now=now)
    del principal
    return {"suggested": suggested, "prompt_matches": len(matches), "prompts": note}
