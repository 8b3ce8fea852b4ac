"""``/api/alerts``: drift alerts (``edgeloop.store.alerts``), listed and acknowledged.

Raised by ``drift_sensor`` (``edgeloop.alerts``) when a camera's drift share passes the
seed's threshold or its class mix shifts after a promotion; shown in the console's alerts
panel until a labeler or admin acknowledges them here (who and when are recorded).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import CurrentPrincipal, LabelerPrincipal, StoreDep, secured_router
from edgeloop.store import alerts

router = secured_router("/api/alerts", tag="alerts")

AlertId = Annotated[int, Path(ge=1, le=2**62, description="The alert's id.")]


class AlertPublic(BaseModel):
    """One alert: what fired, its state, who acknowledged it, and its webhook delivery."""

    model_config = ConfigDict(from_attributes=True)

    alert_id: int
    camera_id: str
    kind: Literal["drift", "class_mix"] = Field(
        description="drift: drift share above the threshold; class_mix: the detection class "
        "mix shifted after a promotion."
    )
    severity: Literal["warning", "critical"]
    status: Literal["open", "acknowledged", "resolved"] = Field(
        description="open: not acknowledged; acknowledged: seen, the condition holds; "
        "resolved: acknowledged and the condition cleared."
    )
    raised_at: datetime
    updated_at: datetime
    summary: str
    description: str
    value: float | None = Field(description="What fired, e.g. the drift share, [0, 1].")
    threshold: float | None
    model_version: str | None = Field(
        description="The model version behind the camera's frames (drift), or the promoted "
        "version (class_mix)."
    )
    details: dict[str, Any]
    cleared_at: datetime | None = Field(description="When the condition stopped holding.")
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    delivery_status: Literal["pending", "sent", "failed", "disabled"] = Field(
        description="The webhook delivery (EDGELOOP_ALERT_WEBHOOK_URL; disabled when unset)."
    )
    delivery_attempts: int
    delivery_error: str | None
    delivered_at: datetime | None


class AlertsPublic(BaseModel):
    open_count: int = Field(description="Alerts not acknowledged yet (every camera).")
    alerts: list[AlertPublic]


@router.get("", response_model=AlertsPublic)
def read_alerts(
    _principal: CurrentPrincipal,
    store: StoreDep,
    status_filter: Annotated[
        Literal["open", "acknowledged", "resolved"] | None,
        Query(alias="status", description="Only alerts in this status; default all."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Most alerts returned.")] = 100,
) -> AlertsPublic:
    """Alerts, open ones first, then newest first (any role)."""
    with store.connect() as con:
        rows = alerts.list_alerts(con=con, status=status_filter, limit=limit)
        count = alerts.open_count(con=con)
    return AlertsPublic(open_count=count, alerts=[AlertPublic(**row) for row in rows])


@router.post(
    "/{alert_id}/acknowledge",
    response_model=AlertPublic,
    responses={
        404: {"description": "No alert has this id"},
        409: {"description": "The alert is not open (acknowledged already, or resolved)"},
    },
)
def acknowledge_alert(
    alert_id: AlertId, principal: LabelerPrincipal, store: StoreDep
) -> AlertPublic:
    """Acknowledge an open alert (role ``labeler`` or ``admin``): it leaves the console's open
    list; who and when are recorded. A camera whose condition still holds raises no new alert
    until the condition clears and fires again."""
    with store.connect() as con:
        try:
            row = alerts.acknowledge(con=con, alert_id=alert_id, actor=principal.name)
        except alerts.AlertNotFoundError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
        except alerts.AlertStateError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    return AlertPublic(**row)
