"""``edgeloop demo``: the whole loop, headless, on real video, with real components.

1. the real API (uvicorn on loopback) and the real agent (its own process, ONNX Runtime)
   on ``vtest.avi`` as camera ``cam-campus``; detections land in DuckDB, uncertain frames
   in the labeling queue with their JPEGs;
2. the queue, embeddings and detections assets materialise in the Dagster instance;
3. the **simulated reviewer** (``edgeloop.cli.reviewer``; named so in the output and in
   ``reviewed_labels.labeler``) labels queue items through the labeling API;
4. the label-count sensor is evaluated against the same Dagster instance that
   ``make up`` shows, and launches ``retrain_job``: dataset version (DVC) → fine-tune
   (ultralytics, MLflow run, new registered version) → held-out evaluation →
   promotion by policy;
5. ``bikes.mp4`` streams through the same camera (the scene changes); the reviewer labels
   a few of the new frames; ``drift_report`` materialises and the drift sensor fires.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from edgeloop.bootstrap import register_seed
from edgeloop.cli.media import fetch_media
from edgeloop.cli.reviewer import ReviewPolicy, SimulatedReviewer
from edgeloop.cli.services import Service, dagster_home, service_env, start_api
from edgeloop.cli.status import collect_status, render_status
from edgeloop.settings import LoopSettings
from edgeloop.tokens import TOKENS_FILE_NAME, ensure_tokens_file, token_for_role

logger = logging.getLogger(__name__)

CAMERA_ID = "cam-campus"


@dataclass(frozen=True)
class DemoOptions:
    """Knobs of the demo; the defaults are what ``make demo`` runs."""

    frames: int = 400
    drift_frames: int = 160
    labels: int = 60
    drift_labels: int = 12
    epochs: int | None = None
    imgsz: int | None = None
    camera_id: str = CAMERA_ID
    video: str = "vtest.avi"
    drift_video: str = "bikes.mp4"


@dataclass
class DemoSummary:
    """What happened, step by step; ``ok`` is False when a step failed."""

    ok: bool = True
    steps: list[tuple[str, str, str]] = field(default_factory=list)
    run_ids: dict[str, list[str]] = field(default_factory=dict)

    def add(self, step: str, outcome: str, ok: bool = True) -> None:
        self.steps.append((step, "✓" if ok else "✗", outcome))
        self.ok = self.ok and ok


def _run_agent(
    settings: LoopSettings,
    api: Service,
    token: str,
    *,
    video: Path,
    camera_id: str,
    max_frames: int,
    console: Console,
) -> None:
    """The real edge agent in its own process (it never imports torch)."""
    cmd = [
        sys.executable,
        "-m",
        "edge_agent",
        "--source",
        str(video),
        "--camera-id",
        camera_id,
        "--api",
        api.url,
        "--token",
        token,
        "--max-frames",
        str(max_frames),
        "--state-dir",
        str((settings.data_dir / "agent" / camera_id).resolve()),
    ]
    env = service_env(settings)
    env["COLUMNS"] = str(console.width)
    # The agent's own log lines and summary table go straight to the terminal.
    proc = subprocess.run(
        cmd,
        env=env,
        stdout=console.file if console.file is not sys.stdout else None,
        stderr=subprocess.STDOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"edge agent exited with code {proc.returncode} (its log is above)")


def run_demo(
    settings: LoopSettings, options: DemoOptions, *, console: Console | None = None
) -> DemoSummary:
    """Run the demo end to end; returns the summary (also printed as tables).

    Raises nothing for a failed step: the step is marked failed in the summary and the
    demo stops there, leaving the API log and Dagster runs to inspect.
    """
    console = console or Console()
    summary = DemoSummary()
    os.environ["DAGSTER_HOME"] = str(dagster_home(settings))
    os.environ["EDGELOOP_DATA_DIR"] = str(settings.data_dir.resolve())

    from dagster import DagsterInstance

    from edgeloop.cli.headless import materialize, tick_sensor
    from pipelines.definitions import defs
    from pipelines.jobs import drift_run_config, retrain_run_config
    from pipelines.settings import get_pipeline_settings

    # The demo's knobs reach the runs as run config; the environment is left alone.
    training = {
        knob: value
        for knob, value in (("epochs", options.epochs), ("imgsz", options.imgsz))
        if value is not None
    }
    pipeline_settings = get_pipeline_settings().with_overrides(detector_model=training)
    retrain_config = retrain_run_config(pipeline_settings)
    label_threshold = settings.retrain_label_count

    t0 = time.monotonic()
    console.rule("[bold]edgeloop demo[/]: the whole loop on real video")
    fetch_media(settings.data_dir)
    seed = register_seed(settings)
    summary.add("seed detector", f"{seed.files.name} v{seed.files.version} is production")
    tokens = ensure_tokens_file(settings.data_dir / TOKENS_FILE_NAME)
    agent_token, labeler_token = token_for_role(tokens, "agent"), token_for_role(tokens, "labeler")
    if agent_token is None or labeler_token is None:
        raise ValueError(
            f"{settings.data_dir / TOKENS_FILE_NAME} needs an agent and a labeler token for the demo"
        )
    instance = DagsterInstance.get()

    api = start_api(settings)

    def stream(video: str, max_frames: int, note: str) -> None:
        console.print(f"• edge agent: {video} as {options.camera_id} ({note})")
        _run_agent(
            settings,
            api,
            agent_token,
            video=settings.samples_dir / video,
            camera_id=options.camera_id,
            max_frames=max_frames,
            console=console,
        )

    try:
        console.print(f"• API up at {api.url}")
        # 1. the agent on the campus video
        stream(options.video, options.frames, f"{options.frames} frames")
        state = collect_status(settings)
        cam = next(c for c in state["cameras"] if c["camera_id"] == options.camera_id)
        summary.add(
            f"agent on {options.video}",
            f"{cam['frames']} frames, {cam['detections']} detections, "
            f"{state['labeling_queue'].get('pending', 0)} frames queued for labeling",
        )

        # 2. the assets that follow ingestion
        console.print("• Dagster: detections, labeling_queue, crop_embeddings")
        result = materialize(defs, ["detections", "labeling_queue", "crop_embeddings"], instance)
        summary.add("labeling_queue + crop_embeddings", f"run {result[:8]}")

        # 3. the simulated reviewer
        console.print(
            f"• [bold]simulated reviewer[/] labels {options.labels} items through the labeling API"
        )
        with SimulatedReviewer(api.url, labeler_token, ReviewPolicy()) as reviewer:
            tally = reviewer.review(options.labels)
        summary.add(
            "simulated reviewer",
            f"{tally.items} frames labelled: {tally.boxes_kept} boxes kept, "
            f"{tally.boxes_rejected} rejected, {tally.classes_changed} classes corrected, "
            f"{tally.no_object} no-object",
            ok=tally.items >= label_threshold,
        )

        # 4. the label-count sensor launches the retrain run
        console.print(
            "• label_count_sensor tick → retrain_job (dataset → fine-tune → evaluate → promote)"
        )
        runs = tick_sensor(defs, "label_count_sensor", instance, run_config=retrain_config)
        summary.run_ids["label_count_sensor"] = runs
        summary.add(
            "label_count_sensor",
            f"launched {len(runs)} run(s) {', '.join(r[:8] for r in runs)}",
            ok=bool(runs),
        )
        _check_runs(instance, runs, summary)

        # 5. the scene changes: a second video through the same camera
        stream(options.drift_video, options.drift_frames, "the scene changes")
        if options.drift_labels:
            with SimulatedReviewer(api.url, labeler_token, ReviewPolicy()) as reviewer:
                tally = reviewer.review(options.drift_labels)
            summary.add("simulated reviewer (new scene)", f"{tally.items} frames labelled")
        run = materialize(
            defs, ["drift_report"], instance, run_config=drift_run_config(pipeline_settings)
        )
        drift = next(
            (d for d in collect_status(settings)["drift"] if d["camera_id"] == options.camera_id),
            None,
        )
        if drift is None:
            summary.add(
                "drift_report", f"run {run[:8]}: no report for {options.camera_id}", ok=False
            )
        else:
            summary.add(
                "drift_report",
                f"{options.camera_id}: drift share {drift['drift_share']:.2f}, "
                f"min p-value {drift['min_p_value']:.2g}, drifted={drift['drifted']}",
                ok=bool(drift["drifted"]),
            )
        runs = tick_sensor(defs, "drift_sensor", instance, run_config=retrain_config)
        summary.run_ids["drift_sensor"] = runs
        events = collect_status(settings)["retraining_events"]
        latest = next((e for e in events if e["trigger"] == "drift"), None)
        summary.add(
            "drift_sensor",
            f"fired: {latest['decision']} ({latest['reason']})" if latest else "did not fire",
            ok=latest is not None,
        )
        _check_runs(instance, runs, summary)
    except Exception as exc:  # the demo reports any failed step, then stops
        logger.exception("demo step failed")
        summary.add("demo", f"failed: {exc}", ok=False)
    finally:
        api.stop()

    state = collect_status(settings)
    _print_summary(console, summary, state, time.monotonic() - t0)
    return summary


def _check_runs(instance: Any, run_ids: list[str], summary: DemoSummary) -> None:
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        status = run.status.value if run else "missing"
        summary.add(
            f"run {run_id[:8]} ({run.job_name if run else '?'})", status, ok=status == "SUCCESS"
        )


def _print_summary(
    console: Console, summary: DemoSummary, state: dict[str, Any], elapsed_s: float
) -> None:
    table = Table(title=f"edgeloop demo — {elapsed_s:.0f} s")
    table.add_column("step")
    table.add_column("")
    table.add_column("outcome")
    for step, mark, outcome in summary.steps:
        table.add_row(step, f"[green]{mark}[/]" if mark == "✓" else f"[red]{mark}[/]", outcome)
    console.print(table)
    render_status(state, console)
    deployments = state["deployments"]
    if deployments:
        moves = Table(title="alias moves (model_deployments)")
        for column in ("at", "alias", "version", "from", "by", "why"):
            moves.add_column(column)
        for row in deployments:
            moves.add_row(
                str(row["created_at"])[:19],
                row["alias"],
                row["version"],
                row["previous_version"] or "",
                row["actor"],
                row["reason"],
            )
        console.print(moves)
    console.print(
        "Everything above is in the Dagster instance under data/dagster: run "
        "[bold]make up[/] and open http://127.0.0.1:3000 (runs, lineage, metadata); "
        "`edgeloop status --json` for the same as JSON."
    )
    console.print(json.dumps({"ok": summary.ok}), highlight=False)
