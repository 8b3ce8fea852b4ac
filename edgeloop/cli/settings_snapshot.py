"""Publish the code location's effective settings for the console.

The API never imports the code location (``tests/test_layering.py``), yet the console's
settings panel should show every knob of the loop, the pipelines' too. The composition
root may import everything: ``edgeloop up`` (and ``edgeloop demo``) read
``pipelines.settings.PipelineSettings`` exactly as the Dagster processes they start will,
and write each field's effective value and source to
``LoopSettings.pipeline_settings_path`` (JSON, atomically).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import BaseModel

from edgeloop.files import atomic_write_text
from edgeloop.orchestration import PIPELINES_ENV_PREFIX
from edgeloop.settings import LoopSettings

PREFIX = PIPELINES_ENV_PREFIX


def _source(env_var: str, dotenv: dict[str, str]) -> str:
    if env_var in os.environ:
        return f"env {env_var}"
    return ".env" if env_var in dotenv else "default"


def pipeline_setting_rows(env_file: Path = Path(".env")) -> list[dict[str, Any]]:
    """Every field of ``PipelineSettings`` (asset configs flattened as ``asset.field``) with
    its effective value, source (``env …``, ``.env`` or ``default``), variable and
    description."""
    from pipelines.settings import PipelineSettings

    dotenv = (
        {k.upper(): v for k, v in dotenv_values(env_file).items() if v is not None}
        if env_file.is_file()
        else {}
    )
    settings = PipelineSettings()
    rows: list[dict[str, Any]] = []
    for name, field in PipelineSettings.model_fields.items():
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            for sub, subfield in type(value).model_fields.items():
                env_var = f"{PREFIX}{name}__{sub}".upper()
                rows.append(
                    {
                        "name": f"{name}.{sub}",
                        "env_var": env_var,
                        "value": getattr(value, sub),
                        "source": _source(env_var, dotenv),
                        "description": subfield.description or "",
                    }
                )
        else:
            env_var = f"{PREFIX}{name}".upper()
            rows.append(
                {
                    "name": name,
                    "env_var": env_var,
                    "value": value,
                    "source": _source(env_var, dotenv),
                    "description": field.description or "",
                }
            )
    return rows


def publish_pipeline_settings(settings: LoopSettings, *, by: str) -> Path:
    """Write the code location's effective settings to ``settings.pipeline_settings_path``.

    Raises:
        OSError: the data folder is not writable.
    """
    path = settings.pipeline_settings_path
    document = {
        "written_at": datetime.now(UTC).isoformat(),
        "written_by": by,
        "settings": pipeline_setting_rows(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(document, indent=2, default=str) + "\n")
    return path
