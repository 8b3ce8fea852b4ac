"""Schedules: drift every 15 minutes, the labeling queue and crop index hourly (cron in UTC)."""

from __future__ import annotations

import dagster as dg

from edgeloop.orchestration import DRIFT_JOB, LABELING_JOB
from pipelines.settings import get_pipeline_settings


def _running_schedule(job_name: str, cron: str, setting: str) -> dg.ScheduleDefinition:
    """``<job>`` on ``cron`` (UTC), running from the start; ``setting`` names its env var."""
    return dg.ScheduleDefinition(
        name=job_name.replace("_job", "_schedule"),
        job_name=job_name,
        cron_schedule=cron,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"{job_name} on '{cron}' (UTC; EDGELOOP_PIPELINES_{setting}).",
    )


drift_schedule = _running_schedule(DRIFT_JOB, get_pipeline_settings().drift_cron, "DRIFT_CRON")
labeling_schedule = _running_schedule(
    LABELING_JOB, get_pipeline_settings().labeling_cron, "LABELING_CRON"
)
