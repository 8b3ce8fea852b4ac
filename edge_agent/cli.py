"""``edgeloop agent``: run the camera-host agent from the command line.

Light at import time (typer and rich only); OpenCV and onnxruntime load when it runs.
Options left out fall back to ``EDGELOOP_AGENT_*`` environment variables, then defaults
(see ``edge_agent.settings.AgentSettings``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from edge_agent.runner import AgentReport


def agent(
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            envvar="EDGELOOP_AGENT_SOURCE",
            help="Video file, image directory, rtsp:// or http(s):// URL, or camera index.",
        ),
    ] = None,
    camera_id: Annotated[
        str | None,
        typer.Option("--camera-id", envvar="EDGELOOP_AGENT_CAMERA_ID", help="Camera identifier."),
    ] = None,
    api: Annotated[
        str | None,
        typer.Option(
            "--api",
            envvar="EDGELOOP_AGENT_API_URL",
            help="edgeloop API base URL (default http://127.0.0.1:8000).",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="EDGELOOP_AGENT_TOKEN", help="Bearer token for the API."),
    ] = None,
    fps: Annotated[
        float | None,
        typer.Option(
            "--fps",
            envvar="EDGELOOP_AGENT_FPS",
            help="Frames per second of source time to process (default: all).",
        ),
    ] = None,
    max_frames: Annotated[
        int | None,
        typer.Option(
            "--max-frames", envvar="EDGELOOP_AGENT_MAX_FRAMES", help="Stop after this many frames."
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            envvar="EDGELOOP_AGENT_MODEL_PATH",
            help="Local ONNX model, used when the API has no production model and none is cached.",
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            envvar="EDGELOOP_AGENT_STATE_DIR",
            help="Spool and model cache (default data/agent/<camera-id>).",
        ),
    ] = None,
    batch_frames: Annotated[
        int | None,
        typer.Option(
            "--batch-frames",
            envvar="EDGELOOP_AGENT_BATCH_FRAMES",
            help="Frames per ingest batch (default 32).",
        ),
    ] = None,
) -> None:
    """Detect on a camera's frames and ship them to the loop; uncertain frames go with their JPEG."""
    from pydantic import ValidationError

    from edge_agent.capture import SourceError
    from edge_agent.detectors import ModelError
    from edge_agent.runner import AgentRunner
    from edge_agent.settings import AgentSettings

    console = Console()
    _configure_logging()
    overrides: dict[str, Any] = {
        "source": source,
        "camera_id": camera_id,
        "api_url": api,
        "token": token,
        "fps": fps,
        "max_frames": max_frames,
        "model_path": model,
        "state_dir": state_dir,
        "batch_frames": batch_frames,
    }
    try:
        settings = AgentSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"]) or "settings"
            hint = _OPTION_OF.get(field, f"EDGELOOP_AGENT_{field.upper()}")
            console.print(f"[red]invalid agent setting[/red] {field} ({hint}): {error['msg']}")
        raise typer.Exit(2) from exc
    try:
        report = AgentRunner(settings).run()
    except (SourceError, ModelError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(summary_table(report, settings.camera_id))


_OPTION_OF = {
    "source": "--source or EDGELOOP_AGENT_SOURCE",
    "camera_id": "--camera-id or EDGELOOP_AGENT_CAMERA_ID",
    "api_url": "--api or EDGELOOP_AGENT_API_URL",
    "fps": "--fps or EDGELOOP_AGENT_FPS",
    "max_frames": "--max-frames or EDGELOOP_AGENT_MAX_FRAMES",
    "batch_frames": "--batch-frames or EDGELOOP_AGENT_BATCH_FRAMES",
}


def summary_table(report: AgentReport, camera_id: str) -> Table:
    """A rich table of an ``AgentReport``."""
    table = Table(title=f"edgeloop agent — camera {camera_id}", show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("frames", f"{report.frames}"),
        ("frames/s", f"{report.frames_per_s:.2f}"),
        (
            "inference ms (mean / p50 / p95)",
            f"{report.inference_ms_mean:.1f} / {report.inference_ms_p50:.1f} / {report.inference_ms_p95:.1f}",
        ),
        ("detections", f"{report.detections}"),
        ("uncertain frames (sent with JPEG)", f"{report.uncertain_frames}"),
        (
            "batches sent / spooled / replayed",
            f"{report.batches_sent} / {report.batches_spooled} / {report.batches_replayed}",
        ),
        ("batches rejected", f"{report.batches_rejected}"),
        ("batches still spooled", f"{report.spool_pending}"),
        ("corrupt frames skipped", f"{report.skipped_frames}"),
        ("model version", report.model_version),
        ("stopped by", report.stopped_by),
    ]
    if report.dropped_frames:
        rows.insert(2, ("live frames dropped (busy)", f"{report.dropped_frames}"))
    for name, value in rows:
        table.add_row(name, value)
    return table


def _configure_logging() -> None:
    root = logging.getLogger()
    if root.handlers:
        return
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.INFO, format="%(message)s", handlers=[RichHandler(show_path=False)]
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
