"""The crop index on a Qdrant server (``EDGELOOP_QDRANT_URL``): one collection per version,
and an alias on the published one (qdrant-client's aliases API)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgeloop.vectors.versions import PublishedIndex

if TYPE_CHECKING:
    from qdrant_client import QdrantClient


def aliased_collection(client: QdrantClient, alias: str) -> str | None:
    """The collection ``alias`` points at on the server, or None when there is no such alias."""
    return next(
        (a.collection_name for a in client.get_aliases().aliases if a.alias_name == alias),
        None,
    )


def read_alias(client: QdrantClient, alias: str, location: str) -> PublishedIndex | None:
    """The version ``alias`` points at, from its collection's metadata, or None before the
    first publish; ``location`` is reported as the index's location (the server URL)."""
    target = aliased_collection(client, alias)
    if target is None:
        return None
    info = client.get_collection(target)
    meta = dict(info.config.metadata or {})
    return PublishedIndex(
        version=str(meta.get("version", target.rsplit("_", 1)[-1])),
        collection=target,
        embedder=str(meta.get("embedder", "")),
        dims=int(meta.get("dims", 0)),
        points=int(info.points_count or 0),
        published_at=str(meta.get("published_at", "")),
        location=location,
        digest=str(meta.get("digest", "")),
        engine="qdrant-server",
    )


def move_alias(client: QdrantClient, alias: str, collection: str) -> None:
    """Point ``alias`` at ``collection`` in one atomic ``update_collection_aliases`` call
    (the old alias, if any, is deleted in the same call)."""
    from qdrant_client import models

    operations: list[Any] = []
    if aliased_collection(client, alias) is not None:
        operations.append(
            models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
        )
    operations.append(
        models.CreateAliasOperation(
            create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)
        )
    )
    client.update_collection_aliases(change_aliases_operations=operations)
