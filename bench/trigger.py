"""Retrain trigger -> Dagster run STARTED: through the API vs a direct GraphQL submit.

What it measures, in one run on the same machine, against a real ``dagster dev``
(webserver + daemon, the packaged ``dagster.yaml``) and a real uvicorn API:
  * trigger: ``POST /api/retraining/trigger`` (admin) -> the run's STARTED time in the
    Dagster instance (the run worker has imported the code location and begun the job);
  * baseline: ``DagsterGraphQLClient.submit_job_execution("retrain_job")`` straight to
    the webserver -> STARTED;
  * the code location's import time (``python -c "import pipelines.definitions"``).
Trials alternate; each run is terminated (or left to fail: the data dir holds no labels)
before the next, since retrains run one at a time. The data dir is a fresh temporary one.

Usage: ``uv run --frozen python bench/trigger.py [--trials 6]``
Target (issue 9): trigger -> run start p95 <= 5 s on this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from edgeloop.cli.services import free_port, service_env, start_api, start_dagster
from edgeloop.settings import LoopSettings

REPO = Path(__file__).resolve().parents[1]

ADMIN = "bench-admin-token"
TARGET_P95_S = 5.0


def _started_after(instance: object, run_id: str, asked_at: float, timeout_s: float) -> float:
    """Seconds from ``asked_at`` (epoch) to the run's start time; waits for it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = instance.get_run_record_by_id(run_id)  # type: ignore[attr-defined]
        if record is not None and record.start_time is not None:
            return float(record.start_time) - asked_at
        time.sleep(0.05)
    raise TimeoutError(f"run {run_id} did not start within {timeout_s} s")


def _finish(instance: object, client: object, run_id: str) -> None:
    """Terminate the run if it still runs, and wait until it is over."""
    from dagster import DagsterRunStatus

    over = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
    with contextlib.suppress(Exception):  # already finished (or failed to start): fine
        client.terminate_run(run_id)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)  # type: ignore[attr-defined]
        if run is not None and run.status in over:
            return
        time.sleep(0.2)


def _import_seconds() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import pipelines.definitions"], cwd=REPO, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    args = parser.parse_args()

    imports = sorted(_import_seconds() for _ in range(3))
    print(f"code location import: median {imports[1]:.2f} s (of 3)")

    with tempfile.TemporaryDirectory(prefix="edgeloop-bench-trigger-") as tmp:
        settings = LoopSettings(data_dir=Path(tmp) / "data")
        env = service_env(settings)
        os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
        from dagster import DagsterInstance
        from dagster_graphql import DagsterGraphQLClient

        port = free_port()
        trigger: list[float] = []
        direct: list[float] = []
        with start_dagster(settings, port=port, timeout_s=300) as dagster:
            api_env = {
                "EDGELOOP_API_TOKENS": json.dumps({ADMIN: "admin"}),
                "EDGELOOP_API_WARM_REGISTRY": "false",
                "EDGELOOP_API_DAGSTER_URL": dagster.url,
            }
            with start_api(settings, extra_env=api_env) as api:
                instance = DagsterInstance.get()
                client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=120)
                for trial in range(args.trials):
                    asked = time.time()
                    answer = httpx.post(
                        f"{api.url}/api/retraining/trigger",
                        headers={"Authorization": f"Bearer {ADMIN}"},
                        json={"reason": f"bench trial {trial}"},
                        timeout=120,
                    )
                    answer.raise_for_status()
                    run_id = answer.json()["dagster_run_id"]
                    trigger.append(_started_after(instance, run_id, asked, 120))
                    _finish(instance, client, run_id)

                    asked = time.time()
                    run_id = client.submit_job_execution(
                        "retrain_job", repository_location_name="pipelines"
                    )
                    direct.append(_started_after(instance, run_id, asked, 120))
                    _finish(instance, client, run_id)
                    print(f"trial {trial}: trigger {trigger[-1]:.2f} s, direct {direct[-1]:.2f} s")

    t50, t95 = np.percentile(trigger, [50, 95])
    d50, d95 = np.percentile(direct, [50, 95])
    print(f"\n{args.trials} trials; trigger -> STARTED p50 {t50:.2f} s p95 {t95:.2f} s")
    print(f"baseline direct GraphQL submit -> STARTED p50 {d50:.2f} s p95 {d95:.2f} s")
    print(f"ratio p95 {t95 / d95:.2f}x")
    verdict = "met" if t95 <= TARGET_P95_S else "NOT met"
    print(
        f"TARGET {verdict}: trigger -> run start p95 {t95:.2f} s (target <= {TARGET_P95_S:.0f} s)"
    )


if __name__ == "__main__":
    main()
