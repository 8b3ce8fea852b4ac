"""``/api/search``: crops that look alike, from the published crop index.

The ``crop_embeddings`` asset publishes a new index version and flips a pointer; the
API keeps the published version open (``api.search_index.SearchIndex``) and reopens it
when the pointer moves, so a request costs one vector lookup and one filtered search.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import HTTPException, Query, status

from api.deps import CurrentPrincipal, SettingsDep, secured_router
from api.search_index import SearchIndexDep, TextEmbedderDep
from edgeloop.vectors.versions import CorruptIndexError, IndexLockedError, IndexNotPublishedError

router = secured_router("/api/search", tag="search")


@router.get(
    "/similar",
    responses={
        400: {"description": "Neither or both queries, or text search without OpenCLIP"},
        404: {"description": "The detection is not in the published index"},
        503: {
            "description": "No index published yet, the published one cannot be opened, "
            "or the text embedder's weights cannot be loaded"
        },
    },
)
def similar_crops(
    _principal: CurrentPrincipal,
    settings: SettingsDep,
    search_index: SearchIndexDep,
    text_embedder: TextEmbedderDep,
    detection_id: Annotated[
        str | None, Query(description="A detection whose crop is the query (image-to-image).")
    ] = None,
    text: Annotated[
        str | None, Query(description="A text query; needs an OpenCLIP embedder.")
    ] = None,
    camera_id: Annotated[str | None, Query(description="Only crops from this camera.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 12,
) -> dict[str, Any]:
    """Crops most similar (cosine) to a detection's crop or to a text, best first.

    Each hit: ``frame_key``, ``detection_id``, ``camera_id``, ``class_name``,
    ``confidence``, ``bbox`` (xyxy px of the original frame), ``score`` in [-1, 1].
    400 when neither or both queries are given, or for text with the offline
    MobileNetV2 embedder; 404 when the detection is not indexed; 503 before the first
    ``crop_embeddings`` materialization, when the published index cannot be opened
    (unreadable pointer, version locked by another process), or when the configured
    OpenCLIP weights cannot be loaded. The text embedder is built by the first text query
    and kept (``api.search_index.TextQueryEmbedder``).
    """
    from edgeloop.embeddings import TextEmbeddingUnsupportedError, embedder_name

    if (detection_id is None) == (text is None):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail="give exactly one of detection_id or text"
        )
    try:
        with search_index.reader() as reader:
            published = reader.info
            if detection_id is not None:
                vector = reader.vector_of(detection_id)
                if vector is None:
                    raise HTTPException(
                        status.HTTP_404_NOT_FOUND,
                        detail=f"detection {detection_id} is not in index {published.version}; "
                        "materialize crop_embeddings to index newer crops",
                    )
            else:
                if settings.loop.clip_model is None:
                    raise HTTPException(
                        status.HTTP_400_BAD_REQUEST,
                        detail="text search needs an OpenCLIP embedder: set EDGELOOP_CLIP_MODEL "
                        "(e.g. ViT-B-32) and EDGELOOP_CLIP_PRETRAINED (a tag or a local "
                        "checkpoint path), then rematerialize crop_embeddings; the offline "
                        "default embedder (MobileNetV2) answers image-to-image queries only",
                    )
                configured = embedder_name(settings.loop)
                if configured != published.embedder:
                    raise HTTPException(
                        status.HTTP_400_BAD_REQUEST,
                        detail=f"the published index was built with {published.embedder}, the "
                        f"configured embedder is {configured}; rematerialize crop_embeddings",
                    )
                try:
                    vector = text_embedder.embed(text or "")
                except TextEmbeddingUnsupportedError as exc:
                    raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from exc
                except (ValueError, RuntimeError) as exc:  # the weights cannot be loaded
                    raise HTTPException(
                        status.HTTP_503_SERVICE_UNAVAILABLE,
                        detail=f"text search is unavailable: {exc}",
                    ) from exc
            hits = reader.search(vector, limit, camera_id=camera_id)
    except IndexNotPublishedError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="no crop index is published yet: materialize crop_embeddings in Dagster",
        ) from exc
    except (CorruptIndexError, IndexLockedError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from exc
    return {"index_version": published.version, "embedder": published.embedder, "hits": hits}
