"""Launching ``retrain_job`` on Dagster over GraphQL: the admin's manual trigger
(``api/routes/retraining.py``) and the label push (``api/retrain_push.py``) both go
through ``launch_retrain``; the API never imports the code location."""

from __future__ import annotations

from collections.abc import Mapping

from api.deps import JobLauncher
from api.settings import ApiSettings

RETRAIN_JOB = "retrain_job"
REPOSITORY_NAME = "__repository__"
"""The repository name Dagster gives the one ``Definitions`` of a code location."""


def launch_retrain(launcher: JobLauncher, settings: ApiSettings, *, tags: Mapping[str, str]) -> str:
    """Submit ``retrain_job`` in the code location ``EDGELOOP_API_DAGSTER_LOCATION`` with
    ``tags``; returns the Dagster run id.

    Raises:
        Exception: what the GraphQL client raises; ``is_unreachable`` tells a connection
            error or timeout from a refusal.
    """
    return launcher.submit_job_execution(
        RETRAIN_JOB,
        repository_location_name=settings.dagster_location,
        repository_name=REPOSITORY_NAME,
        tags=dict(tags),
    )


def is_unreachable(exc: BaseException) -> bool:
    """True when the failure is a connection error or timeout (requests' errors are OSErrors)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError):
            return True
        cause = cause.__cause__
    return False
