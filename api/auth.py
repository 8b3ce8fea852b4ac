"""Principals: who holds which bearer token, looked up per request.

Tokens come from ``EDGELOOP_API_TOKENS`` (a JSON object token -> role) or from the
tokens file (``<data_dir>/api-tokens.json`` by default; format, reading and creation in
``edgeloop.tokens``). The API creates that file on start-up when neither source exists,
so it never runs without auth. Tokens are read once when the app is created (restart the
API after editing the file). Tokens are looked up by their sha256, so a lookup's timing
says nothing about a token.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import cast

from api.settings import ApiSettings
from edgeloop.tokens import Role, ensure_tokens_file


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
