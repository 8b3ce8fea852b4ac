"""What the ``edgeloop`` commands share: the console, the error exit and the loop settings
(with a clear error on a camera host that installed only ``edgeloop[edge]``)."""

from __future__ import annotations

import importlib.util
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

console = Console()

LOOP_EXTRA_HINT = "this command runs on the loop host: install it with `pip install edgeloop[loop]`"

LOOP_PACKAGES = ("duckdb", "dagster", "mlflow", "ultralytics", "fastapi")
"""What the loop-host commands need beyond the core (the ``loop`` extra)."""


def fail(message: str) -> NoReturn:
    """Print ``message`` as an error and exit with status 1."""
    console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code=1)


def loop_settings() -> Any:
    """The loop settings, with the offline environment set; exits with a clear error on a
    camera host that installed only ``edgeloop[edge]``."""
    from edgeloop.offline import configure_offline_environment
    from edgeloop.settings import get_settings

    missing = [name for name in LOOP_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        fail(f"{', '.join(missing)} not installed: {LOOP_EXTRA_HINT}")
    settings = get_settings()
    configure_offline_environment(settings.yolo_config_dir)
    return settings
