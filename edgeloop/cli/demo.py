"""``edgeloop demo``: the whole loop, headless, on real video, with real components.

1. the real API (uvicorn on loopback) and the real agent (its own process, ONNX Runtime)
   on ``vtest.avi`` as camera ``cam-campus``; detections land in DuckDB, uncertain frames
   in the labeling queue with their JPEGs;
2. the queue, embeddings and detections assets materialise in the Dagster instance;
3. the **simulated reviewer** (``edgeloop.cli.reviewer``; named so in the output and in
   ``reviewed_labels.labeler``) labels queue items through the labeling API, with the
   seed at 1280 px and test-time augmentation as its source of truth (not production's
   own boxes): it accepts tight pre-labels, redraws loose ones, rejects false positives,
   adds missed people and corrects classes;
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
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from edgeloop.bootstrap import register_seed
from edgeloop.cli.agents import first_frame_of, live_agent, run_agent
from edgeloop.cli.demo_options import DemoOptions
from edgeloop.cli.media import fetch_media
from edgeloop.cli.reviewer import SimulatedReviewer, TtaReference
from edgeloop.cli.services import dagster_home, start_api
from edgeloop.cli.settings_snapshot import publish_pipeline_settings
from edgeloop.cli.status import collect_status, render_camera_models, render_status
from edgeloop.cli.tokens import tokens_file
from edgeloop.devices import torch_device
from edgeloop.registry import PRODUCTION, alias_version, mlflow_client
from edgeloop.settings import LoopSettings
from edgeloop.store import frames, labels
from edgeloop.tokens import create_token

logger = logging.getLogger(__name__)

DEMO_AGENT_TOKEN = "demo-agent"
"""Name of the agent token the demo creates (``edgeloop token list`` shows it)."""
DEMO_REVIEWER_TOKEN = "simulated-reviewer"
"""Name of the simulated reviewer's labeler token: recorded as ``reviewed_labels.labeler``."""


@dataclass
class DemoSummary:
    """What happened, step by step; ``ok`` is False when a step failed."""

    ok: bool = True
    steps: list[tuple[str, str, str]] = field(default_factory=list)
    run_ids: dict[str, list[str]] = field(default_factory=dict)

    def add(self, step: str, outcome: str, ok: bool = True) -> None:
        self.steps.append((step, "✓" if ok else "✗", outcome))
        self.ok = self.ok and ok


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
    publish_pipeline_settings(settings, by="edgeloop demo")
    seed = register_seed(settings, replace_production=True)  # the story starts from the seed
    summary.add("seed detector", f"{seed.files.name} v{seed.files.version} is production")
    # The demo's own named tokens, made afresh each run (replacing its earlier ones); the
    # secrets stay in this process, the tokens file keeps their sha256 only.
    tokens_path = tokens_file()  # where the API reads them (EDGELOOP_API_TOKENS_FILE)
    agent_token = create_token(tokens_path, name=DEMO_AGENT_TOKEN, role="agent", replace=True)
    labeler_token = create_token(
        tokens_path, name=DEMO_REVIEWER_TOKEN, role="labeler", replace=True
    )
    instance = DagsterInstance.get()

    api = None if options.api_url else start_api(settings)
    api_url = api.url if api is not None else str(options.api_url)

    def stream(video: str, max_frames: int, note: str) -> None:
        console.print(f"• edge agent: {video} as {options.camera_id} ({note})")
        run_agent(
            settings,
            api_url,
            agent_token,
            video=settings.samples_dir / video,
            camera_id=options.camera_id,
            max_frames=max_frames,
            console=console,
        )

    try:
        console.print(f"• API {'up' if api is not None else 'running'} at {api_url}")
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

        # 3. the simulated reviewer, with a source of truth that knows more than production
        reference = TtaReference(
            settings.seed_dir / "best.pt", device=torch_device(settings.device)
        )
        console.print(
            f"• [bold]simulated reviewer[/] (a simulation) labels {options.labels} items through "
            f"the labeling API; its truth: {reference.name}"
        )
        truth = reference.detector()
        with SimulatedReviewer(api_url, labeler_token, truth) as reviewer:
            tally = reviewer.review(options.labels)
        summary.add(
            "simulated reviewer (truth: " + reference.name + ")",
            str(tally),
            ok=tally.items >= label_threshold,
        )

        # 4. the camera stays live while the label-count sensor launches the retrain run
        with settings.store().connect() as con:
            trigger_label = labels.get(con=con, label_id=labels.newest_label_id(con=con))
        before = _production_version(settings)
        console.print(
            f"• live camera: the agent goes on with {options.video} from frame {options.frames}, "
            f"{options.live_fps:g} frames/s, following production every "
            f"{options.model_check_interval_s:g} s"
        )
        with live_agent(
            settings,
            api_url,
            agent_token,
            video=settings.samples_dir / options.video,
            camera_id=options.camera_id,
            start_frame=options.frames,
            fps=options.live_fps,
            check_interval_s=options.model_check_interval_s,
        ) as live_log:
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
            after = _production_version(settings)
            if after is not None and after != before:
                first = first_frame_of(
                    settings, options.camera_id, after, 3 * options.model_check_interval_s + 30
                )
                reached = (
                    f"camera {options.camera_id} ran v{after} from {first:%H:%M:%S}, "
                    f"{(first - trigger_label['labeled_at']).total_seconds():.0f} s after the "
                    "label that triggered the retrain"
                    if first is not None and trigger_label is not None
                    else f"camera {options.camera_id} never ran v{after} (agent log {live_log})"
                )
                summary.add("delivery to the camera", reached, ok=first is not None)
            else:
                summary.add(
                    "delivery to the camera",
                    f"production stayed v{before}: nothing to deliver (the policy's reason is "
                    "in the model versions table below)",
                )

        # 5. the scene changes: a second video through the same camera
        stream(options.drift_video, options.drift_frames, "the scene changes")
        if options.drift_labels:
            with SimulatedReviewer(api_url, labeler_token, truth) as reviewer:
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
        if api is not None:
            api.stop()

    state = collect_status(settings)
    _print_summary(console, summary, state, time.monotonic() - t0)
    _print_camera_models(console, settings, options.camera_id)
    return summary


def _print_camera_models(console: Console, settings: LoopSettings, camera_id: str) -> None:
    """Which model the camera ran, and when (``edgeloop model-history`` shows the same)."""
    with settings.store().connect() as con:
        history = frames.model_history(con=con, camera_id=camera_id)
    render_camera_models(camera_id, history, console)


def _production_version(settings: LoopSettings) -> str | None:
    mv = alias_version(mlflow_client(settings), settings.model_name, PRODUCTION)
    return str(mv.version) if mv is not None else None


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
