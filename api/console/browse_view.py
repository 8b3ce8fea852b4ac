"""The console's dataset browser panel (``/console/browse``): a grid of detections (frame
thumbnails with the box drawn, ``api.routes.thumbnails``) under filters that combine,
paged with counts; "more like this" (the similarity search under the same filters) and
text search shown as the same grid. Selecting, tagging and sending to the labeling queue
run in the browser (``static/browse.js``) against ``/api/tags`` and ``/api/browse/queue``.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from api.browse_models import ID_MAX_CHARS, BrowsePagePublic, browse_filter, row_public
from api.deps import MAX_OFFSET, SettingsDep, StoreDep
from api.routes.browse import SimilarDep
from edgeloop.store import browse
from edgeloop.store.browse import BrowseFilter

PAGE_SIZES = (24, 48, 96)
TEXT_SEARCH_NEEDS = (
    "Text search needs an OpenCLIP model: set EDGELOOP_CLIP_MODEL (e.g. ViT-B-32) and "
    "EDGELOOP_CLIP_PRETRAINED (a tag or a local checkpoint path), then rematerialize "
    "crop_embeddings."
)


class BrowsePanelPublic(BaseModel):
    """What the browser panel shows: one page of the grid (or the search's hits), or why
    the search could not run."""

    page: BrowsePagePublic | None
    error: str | None = Field(None, description="Why the search could not run.")
    similar_to: str | None = None
    text: str | None = None
    text_search: str | None = Field(
        None, description="Why text search is off (the settings that enable it); null when on."
    )
    prev_url: str | None = None
    next_url: str | None = None
    back_url: str = Field(description="The grid under the same filters, without a search.")


def _url(request: Request, **changes: object) -> str:
    query = {k: v for k, v in request.query_params.items() if k not in changes}
    query.update({k: str(v) for k, v in changes.items() if v is not None})
    return "/console/browse" + (f"?{urlencode(query)}" if query else "")


def browse_panel(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    similar: SimilarDep,
    where: Annotated[BrowseFilter, Depends(browse_filter)],
    similar_to: Annotated[
        str | None, Query(max_length=ID_MAX_CHARS, description="More like this detection.")
    ] = None,
    text: Annotated[str | None, Query(max_length=200, description="Text search.")] = None,
    limit: Annotated[int, Query(ge=1, le=max(PAGE_SIZES))] = 48,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> BrowsePanelPublic:
    """One page of detections under the filters, newest first; with ``similar_to`` or
    ``text``, the most similar crops under the same filters, best first."""
    text = text or None
    panel = BrowsePanelPublic(
        page=None,
        similar_to=similar_to or None,
        text=text,
        text_search=None if settings.loop.clip_model else TEXT_SEARCH_NEEDS,
        back_url=_url(request, similar_to=None, text=None, offset=None),
    )
    if panel.similar_to or text:
        try:
            panel.page = similar.page(
                detection_id=panel.similar_to,
                text=None if panel.similar_to else text,
                limit=limit,
            )
        except HTTPException as exc:
            panel.error = str(exc.detail)
        return panel
    with store.connect() as con:
        rows, count, capped = browse.page(con=con, where=where, limit=limit, offset=offset)
    panel.page = BrowsePagePublic(
        count=count,
        count_capped=capped,
        limit=limit,
        offset=offset,
        data=[row_public(r) for r in rows],
    )
    if offset > 0:
        panel.prev_url = _url(request, offset=max(offset - limit, 0))
    if offset + limit < count:
        panel.next_url = _url(request, offset=offset + limit)
    return panel
