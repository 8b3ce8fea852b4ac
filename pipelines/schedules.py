"""Schedules: drift every 15 minutes, the labeling queue and crop index hourly (cron in UTC)."""

from __future__ import annotations

import dagster as dg

from pipelines.jobs import DRIFT_JOB, LABELING_JOB
from pipelines.settings import get_pipeline_settings

drift_schedule = dg.ScheduleDefinition(
    name="drift_schedule",
    job_name=DRIFT_JOB,
    cron_schedule=get_pipeline_settings().drift_cron,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="drift_job every 15 minutes (EDGELOOP_PIPELINES_DRIFT_CRON).",
)

labeling_schedule = dg.ScheduleDefinition(
    name="labeling_schedule",
    job_name=LABELING_JOB,
    cron_schedule=get_pipeline_settings().labeling_cron,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="labeling_job hourly (EDGELOOP_PIPELINES_LABELING_CRON).",
)
