"""``/api/browse``: the dataset browser's data — detections filtered on every axis, frames
and detections fetched by id (up to ``MAX_IDS``), crops like a crop or a text under the
same filters, and hand-picked frames sent to the labeling queue.

Any role reads; sending to the queue needs ``labeler`` (or ``admin``).
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Response, status
from pydantic import BaseModel, Field, ValidationError

from api.browse_models import (
    ID_MAX_CHARS,
    ID_PATTERN,
    MAX_IDS,
    BrowsePagePublic,
    ItemId,
    ItemsPublic,
    ItemsRequest,
    browse_filter,
    item_public,
    row_public,
)
from api.deps import (
    MAX_OFFSET,
    CurrentPrincipal,
    LabelerPrincipal,
    SettingsDep,
    StoreDep,
    secured_router,
)
from api.routes.search import similar_crops
from api.search_index import SearchIndexDep, TextEmbedderDep
from edgeloop.store import AnyStore, browse, queue_requests
from edgeloop.store.browse import BrowseFilter
from edgeloop.store.connection import transaction

router = secured_router("/api/browse", tag="browse")

FilterDep = Annotated[BrowseFilter, Depends(browse_filter)]
PageLimit = Annotated[int, Query(ge=1, le=200, description="Detections per page.")]
PageOffset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Detections skipped.")]
SEARCH_HITS = 100
"""Nearest crops a similarity search asks the index for before the browser's filters
(the search route's own limit); the filtered hits are shown best first."""
_ID = re.compile(ID_PATTERN)


def _fetch(store: AnyStore, ids: list[str]) -> Response:
    """``ItemsPublic`` of ``ids``, serialised here: FastAPI's own pass over the returned
    model (a dump, a re-validation and the JSON) cost 4.4 ms for 100 items with 435
    detections against 0.9 ms for ``model_dump_json`` (the model is built and validated
    once, here)."""
    unique = list(dict.fromkeys(ids))
    with store.connect() as con:
        found = browse.fetch(con=con, ids=unique)
    body = ItemsPublic(
        items=[item_public(i, found[i]) for i in unique if i in found],
        missing=[i for i in unique if i not in found],
    )
    return Response(content=body.model_dump_json(), media_type="application/json")


@router.get("/items", response_model=ItemsPublic)
def read_items(
    _principal: CurrentPrincipal,
    store: StoreDep,
    ids: Annotated[
        str,
        Query(
            max_length=MAX_IDS * (ID_MAX_CHARS + 1),
            description=f"Up to {MAX_IDS} frame keys and/or detection ids, comma-separated.",
        ),
    ],
) -> Response:
    """Frames and detections by id, with their metadata (camera, capture time, model
    version, state, tags, detections with boxes in px) and thumbnail URLs. 422 for more
    than ``MAX_IDS`` ids or an id that is not a frame key or detection id."""
    wanted = [i.strip() for i in ids.split(",") if i.strip()]
    try:
        ItemsRequest(ids=wanted)
    except ValidationError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"ids: 1 to {MAX_IDS} frame keys or detection ids (letters, digits, "
            f"_ . : -), comma-separated; {_first_problem(wanted)}",
        ) from exc
    return _fetch(store, wanted)


def _first_problem(ids: list[str]) -> str:
    if not ids:
        return "none given"
    if len(ids) > MAX_IDS:
        return f"got {len(ids)}"
    bad = next(i for i in ids if len(i) > ID_MAX_CHARS or not _ID.match(i))
    return f"not an id: {bad[:64]!r}"


@router.post("/items", response_model=ItemsPublic)
def fetch_items(_principal: CurrentPrincipal, store: StoreDep, body: ItemsRequest) -> Response:
    """As ``GET /api/browse/items``, the ids in a JSON body ``{"ids": [...]}``."""
    return _fetch(store, list(body.ids))


@router.get("/detections", response_model=BrowsePagePublic)
def read_detections(
    _principal: CurrentPrincipal,
    store: StoreDep,
    where: FilterDep,
    limit: PageLimit = 48,
    offset: PageOffset = 0,
) -> BrowsePagePublic:
    """Detections matching every filter given, newest capture first, one page; ``count``
    over all pages."""
    with store.connect() as con:
        rows, count, capped = browse.page(con=con, where=where, limit=limit, offset=offset)
    return BrowsePagePublic(
        count=count,
        count_capped=capped,
        limit=limit,
        offset=offset,
        data=[row_public(r) for r in rows],
    )


class SimilarSearch:
    """A FastAPI dependency: the similarity search (``GET /api/search/similar``'s search
    and errors) under the browser's filters, for the JSON route and the console panel."""

    def __init__(
        self,
        principal: CurrentPrincipal,
        settings: SettingsDep,
        search_index: SearchIndexDep,
        text_embedder: TextEmbedderDep,
        store: StoreDep,
        where: FilterDep,
    ) -> None:
        self.principal, self.settings, self.store, self.where = principal, settings, store, where
        self.search_index, self.text_embedder = search_index, text_embedder

    def page(self, *, detection_id: str | None, text: str | None, limit: int) -> BrowsePagePublic:
        """The crops most like a detection's crop or a text among the ``SEARCH_HITS``
        nearest, kept when they match the filters, best first, at most ``limit``.

        Raises:
            HTTPException: the search route's 400 / 404 / 503.
        """
        found = similar_crops(
            self.principal,
            self.settings,
            self.search_index,
            self.text_embedder,
            detection_id=detection_id,
            text=text,
            camera_id=self.where.camera_id,
            limit=SEARCH_HITS,
        )
        scores = {h["detection_id"]: float(h["score"]) for h in found["hits"]}
        with self.store.connect() as con:
            rows, _, _ = browse.page(
                con=con,
                where=dataclasses.replace(self.where, detection_ids=tuple(scores)),
                limit=SEARCH_HITS,
                offset=0,
            )
        rows.sort(key=lambda r: -scores[r["detection_id"]])
        return BrowsePagePublic(
            count=len(rows),
            limit=limit,
            offset=0,
            data=[row_public(r, scores[r["detection_id"]]) for r in rows[:limit]],
            query=f"like {detection_id}" if detection_id else f"text: {text}",
            index_version=found["index_version"],
        )


SimilarDep = Annotated[SimilarSearch, Depends()]


@router.get(
    "/similar",
    response_model=BrowsePagePublic,
    responses={
        400: {"description": "Neither or both queries, or text search without OpenCLIP"},
        404: {"description": "The detection is not in the published index"},
        503: {"description": "No index published yet, or it cannot be opened"},
    },
)
def read_similar(
    similar: SimilarDep,
    detection_id: Annotated[str | None, Query(max_length=ID_MAX_CHARS)] = None,
    text: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=SEARCH_HITS)] = 24,
) -> BrowsePagePublic:
    """ "More like this": crops most similar to a detection's crop (or to a text, with an
    OpenCLIP embedder) among the ``SEARCH_HITS`` nearest, kept when they match every
    filter given, best first."""
    return similar.page(detection_id=detection_id, text=text, limit=limit)


@router.get("/facets")
def read_facets(_principal: CurrentPrincipal, store: StoreDep) -> dict[str, list[str]]:
    """The cameras, classes and model versions the filters offer."""
    with store.connect() as con:
        return browse.facets(con=con)


class QueueRequest(BaseModel):
    frame_keys: list[ItemId] = Field(min_length=1, max_length=MAX_IDS)
    priority: float = Field(
        1.0,
        ge=0,
        le=1e6,
        description="Higher is labeled sooner; the loop's own items are in [0, 1].",
    )


class QueueAnswer(BaseModel):
    queued: list[str] = Field(description="Newly queued frames.")
    raised: list[str] = Field(description="Already waiting; now pending at >= the priority.")
    labeled: list[str] = Field(description="Already labeled; left as they are.")
    unknown: list[str] = Field(description="Not stored.")


@router.post("/queue", response_model=QueueAnswer)
def send_to_queue(principal: LabelerPrincipal, store: StoreDep, body: QueueRequest) -> QueueAnswer:
    """Send hand-picked frames to the labeling queue with a priority (labeler or admin)."""
    del principal
    with store.connect() as con, transaction(con):
        answer = queue_requests.send(
            con=con, frame_keys=body.frame_keys, priority=body.priority, now=datetime.now(UTC)
        )
    return QueueAnswer(**answer)
