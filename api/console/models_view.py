"""The console's models panel: registered versions (MLflow) with each version's own held-out
evaluation, the alias history (DuckDB ``model_deployments``), and which camera runs which
version.

A version's evaluation is read from the version itself, never from the newest alias move:
a hand promotion or a rollback records no metrics (``edgeloop.registry.promote`` records
``promoted_from``), so "the newest move's metrics" would lose a version's evidence the
first time an admin moved an alias. The source, in order:

1. its MLflow version tags (``heldout_*``, gains, corrections learned, regressions), which
   ``model_evaluation`` sets on every candidate (``edgeloop.registry.heldout_evidence``);
2. the newest alias move of the version that recorded an evaluation (the ``model_promotion``
   asset's record, ``edgeloop.store.deployments.evaluation_records``), which also holds the
   production metrics it was compared with and the verdict.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Protocol

from api.console import schemas
from api.models import DeploymentPublic
from api.settings import ApiSettings
from edgeloop.registry import COMPARED_WITH_TAG, PRODUCTION, STAGING, heldout_evidence
from edgeloop.store import AnyStore, agents, analytics, deployments

logger = logging.getLogger(__name__)

DEPLOYMENTS_SHOWN = 50
GAINS = ("mAP50-95", "mAP50")
"""Gate metrics whose candidate-minus-production gain interval is shown, in this order."""


class RegistryLike(Protocol):
    """What the models panel needs of ``api.model_registry.ModelRegistry``."""

    @property
    def model_name(self) -> str: ...

    def client(self) -> Any: ...


def _mlflow_version_url(settings: ApiSettings, model_name: str, version: str) -> str:
    return f"{settings.loop.mlflow_ui_url.rstrip('/')}/#/models/{model_name}/versions/{version}"


def _registry_versions(registry: RegistryLike) -> tuple[list[Any], dict[str, list[str]]]:
    """The registered versions of the model, and version -> its aliases.

    Aliases come from the registered model (``search_model_versions`` leaves a version's
    ``aliases`` empty on the sqlite store); no registered model yet is no version.
    """
    from mlflow.exceptions import MlflowException

    client = registry.client()
    try:
        model = client.get_registered_model(registry.model_name)
    except MlflowException:
        return [], {}
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    found = client.search_model_versions(f"name='{registry.model_name}'", max_results=200)
    return list(found), aliases


def _share(value: Any) -> str | None:
    """A recorded share ``{"count": 3, "n": 10}`` as ``0.30 (3/10)`` (as its version tag
    reads), ``n/a (n=0)`` without evidence; None when not recorded."""
    if not isinstance(value, dict) or not {"count", "n"} <= set(value):
        return None
    count, n = int(value["count"]), int(value["n"])
    return f"{count / n:.2f} ({count}/{n})" if n else "n/a (n=0)"


def _interval(value: Any) -> str | None:
    """A recorded gain ``{"point", "low", "high"}`` as ``+0.0170 [-0.0040, +0.0380]``."""
    if not isinstance(value, dict) or not {"point", "low", "high"} <= set(value):
        return None
    return f"{value['point']:+.4f} [{value['low']:+.4f}, {value['high']:+.4f}]"


def version_evaluation(
    tags: dict[str, str], record: dict[str, Any]
) -> schemas.VersionEvaluationPublic | None:
    """A version's own held-out evaluation from its MLflow tags, else from the alias move
    that recorded it (``record``: ``deployments.evaluation_records``); None when the version
    was never evaluated as a candidate (the seed)."""
    metrics, tagged = heldout_evidence(tags)
    recorded = record.get("evidence")
    evidence: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    if not metrics and not tagged and not record:
        return None
    images = tagged.get("heldout_images", record.get("val_images"))
    gains = {
        name: gain
        for name in GAINS
        if (gain := tagged.get(f"heldout_gain_{name}") or _interval(evidence.get(f"gain_{name}")))
    }
    production = record.get("production")
    return schemas.VersionEvaluationPublic(
        source="MLflow version tags" if metrics or tagged else "alias move record",
        compared_with=tags.get(COMPARED_WITH_TAG) or record.get("production_version"),
        metrics=metrics or dict(record.get("candidate") or {}),
        production_metrics=dict(production) if isinstance(production, dict) else {},
        heldout_images=int(images) if images is not None else None,
        gains=gains,
        corrections_learned=tagged.get("corrections_learned")
        or _share(evidence.get("corrections_learned")),
        regressions=tagged.get("regressions") or _share(evidence.get("regressions")),
        box_regressions=tagged.get("box_regressions") or _share(evidence.get("box_regressions")),
        verdict=record.get("verdict"),
    )


def models_panel(
    store: AnyStore, settings: ApiSettings, registry: RegistryLike, *, now: datetime | None = None
) -> schemas.ModelsPublic:
    """Registered versions (MLflow) with their own held-out evaluation and promotion outcome,
    the alias history (who, when, why), and which cameras run which version.

    A registry that cannot be listed is reported in ``registry_error`` (the alias history
    from DuckDB is still shown)."""
    now = now or datetime.now(UTC)
    name = registry.model_name
    with store.connect() as con:
        moves = deployments.recent(con=con, model_name=name, limit=DEPLOYMENTS_SHOWN)
        beats = agents.latest(con=con)
        latest = analytics.camera_latest(con=con)
        production = deployments.alias_at(con=con, model_name=name, alias=PRODUCTION, at=now)
        staging = deployments.alias_at(con=con, model_name=name, alias=STAGING, at=now)
        records = deployments.evaluation_records(con=con, model_name=name)
    cameras: dict[str, schemas.CameraVersionPublic] = {
        r["camera_id"]: schemas.CameraVersionPublic(
            camera_id=r["camera_id"],
            model_version=r["model_version"],
            source="frames",
            last_frame_at=r["captured_at"],
        )
        for r in latest
    }
    for beat in sorted(beats, key=lambda b: b["received_at"]):
        if beat["model_version"] is not None:
            known = cameras.get(beat["camera_id"])
            cameras[beat["camera_id"]] = schemas.CameraVersionPublic(
                camera_id=beat["camera_id"],
                model_version=beat["model_version"],
                source="heartbeat",
                last_frame_at=known.last_frame_at if known else None,
            )
    error: str | None = None
    registered: list[Any] = []
    alias_map: dict[str, list[str]] = {}
    try:
        registered, alias_map = _registry_versions(registry)
    except Exception as exc:  # the panel says what failed; the DuckDB side still shows
        logger.warning("MLflow registry could not be listed: %s", exc)
        error = f"MLflow registry at {settings.loop.tracking_uri} could not be listed: {exc}"
    versions = []
    for mv in sorted(registered, key=lambda v: int(v.version), reverse=True):
        version = str(mv.version)
        aliases = alias_map.get(version, [])
        # The registry is the truth for aliases when it answers.
        production = version if PRODUCTION in aliases else production
        staging = version if STAGING in aliases else staging
        tags = dict(mv.tags or {})
        versions.append(
            schemas.ModelVersionRowPublic(
                version=version,
                aliases=sorted(aliases),
                created_at=(
                    datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC)
                    if mv.creation_timestamp
                    else None
                ),
                run_id=mv.run_id,
                description=mv.description or None,
                promotion=tags.get("promotion"),
                mlflow_url=_mlflow_version_url(settings, name, version),
                evaluation=version_evaluation(tags, records.get(version, {})),
                cameras=sorted(c for c, v in cameras.items() if v.model_version == version),
            )
        )
    return schemas.ModelsPublic(
        model_name=name,
        production_version=production,
        staging_version=staging,
        registry_error=error,
        versions=versions,
        deployments=[DeploymentPublic(**m) for m in moves],
        cameras=sorted(cameras.values(), key=lambda c: c.camera_id),
        mlflow_ui_url=settings.loop.mlflow_ui_url,
    )
