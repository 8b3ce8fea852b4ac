"""``/api/agents``: the edge agents' heartbeats (``POST``) and their latest state (``GET``).

An agent POSTs ``edgeloop.wire.AgentHeartbeat`` every few seconds; the API keeps the latest
per ``agent_id`` (``edgeloop.store.agents``) with its own receive time, which the console's
fleet panel turns into online / stale.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import HTTPException, Response, status
from pydantic import BaseModel, Field

from api.deps import AgentPrincipal, CurrentPrincipal, StoreDep, secured_router
from edgeloop.store import agents
from edgeloop.wire import AgentHeartbeat

router = secured_router("/api/agents", tag="agents")


class AgentPublic(BaseModel):
    """An agent's latest heartbeat, as the API received it."""

    agent_id: str
    camera_id: str
    host: str
    agent_version: str
    received_at: datetime = Field(description="When the API received it (the API's clock), UTC.")
    sent_at: datetime
    started_at: datetime
    model_version: str | None
    source_connected: bool
    reconnects: int
    frames_processed: int
    frames_skipped: int
    frames_per_s: float = Field(description="Recent processing rate, frames/s.")
    inference_ms_p50: float | None = Field(description="Recent median inference time, ms.")
    inference_ms_p95: float | None = Field(description="Recent 95th-percentile inference, ms.")
    execution_provider: str | None = Field(
        None, description="The ONNX Runtime execution provider inference runs on."
    )
    model_precision: str | None = Field(
        None, description="Numeric precision of the model the agent runs: fp32, fp16 or int8."
    )
    spool_batches: int
    spool_bytes: int
    spool_dropped_batches: int


class AgentsPublic(BaseModel):
    data: list[AgentPublic]


@router.post(
    "/heartbeat",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={403: {"description": "Not an agent token, or one not scoped to this camera"}},
)
def post_heartbeat(
    heartbeat: AgentHeartbeat, principal: AgentPrincipal, store: StoreDep
) -> Response:
    """Store an agent's heartbeat as its latest (role ``agent``, or ``admin``); 204.

    A token scoped to cameras may only report for those (403 otherwise).
    """
    if not principal.may_send(heartbeat.camera_id):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=(
                f"the token {principal.name!r} may not send for camera {heartbeat.camera_id!r}; "
                "add the camera to the token's cameras in the API tokens file"
            ),
        )
    with store.connect() as con:
        agents.upsert(con=con, heartbeat=heartbeat, received_at=datetime.now(UTC))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("", response_model=AgentsPublic)
def read_agents(_principal: CurrentPrincipal, store: StoreDep) -> AgentsPublic:
    """Every agent's latest heartbeat, by camera then agent (any token)."""
    with store.connect() as con:
        rows = agents.latest(con=con)
    return AgentsPublic(data=[AgentPublic(**row) for row in rows])
