"""A quiet, offline-safe environment for every entry point, the agent's included.

Without these, a process with no network stalls 10–20 s per DNS lookup (ultralytics'
font and version checks, MLflow and DVC telemetry), and with a network it reports home:
onnxruntime 1.31's Linux wheel sends OneDS telemetry to
``mobile.events.data.microsoft.com`` about 10 s after it is imported, which only
``ORT_DISABLE_TELEMETRY=1`` set before the import stops
(``onnxruntime.disable_telemetry_events()`` does not).

Each deployable package (``edge_agent``, ``api``, ``assets``, ``pipelines``) and the CLI
(``edgeloop.cli``) calls ``set_offline_variables`` in its ``__init__``, so the variables
are set before any of their modules imports onnxruntime, ultralytics, mlflow or dvc,
however the process started (console script, ``python -m``, uvicorn's app factory,
Dagster's code server and run workers). Only unset variables are set: a user's own
choices win. ``tests/e2e/test_no_lookups.py`` runs the agent and the loop with no
reachable resolver and fails on any lookup of a non-local name.

Standard library only at import: the agent imports this module.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

OFFLINE_ENV = {
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "0",
    "YOLO_VERBOSE": "False",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "DAGSTER_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "GIT_PYTHON_REFRESH": "quiet",
    "ORT_DISABLE_TELEMETRY": "1",
}
"""Variable -> value set (when unset) in every edgeloop process; the Makefile, the
systemd unit and ``edgeloop.cli.services.service_env`` set the same."""

ULTRALYTICS_SETTINGS_OFF = (
    "sync",
    "mlflow",
    "dvc",
    "clearml",
    "comet",
    "wandb",
    "neptune",
    "hub",
    "tensorboard",
    "raytune",
)


def set_offline_variables() -> None:
    """Set each ``OFFLINE_ENV`` variable that is unset in ``os.environ`` (no other work)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def configure_offline_environment(yolo_config_dir: Path) -> None:
    """Set the offline variables and give ultralytics a local font, so nothing is fetched.

    Args:
        yolo_config_dir: becomes ``YOLO_CONFIG_DIR``; ``Ultralytics/Arial.ttf`` (and
            ``Arial.Unicode.ttf``) inside it are copied from matplotlib's DejaVuSans,
            because ultralytics otherwise downloads Arial to draw plot labels.
    """
    set_offline_variables()
    yolo_config_dir = yolo_config_dir.resolve()
    os.environ.setdefault("YOLO_CONFIG_DIR", str(yolo_config_dir))
    fonts_dir = Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics"
    fonts_dir.mkdir(parents=True, exist_ok=True)
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = fonts_dir / name
        if not target.exists():
            source = _dejavu_sans()
            if source is None:
                logger.warning("no local TTF found; ultralytics may try to download %s", name)
                continue
            shutil.copyfile(source, target)


def _dejavu_sans() -> Path | None:
    try:
        import matplotlib
    except ImportError:
        return None
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    return path if path.exists() else None


def quiet_ultralytics() -> None:
    """Turn off ultralytics' integrations and sync (its settings file lives under YOLO_CONFIG_DIR)."""
    from ultralytics.utils import SETTINGS

    changes = {key: False for key in ULTRALYTICS_SETTINGS_OFF if SETTINGS.get(key)}
    if changes:
        SETTINGS.update(changes)
