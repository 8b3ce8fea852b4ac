"""Launching ``retrain_job`` on Dagster over GraphQL: the admin's manual trigger
(``api/routes/retraining.py``) and the label push (``api/retrain_push.py``) both go
through ``launch_retrain``; the API never imports the code location.

Before it submits, ``launch_retrain`` asks Dagster for the job's metadata and checks
that the code location serves this API's stack (``edgeloop.orchestration``: the stack id
in ``<data_dir>/stack-id``): another stack's Dagster on the configured address (two stacks
on one machine share the default :3000) gets no run. The run is tagged with the stack id
too, and the code location fails a run whose tag is not its own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from api.settings import ApiSettings
from edgeloop.orchestration import (
    DATA_DIR_KEY,
    RETRAIN_JOB,
    STACK_TAG,
    StackMismatchError,
)
from edgeloop.store import StoreUnavailableError

if TYPE_CHECKING:
    from dagster_graphql import DagsterGraphQLClient

logger = logging.getLogger(__name__)

REPOSITORY_NAME = "__repository__"
"""The repository name Dagster gives the one ``Definitions`` of a code location."""

JOB_METADATA_QUERY = """
query EdgeloopJobMetadata($selector: PipelineSelector!) {
  pipelineOrError(params: $selector) {
    __typename
    ... on Pipeline { metadataEntries { label ... on TextMetadataEntry { text } } }
    ... on Error { message }
  }
}
"""
"""GraphQL query of a job's metadata entries (the text ones carry the stack)."""


class DagsterRefusedError(RuntimeError):
    """Dagster answered, but not with the job (no such job or code location, an error)."""


class JobLauncher(Protocol):
    """What the API needs of Dagster: a job's metadata, and launching it (run id back).

    ``DagsterLauncher`` is the real one; tests swap it through the dependencies
    ``api.deps.get_dagster_client`` and ``api.retrain_push.get_push_launcher``.
    """

    def job_metadata(
        self, job_name: str, *, repository_location_name: str, repository_name: str
    ) -> dict[str, str]: ...

    def submit_job_execution(
        self,
        job_name: str,
        repository_location_name: str | None = None,
        repository_name: str | None = None,
        run_config: Any = None,
        tags: dict[str, Any] | None = None,
    ) -> str: ...


class DagsterLauncher:
    """Dagster's webserver at ``settings.dagster_url``: job metadata through a plain GraphQL
    POST (httpx), launches through ``DagsterGraphQLClient``, built on the first launch
    (``dagster_graphql`` imports dagster, about 1 s, which a request that launches
    nothing never needs)."""

    def __init__(self, settings: ApiSettings) -> None:
        self._settings = settings
        self._client: DagsterGraphQLClient | None = None

    def job_metadata(
        self, job_name: str, *, repository_location_name: str, repository_name: str
    ) -> dict[str, str]:
        """The job's text metadata entries, label -> text.

        Raises:
            ConnectionError: Dagster is unreachable (an ``OSError``: see ``is_unreachable``).
            DagsterRefusedError: Dagster answered without the job (the message says why).
        """
        selector = {
            "pipelineName": job_name,
            "repositoryLocationName": repository_location_name,
            "repositoryName": repository_name,
        }
        try:
            answer = httpx.post(
                f"{self._settings.dagster_url}/graphql",
                json={"query": JOB_METADATA_QUERY, "variables": {"selector": selector}},
                timeout=self._settings.dagster_timeout_s,
            )
        except httpx.TransportError as exc:
            raise ConnectionError(f"Dagster at {self._settings.dagster_url}: {exc}") from exc
        try:
            job = answer.json()["data"]["pipelineOrError"]
        except (ValueError, KeyError, TypeError):
            raise DagsterRefusedError(
                f"no GraphQL answer (HTTP {answer.status_code}): {answer.text[:200]}"
            ) from None
        if "metadataEntries" not in job:
            raise DagsterRefusedError(job.get("message") or str(job.get("__typename")))
        return {
            str(entry["label"]): str(entry["text"])
            for entry in job.get("metadataEntries") or []
            if "text" in entry
        }

    def submit_job_execution(self, job_name: str, *args: Any, **kwargs: Any) -> str:
        """``DagsterGraphQLClient.submit_job_execution`` (same arguments); raises what it
        raises (``DagsterGraphQLClientError``, with the ``requests`` error as its cause)."""
        if self._client is None:
            self._client = _graphql_client(self._settings)
        return self._client.submit_job_execution(job_name, *args, **kwargs)


def _graphql_client(settings: ApiSettings) -> DagsterGraphQLClient:
    from urllib.parse import urlsplit

    from dagster_graphql import DagsterGraphQLClient

    url = urlsplit(settings.dagster_url)
    return DagsterGraphQLClient(
        url.hostname or "127.0.0.1",
        port_number=url.port,
        use_https=url.scheme == "https",
        timeout=settings.dagster_timeout_s,
        path_prefix=url.path.rstrip("/"),
    )


def check_stack(launcher: JobLauncher, settings: ApiSettings, job_name: str = RETRAIN_JOB) -> str:
    """Check that the Dagster code location ``settings`` reach serves this API's stack;
    returns the stack id.

    Raises:
        StackMismatchError: the job's metadata names another stack, or none (the message
            names both stack ids and data folders); or this API's own stack id cannot be
            read or written.
        DagsterRefusedError: Dagster has no such job in that code location.
        OSError: Dagster is unreachable.
    """
    try:
        ours = settings.loop.stack_id()
    except (
        OSError,
        ValueError,
        StoreUnavailableError,
    ) as exc:  # not Dagster's fault: never reported as unreachable
        raise StackMismatchError(
            f"refusing to launch: this API's stack id cannot be read or written: {exc}"
        ) from None
    metadata = launcher.job_metadata(
        job_name,
        repository_location_name=settings.dagster_location,
        repository_name=REPOSITORY_NAME,
    )
    theirs, their_data_dir = metadata.get(STACK_TAG), metadata.get(DATA_DIR_KEY)
    if theirs == ours:
        return ours
    where = f"{job_name} in code location {settings.dagster_location!r} at {settings.dagster_url}"
    if theirs:
        belongs = f"belongs to stack {theirs} (data folder {their_data_dir or 'not given'})"
    elif their_data_dir:
        belongs = (
            f"serves data folder {their_data_dir}, which had no stack id when Dagster loaded "
            "it (run `edgeloop init` there and restart Dagster if that is this stack's)"
        )
    else:
        belongs = (
            "does not say which stack it serves (not an edgeloop code location of this version)"
        )
    raise StackMismatchError(
        f"refusing to launch: {where} {belongs}, but this API is stack {ours} (data folder "
        f"{settings.loop.data_dir.resolve()}). Set EDGELOOP_API_DAGSTER_URL to this stack's "
        "Dagster (`edgeloop up` prints its URL)."
    )


def launch_retrain(launcher: JobLauncher, settings: ApiSettings, *, tags: Mapping[str, str]) -> str:
    """Check the stack (``check_stack``), then submit ``retrain_job`` in the code location
    ``EDGELOOP_API_DAGSTER_LOCATION`` with ``tags`` and this stack's id (``STACK_TAG``);
    returns the Dagster run id.

    Raises:
        StackMismatchError: Dagster at that address serves another stack: nothing launched.
        Exception: what the GraphQL client raises; ``is_unreachable`` tells a connection
            error or timeout from a refusal.
    """
    ours = check_stack(launcher, settings)
    return launcher.submit_job_execution(
        RETRAIN_JOB,
        repository_location_name=settings.dagster_location,
        repository_name=REPOSITORY_NAME,
        tags={**tags, STACK_TAG: ours},
    )


def is_unreachable(exc: BaseException) -> bool:
    """True when the failure is a connection error or timeout (requests' errors are OSErrors)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError):
            return True
        cause = cause.__cause__
    return False
