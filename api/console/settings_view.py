"""The settings panel: every field of the loop's and the API's settings with its effective
value and where it came from (``env EDGELOOP_…``, ``.env``, ``argument`` or ``default``).

Secrets are never shown: a field whose name says token, secret or password shows only
whether it is set, and a URL's user:password part is masked. The pipelines' settings
(``pipelines/settings.py``, ``EDGELOOP_PIPELINES_*``) cannot be imported here (the API
never imports the code location; ``tests/test_layering.py``): ``edgeloop up`` publishes
them, every field with its value and source, to ``LoopSettings.pipeline_settings_path``
(``edgeloop.cli.settings_snapshot``), and the panel shows that file. Without it (an API
started on its own), the panel lists the overrides the environment and ``.env`` set.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from dotenv import dotenv_values
from pydantic_settings import BaseSettings

from api.console.schemas import SettingPublic, SettingsPublic
from api.settings import ApiSettings
from edgeloop.orchestration import PIPELINES_ENV_PREFIX

logger = logging.getLogger(__name__)

SECRET_WORDS = ("token", "secret", "password", "key")
PIPELINES_PREFIX = PIPELINES_ENV_PREFIX


def _dotenv(path: Path) -> dict[str, str]:
    """The ``.env`` file's variables (upper-cased names, as pydantic-settings matches them)."""
    if not path.is_file():
        return {}
    return {k.upper(): v for k, v in dotenv_values(path).items() if v is not None}


def _mask_url(value: str) -> str:
    """``value`` with the password of a URL (``scheme://user:pw@host``) replaced by ***."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return value
    if parts.password is None:
        return value
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _shown(name: str, value: Any) -> str:
    if any(word in name.lower() for word in SECRET_WORDS) and not name.endswith("_file"):
        if value is None:
            return "(not set)"
        count = len(value) if isinstance(value, dict | list) else 1
        return f"(hidden: {count} set)"
    if value is None:
        return "(not set)"
    return _mask_url(str(value))


def _rows(
    settings: BaseSettings, *, group: Any, prefix: str, dotenv: dict[str, str]
) -> list[SettingPublic]:
    rows = []
    for name, field in type(settings).model_fields.items():
        if name == "loop":
            continue
        env_var = f"{prefix}{name}".upper()
        if env_var in os.environ:
            source = f"env {env_var}"
        elif env_var in dotenv:
            source = ".env"
        elif name in settings.model_fields_set:
            source = "argument"
        else:
            source = "default"
        rows.append(
            SettingPublic(
                group=group,
                name=name,
                env_var=env_var,
                value=_shown(name, getattr(settings, name)),
                source=source,
                description=field.description or "",
            )
        )
    return rows


def _published_pipeline_settings(path: Path) -> tuple[list[SettingPublic], str] | None:
    """The rows ``edgeloop up`` published for the code location, and when and by whom;
    None when there is no such file or it is unreadable (logged)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        rows = [
            SettingPublic(
                group="pipelines",
                name=str(row["name"]),
                env_var=str(row["env_var"]),
                value=_shown(str(row["name"]), row["value"]),
                source=str(row["source"]),
                description=str(row.get("description", "")),
            )
            for row in document["settings"]
        ]
        when = f"{document['written_by']} started Dagster with them at {document['written_at']}"
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("pipelines settings file %s is unreadable: %s", path, exc)
        return None
    return rows, when


def _pipeline_overrides(dotenv: dict[str, str]) -> list[SettingPublic]:
    """The ``EDGELOOP_PIPELINES_*`` variables the environment and ``.env`` set."""
    overrides = {k: (v, ".env") for k, v in dotenv.items() if k.startswith(PIPELINES_PREFIX)}
    overrides |= {
        k: (v, f"env {k}") for k, v in os.environ.items() if k.startswith(PIPELINES_PREFIX)
    }
    return [
        SettingPublic(
            group="pipelines",
            name=env_var.removeprefix(PIPELINES_PREFIX).lower().replace("__", "."),
            env_var=env_var,
            value=_shown(env_var, value),
            source=source,
            description="Override of the code location's setting (pipelines/settings.py).",
        )
        for env_var, (value, source) in sorted(overrides.items())
    ]


def effective_settings(settings: ApiSettings, *, env_file: Path | None = None) -> SettingsPublic:
    """Every ``LoopSettings`` and ``ApiSettings`` field, and the pipelines' settings as
    ``edgeloop up`` published them (else the ``EDGELOOP_PIPELINES_*`` overrides only).

    Args:
        env_file: the ``.env`` consulted; default ``.env`` in the working directory (where
            pydantic-settings reads it).
    """
    dotenv = _dotenv(env_file or Path(".env"))
    rows = _rows(settings.loop, group="loop", prefix="EDGELOOP_", dotenv=dotenv)
    rows += _rows(settings, group="api", prefix="EDGELOOP_API_", dotenv=dotenv)
    published = _published_pipeline_settings(settings.loop.pipeline_settings_path)
    if published is not None:
        rows += published[0]
        pipelines_note = (
            f"Pipelines settings (EDGELOOP_PIPELINES_*): as {published[1]}; the Dagster "
            f"launchpad ({settings.loop.dagster_ui_url}) shows them per job."
        )
    else:
        rows += _pipeline_overrides(dotenv)
        pipelines_note = (
            "Pipelines settings (EDGELOOP_PIPELINES_*): only the overrides set in the "
            "environment or .env are listed here (start the loop with `edgeloop up` to see "
            f"every one); every asset's defaults are in the Dagster launchpad "
            f"({settings.loop.dagster_ui_url})."
        )
    notes = [
        pipelines_note,
        "Tokens are never shown. The API reads its settings once at start: restart it after "
        "a change.",
    ]
    return SettingsPublic(data=rows, notes=notes)
