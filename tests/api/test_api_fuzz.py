"""Schema fuzzing: every route of the OpenAPI document, against a real uvicorn and a real
DuckDB file, must never answer a 5xx other than a documented 503 (a missing dependency:
no MLflow model registered, no vector index published, no Dagster).

Cases come from schemathesis (hypothesis strategies built from the document), positive
(valid by the schema) and negative (violating it), with a fixed seed so a failure
reproduces. The document itself must be whole: every ``$ref`` resolves. Each request
carries the admin token (admin may act in every role), so the fuzzing reaches the code
behind the auth check; the API holds a few real frames, queue items and labels first.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from api_support import ADMIN, TOKENS, batch, queued_frame
from hypothesis import HealthCheck, given, seed, settings
from schemathesis import GenerationMode

from edgeloop.cli.services import free_port, start_api
from edgeloop.settings import LoopSettings

pytestmark = pytest.mark.backends

EXAMPLES_PER_MODE = 25
"""Cases per operation and generation mode (positive, negative): about 50 per route."""


@dataclass
class Tally:
    requests: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    unauthorized: Counter[str] = field(default_factory=Counter)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolves(document: dict[str, Any], ref: str) -> bool:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _fuzz(operation: Any, mode: GenerationMode, tally: Tally) -> None:
    """Run ``EXAMPLES_PER_MODE`` cases of ``operation``; record statuses and server errors."""
    documented = {str(code) for code in operation.definition.raw.get("responses", {})}

    @seed(20261201)
    @settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call(headers=ADMIN, timeout=30)
        tally.requests += 1
        tally.by_status[response.status_code] += 1
        if response.status_code == 401:
            tally.unauthorized[operation.label] += 1
        code = response.status_code
        if code >= 500 and not (code == 503 and "503" in documented):
            tally.server_errors.append(
                f"{operation.label} -> {code}: {response.text[:200]!r} "
                f"(reproduce: {case.as_curl_command()})"
            )

    fuzz()


@pytest.fixture
def api_url(loop_settings: LoopSettings) -> Iterator[str]:
    service = start_api(
        loop_settings,
        extra_env={
            "EDGELOOP_API_TOKENS": json.dumps(TOKENS),
            "EDGELOOP_API_WARM_REGISTRY": "false",
            "EDGELOOP_API_DAGSTER_URL": f"http://127.0.0.1:{free_port()}",
            "EDGELOOP_API_PUSH_RETRAIN": "false",
        },
    )
    with service:
        frames = [queued_frame(f"cam-1:{i}", i) for i in range(6)]
        frames += [queued_frame(f"cam-2:{i}", i, camera_id="cam-2") for i in range(3)]
        httpx.post(
            f"{service.url}/api/ingest", json=batch(*frames), headers=ADMIN
        ).raise_for_status()
        yield service.url


def test_the_openapi_document_is_whole(api_url: str) -> None:
    document = httpx.get(f"{api_url}/openapi.json").json()
    refs = set(_refs(document))
    assert refs, "the document has no $ref at all"
    assert sorted(ref for ref in refs if not _resolves(document, ref)) == []
    ingest = document["paths"]["/api/ingest"]["post"]["responses"]
    assert {"401", "403", "413", "422", "503"} <= set(ingest)


@pytest.mark.timeout(900)
def test_no_route_answers_a_server_error_to_any_input(api_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    tally = Tally()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, tally)

    print(
        f"\nfuzzed {len(operations)} operations with {tally.requests} requests; "
        f"statuses {dict(sorted(tally.by_status.items()))}; "
        f"5xx not documented as 503: {len(tally.server_errors)}; "
        f"401 by operation: {dict(tally.unauthorized)}"
    )
    assert tally.requests >= len(operations) * 10
    assert tally.server_errors == []
