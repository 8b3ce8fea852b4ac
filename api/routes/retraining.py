"""``/api/retraining``: the seed's retrain rules evaluated now, and a manual trigger."""

from __future__ import annotations

import logging

from fastapi import HTTPException, status

from api import crud, deps
from api import models as schemas
from api.dagster_launch import RETRAIN_JOB, is_unreachable, launch_retrain
from api.deps import secured_router
from edgeloop.orchestration import ACTOR_TAG, TRIGGER_TAG, StackMismatchError
from edgeloop.store import labels, retraining

logger = logging.getLogger(__name__)

router = secured_router("/api/retraining", tag="retraining")


@router.get("/conditions", response_model=schemas.RetrainingConditionsPublic)
def read_conditions(
    _principal: deps.CurrentPrincipal, settings: deps.SettingsDep, store: deps.StoreDep
) -> schemas.RetrainingConditionsPublic:
    """Labels since the last training run against the threshold, the latest drift report of
    each camera with the seed's verdict, the drift-retrain minimum and cooldown, whether a
    retrain is due and why, recent events."""
    with store.connect() as con:
        conditions = crud.retrain_conditions(con=con, loop=settings.loop)
        events = crud.recent_retraining_events(con=con)
    return schemas.RetrainingConditionsPublic(**conditions.public_fields(), recent_events=events)


@router.post(
    "/trigger",
    response_model=schemas.RetrainingTriggerPublic,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        409: {
            "description": (
                "The Dagster at EDGELOOP_API_DAGSTER_URL serves another stack (another data "
                "folder): nothing launched"
            )
        },
        502: {"description": "Dagster refused the launch (job missing, bad config)"},
        503: {"description": "Dagster unreachable (start it with `make up`)"},
    },
)
def trigger_retraining(
    principal: deps.AdminPrincipal,
    settings: deps.SettingsDep,
    store: deps.StoreDep,
    dagster: deps.DagsterDep,
    body: schemas.RetrainingTriggerCreate | None = None,
) -> schemas.RetrainingTriggerPublic:
    """Launch Dagster's ``retrain_job`` now (role ``admin``) and record the event; only on
    this stack's Dagster (``api.dagster_launch.check_stack``)."""
    reason = (body or schemas.RetrainingTriggerCreate()).reason
    try:
        run_id = launch_retrain(
            dagster,
            settings,
            tags={TRIGGER_TAG: "manual", ACTOR_TAG: principal.name},
        )
    except StackMismatchError as exc:
        logger.warning("retrain trigger by %s refused: %s", principal.name, exc)
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    except Exception as exc:
        if is_unreachable(exc):
            logger.warning("Dagster at %s unreachable: %s", settings.dagster_url, exc)
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                detail=(
                    f"Dagster is not reachable at {settings.dagster_url}; start it with `make up` "
                    "(or set EDGELOOP_API_DAGSTER_URL)"
                ),
            ) from None
        logger.exception("Dagster refused to launch %s", RETRAIN_JOB)
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY,
            detail=(
                f"Dagster at {settings.dagster_url} refused to launch {RETRAIN_JOB} in code "
                f"location {settings.dagster_location!r}: {exc}"
            ),
        ) from None
    with store.connect() as con:
        event_id = retraining.record(
            con=con,
            trigger="manual",
            decision="launched",
            reason=f"{reason} (by {principal.name})",
            labels_since_training=labels.since_last_training(con=con),
            dagster_run_id=run_id,
            details={"actor": principal.name, "job": RETRAIN_JOB},
        )
    logger.info("%s launched by %s: Dagster run %s", RETRAIN_JOB, principal.name, run_id)
    return schemas.RetrainingTriggerPublic(
        dagster_run_id=run_id,
        event_id=event_id,
        job_name=RETRAIN_JOB,
        dagster_url=f"{settings.dagster_url}/runs/{run_id}",
    )
