"""Bearer tokens and roles.

Tokens come from ``EDGELOOP_API_TOKENS`` (a JSON object token -> role) or from the
tokens file (``<data_dir>/api-tokens.json`` by default)::

    {"<token>": {"role": "agent", "name": "agent"}, ...}

``edgeloop init`` writes that file with ``ensure_tokens_file``; the API creates it the
same way on start-up when neither source exists, so it never runs without auth. Tokens
are read once when the app is created (restart the API after editing the file).
Tokens are looked up by their sha256, so a lookup's timing says nothing about a token.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from api.settings import ROLES, ApiSettings, Role

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name (recorded as ``labeler`` on labels) and role."""

    name: str
    role: Role

    def may(self, role: Role) -> bool:
        """True when this principal may act as ``role`` (admin may act as anyone)."""
        return self.role == role or self.role == "admin"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def ensure_tokens_file(path: Path) -> dict[str, dict[str, str]]:
    """Create the tokens file with one random token per role if missing; return its content.

    The file is ``{"<token>": {"role": "agent|labeler|admin", "name": "<role>"}}``, written
    with mode 0600 (tokens from ``secrets.token_urlsafe(32)``, 256 bits).

    Raises:
        ValueError: an existing file is not a valid tokens file.
    """
    if path.exists():
        return _read_tokens_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    content: dict[str, dict[str, str]] = {
        secrets.token_urlsafe(32): {"role": role, "name": role} for role in ROLES
    }
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(content, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    logger.info("created API tokens file %s with one token per role", path)
    return content


def _read_tokens_file(path: Path) -> dict[str, dict[str, str]]:
    try:
        raw: Any = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"tokens file {path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f'tokens file {path} must be a JSON object {{"<token>": {{"role": ...}}}}')
    for token, entry in raw.items():
        if not isinstance(entry, dict) or entry.get("role") not in ROLES:
            raise ValueError(
                f"tokens file {path}: the entry of token {token[:4]}… needs a role among {ROLES}"
            )
    return cast(dict[str, dict[str, str]], raw)


def load_principals(settings: ApiSettings) -> dict[str, Principal]:
    """Principals keyed by the sha256 hex of their token.

    ``settings.tokens`` (``EDGELOOP_API_TOKENS``) wins; a token from it is named after its
    role. Otherwise the tokens file is read, and created if missing.

    Raises:
        ValueError: the tokens file is malformed, or no token is configured at all.
    """
    if settings.tokens:
        principals = {
            _digest(token): Principal(name=role, role=role)
            for token, role in settings.tokens.items()
        }
    else:
        entries = ensure_tokens_file(settings.resolved_tokens_file)
        principals = {
            _digest(token): Principal(
                name=str(entry.get("name") or entry["role"]), role=cast(Role, entry["role"])
            )
            for token, entry in entries.items()
        }
    if not principals:
        raise ValueError(
            "no API tokens configured: set EDGELOOP_API_TOKENS or fill the tokens file "
            f"{settings.resolved_tokens_file}"
        )
    return principals


def authenticate(principals: dict[str, Principal], token: str) -> Principal | None:
    """The principal owning ``token``, or None."""
    return principals.get(_digest(token))
