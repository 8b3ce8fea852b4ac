"""The loop's stages as real processes, for ``test_no_lookups.py`` (runs inside its namespace).

``python no_lookups_driver.py DATA_DIR RESULT_JSON`` runs each stage in its own process,
as a user starts them (``EDGELOOP_DATA_DIR`` is DATA_DIR, with the seed and the sample
videos in it):

1. ``python -m edgeloop.cli init``: stores, seed registered in MLflow, ONNX export;
2. ``python -m edgeloop.cli up``: the API (uvicorn), Dagster (webserver, daemon, code
   server) and the MLflow UI, on their default ports (the namespace has its own);
3. as soon as the API answers, ``python -m edge_agent`` on 30 frames of ``vtest.avi`` at
   2 frames/s (15 s: longer than onnxruntime's 10 s telemetry delay);
4. ``labeling_job`` (labeling queue, crop embeddings) and ``drift_job`` (Evidently) in
   Dagster's run workers, launched over GraphQL; up to 12 queue items labelled through the
   labeling API with their pre-labels accepted;
5. ``retrain_job`` in a run worker (DVC dataset, ultralytics fine-tune, MLflow, ONNX
   export, held-out evaluation, promotion), queued behind those two;
6. ``POST /api/retraining/trigger`` (the API's own GraphQL launch; that second retrain is
   terminated at once), ``python -m edgeloop.cli status --json``; ``up`` gets SIGTERM.

Runs execute in process (one run worker each, not one process per step): the same code
and environment, minutes less. It writes RESULT_JSON: each step's time and each run's
status. The caller's environment is passed on as it is: it must not set the offline
variables, which the processes set themselves (``edgeloop.offline``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from edgeloop.tokens import TOKENS_FILE_NAME, create_token

API = "http://127.0.0.1:8000"
DAGSTER = "http://127.0.0.1:3000"
MLFLOW = "http://127.0.0.1:5000"
CAMERA = "cam-offline"
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def _cli(*args: str, timeout: float = 600) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "edgeloop.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"edgeloop {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def _wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer 200 within {timeout_s:.0f} s")


def _graphql_run_status(run_id: str) -> str:
    query = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
    answer = httpx.post(
        f"{DAGSTER}/graphql", json={"query": query, "variables": {"id": run_id}}, timeout=30
    )
    return str(answer.json()["data"]["runOrError"].get("status", "MISSING"))


IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
RUN_CONFIG = {
    "labeling_job": {},
    "drift_job": {"drift_report": {"window_frames": 15, "min_window_frames": 10}},
    "retrain_job": {
        "training_dataset": {"min_train_images": 2, "min_val_images": 1},
        "detector_model": {"epochs": 1, "imgsz": 128},
        "model_evaluation": {"imgsz": 128, "bootstrap_resamples": 50},
    },
}
"""Each job's run config: small enough to run in a couple of minutes on 2 CPU cores."""


def _client() -> Any:
    from dagster_graphql import DagsterGraphQLClient

    return DagsterGraphQLClient("127.0.0.1", port_number=3000, timeout=60)


def _launch(job: str) -> str:
    ops = {name: {"config": config} for name, config in RUN_CONFIG[job].items()}
    return str(
        _client().submit_job_execution(
            job,
            repository_location_name="pipelines",
            repository_name="__repository__",
            run_config={**IN_PROCESS, "ops": ops} if ops else IN_PROCESS,
        )
    )


def _wait_runs(runs: dict[str, str], timeout_s: float) -> dict[str, str]:
    """Job name -> run id in, job name -> final status out (or the last seen, on timeout)."""
    deadline = time.monotonic() + timeout_s
    statuses = dict.fromkeys(runs, "")
    while time.monotonic() < deadline:
        statuses = {job: _graphql_run_status(run_id) for job, run_id in runs.items()}
        if set(statuses.values()) <= FINISHED:
            break
        time.sleep(2)
    return statuses


def _accept_pre_labels(token: str, most: int) -> int:
    """Label up to ``most`` queue items with their proposed boxes; returns how many."""
    headers = {"Authorization": f"Bearer {token}"}
    done = 0
    with httpx.Client(base_url=API, headers=headers, timeout=60) as client:
        while done < most:
            item = client.get("/api/labeling-queue/next")
            if item.status_code == 404:
                break
            item.raise_for_status()
            body = item.json()
            boxes = [
                {"bbox_xyxy": box["bbox_xyxy"], "class_name": box["class_name"]}
                for box in body["proposed_boxes"]
            ]
            label = {"boxes": boxes} if boxes else {"no_object": True}
            client.post(f"/api/labeling-queue/{body['item_id']}/label", json=label)
            done += 1
    return done


def main(data_dir: Path, result_path: Path) -> None:
    result: dict[str, Any] = {"seconds": {}}
    t0 = time.monotonic()

    def step(name: str) -> None:
        result["seconds"][name] = round(time.monotonic() - t0, 1)
        sys.stderr.write(f"[no-lookups driver] {name} done at {result['seconds'][name]} s\n")

    _cli("init")
    step("init")
    tokens = data_dir / TOKENS_FILE_NAME
    agent = create_token(tokens, name="agent", role="agent")
    labeler = create_token(tokens, name="labeler", role="labeler")
    admin = create_token(tokens, name="admin", role="admin")

    log = (data_dir / "up.log").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "edgeloop.cli", "up"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_http(f"{API}/api/health", 300)
        step("api")
        agent_cmd = [sys.executable, "-m", "edge_agent", "--camera-id", CAMERA, "--api", API]
        agent_cmd += ["--source", str(data_dir / "samples" / "vtest.avi"), "--fps", "2"]
        agent_cmd += ["--replay", "realtime", "--max-frames", "30"]
        agent_cmd += ["--state-dir", str(data_dir / "agent")]
        subprocess.run(
            agent_cmd,
            env=os.environ | {"EDGELOOP_AGENT_TOKEN": agent},
            check=True,
            capture_output=True,
            timeout=300,
        )
        step("agent")
        _wait_http(f"{DAGSTER}/server_info", 300)
        _wait_http(f"{MLFLOW}/health", 300)
        step("dagster and mlflow")

        runs = {job: _launch(job) for job in ("labeling_job", "drift_job")}
        result["labels"] = _accept_pre_labels(labeler, 12)
        runs["retrain_job"] = _launch("retrain_job")  # queued behind those two
        result |= _wait_runs(runs, 900)
        step("labeling_job, drift_job, labels, retrain_job")

        answer = httpx.post(
            f"{API}/api/retraining/trigger",
            headers={"Authorization": f"Bearer {admin}"},
            json={"reason": "no-lookups test"},
            timeout=120,
        )
        result["trigger"] = answer.status_code
        if answer.status_code == 202:
            _client().terminate_run(answer.json()["dagster_run_id"])
        step("trigger")

        result["status"] = json.loads(_cli("status", "--json"))
        step("status")
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        log.close()
        result_path.write_text(json.dumps(result, default=str))
    step("stopped")
    result_path.write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
