"""``edgeloop agent``: run the camera-host agent from the command line.

Each option overrides the ``AgentSettings`` field of its parameter's name; an option left
out falls back to that field's ``EDGELOOP_AGENT_*`` environment variable (read by
``AgentSettings`` alone), then to its default. Option help is the field's description.
The API token has no option (a secret on the command line is visible in ``ps``): it comes
from ``EDGELOOP_AGENT_TOKEN`` or from a file (``--token-file`` / ``EDGELOOP_AGENT_TOKEN_FILE``).

Light at import time (typer and rich only); the settings class loads when typer builds
the command, OpenCV and onnxruntime when it runs.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from edge_agent.report import AgentReport


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs (in the main thread), SIGTERM stops the agent as Ctrl-C does:
    the partial batch is flushed and the ship queue drained (into the spool if the API is
    down) before the process ends. Python's default for SIGTERM, which systemd, Docker and
    Kubernetes send to stop a service, ends the process at once and loses the frames not
    yet shipped. The previous handler is restored after the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _override(field: str, flag: str | None = None) -> Any:
    """A typer option that overrides ``AgentSettings.<field>`` (flag ``--field-name`` unless
    given); its help is the field's description, default and environment variable."""
    from pydantic_core import PydanticUndefined

    from edge_agent.settings import AgentSettings

    info = AgentSettings.model_fields[field]
    text = info.description or ""
    if info.default not in (None, PydanticUndefined):
        text += f" Default {info.default}."
    text += f"\n\n[env var: {AgentSettings.env_var(field)}]"
    return typer.Option(flag or f"--{field.replace('_', '-')}", help=escape(text))


def agent(
    ctx: typer.Context,
    source: Annotated[str | None, _override("source")] = None,
    camera_id: Annotated[str | None, _override("camera_id")] = None,
    api_url: Annotated[str | None, _override("api_url", "--api")] = None,
    token_file: Annotated[Path | None, _override("token_file")] = None,
    fps: Annotated[float | None, _override("fps")] = None,
    max_frames: Annotated[int | None, _override("max_frames")] = None,
    model_path: Annotated[Path | None, _override("model_path", "--model")] = None,
    state_dir: Annotated[Path | None, _override("state_dir")] = None,
    batch_frames: Annotated[int | None, _override("batch_frames")] = None,
    replay: Annotated[str | None, _override("replay")] = None,
    start_frame: Annotated[int | None, _override("start_frame")] = None,
    model_check_interval_s: Annotated[
        float | None, _override("model_check_interval_s", "--model-check-interval")
    ] = None,
    execution_providers: Annotated[str | None, _override("execution_providers")] = None,
) -> None:
    """Detect on a camera's frames and ship them to the loop; uncertain frames go with their JPEG."""
    from pydantic import ValidationError

    from edge_agent.capture import SourceError
    from edge_agent.detectors import ModelError
    from edge_agent.runner import AgentRunner
    from edge_agent.settings import AgentSettings

    console = Console()
    _configure_logging()
    overrides = {name: value for name, value in ctx.params.items() if value is not None}
    try:
        settings = AgentSettings(**overrides)
    except ValidationError as exc:
        flags = {param.name: param.opts[0] for param in ctx.command.params if param.opts}
        for error in exc.errors():
            what = "invalid agent settings"  # a rule across fields names its variables itself
            if error["loc"]:
                field = str(error["loc"][0])
                names = [flags[field]] if field in flags else []
                names.append(AgentSettings.env_var(field))
                what = f"invalid agent setting {field} ({' or '.join(names)})"
            console.print(f"[red]{escape(what)}[/red]: {escape(error['msg'])}")
        raise typer.Exit(2) from exc
    try:
        with sigterm_as_interrupt():
            report = AgentRunner(settings).run()
    except (SourceError, ModelError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    console.print(summary_table(report, settings.camera_id))


def summary_table(report: AgentReport, camera_id: str) -> Table:
    """A rich table of an ``AgentReport``."""
    table = Table(title=f"edgeloop agent — camera {camera_id}", show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("frames", f"{report.frames}"),
        ("execution provider", report.execution_provider or "–"),
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
        (
            "spooled batches dropped at the disk cap (frames)",
            f"{report.spool_dropped_batches} ({report.spool_dropped_frames})",
        ),
        ("frames skipped", f"{report.skipped_frames}"),
        *((f"  skipped: {reason}", f"{n}") for reason, n in report.skipped_by_reason.items()),
        ("stream reconnects", f"{report.reconnects}"),
        ("model version", report.model_version),
        ("uncertainty band", _band(report)),
        ("stopped by", report.stopped_by),
    ]
    if report.dropped_frames:
        rows.insert(2, ("live frames dropped (busy)", f"{report.dropped_frames}"))
    if report.jpegs_fitted:
        rows.append(("frame JPEGs downscaled to the wire's limits", f"{report.jpegs_fitted}"))
    for name, value in rows:
        table.add_row(name, value)
    return table


def _band(report: AgentReport) -> str:
    """``0.4–0.7, loop host``: the band in use and where it came from."""
    if report.uncertainty_low is None or report.uncertainty_high is None:
        return "set by the detector"
    from edge_agent.uncertainty import UncertaintyBand  # numpy and OpenCV: load when it runs

    return str(
        UncertaintyBand(report.uncertainty_low, report.uncertainty_high, report.uncertainty_source)
    )


def _configure_logging() -> None:
    root = logging.getLogger()
    if root.handlers:
        return
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.INFO, format="%(message)s", handlers=[RichHandler(show_path=False)]
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
