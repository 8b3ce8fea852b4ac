"""Principals: who holds which bearer token, looked up per request.

Tokens come from ``EDGELOOP_API_TOKENS`` (a JSON object token -> role, for tests and
throw-away setups; fixed for the app's life) or from the tokens file
(``<data_dir>/api-tokens.json`` by default; format, creation and revocation in
``edgeloop.tokens``, commands ``edgeloop token create|list|revoke``). The API creates an
empty tokens file on start-up when neither source exists; until someone creates a token
every request that needs one is refused, so it never runs without auth.

The file is watched, not read once: each lookup ``stat``s it (about a microsecond) and
reads it again when its mtime, size or inode changed, so a token created or revoked by
the CLI works, or stops working, on the next request, without a restart. A file that
becomes unreadable or malformed refuses every token (logged once per change) until it is
fixed: a broken file never keeps a revoked token alive.

Tokens are looked up by their sha256, so a lookup's timing says nothing about a token,
and the file holds no secret.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from api.settings import ApiSettings
from edgeloop.tokens import Role, ensure_tokens_file, read_tokens, token_digest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    """Who is calling.

    Attributes:
        name: the token's name (recorded as ``labeler`` on labels); for a token from
            ``EDGELOOP_API_TOKENS``, its role.
        role: ``agent``, ``labeler`` or ``admin``.
        cameras: the camera ids an agent token may send frames for; None: every camera.
    """

    name: str
    role: Role
    cameras: frozenset[str] | None = None

    def may(self, role: Role) -> bool:
        """True when this principal may act as ``role`` (admin may act as anyone)."""
        return self.role == role or self.role == "admin"

    def may_send(self, camera_id: str) -> bool:
        """True when this principal's token may send frames of ``camera_id``.

        Only the camera scope is checked here; whether the role may ingest at all is
        ``may("agent")``.
        """
        return self.cameras is None or camera_id in self.cameras


_Signature = tuple[int, int, int] | None
"""A file's (mtime ns, size, inode), or None when it could not be stat'ed."""


def _signature(path: Path) -> _Signature:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class TokensFilePrincipals(Mapping[str, Principal]):
    """The principals of a tokens file, keyed by token sha256, re-read when the file changes.

    Thread-safe: lookups come from the server's worker threads. Each lookup costs one
    ``os.stat``; a changed file is parsed once, under a lock, by the first lookup that
    sees the change.

    Args:
        path: the tokens file (``edgeloop.tokens`` format; a legacy file is migrated).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._signature: _Signature | str = "never read"
        self._principals: dict[str, Principal] = {}
        self._current()

    def _load(self) -> dict[str, Principal]:
        try:
            entries = read_tokens(self.path)
        except (OSError, ValueError) as exc:
            logger.error(
                "API tokens file %s unusable, refusing every token until it is fixed: %s",
                self.path,
                exc,
            )
            return {}
        logger.info("API tokens file %s: %d token(s) loaded", self.path, len(entries))
        return {
            e.sha256: Principal(
                name=e.name,
                role=e.role,
                cameras=frozenset(e.cameras) if e.cameras is not None else None,
            )
            for e in entries
        }

    def _current(self) -> dict[str, Principal]:
        signature = _signature(self.path)
        if signature == self._signature:
            return self._principals
        with self._lock:
            signature = _signature(self.path)
            if signature != self._signature:
                self._principals = self._load()
                # A legacy file was rewritten by the read: take the new file's signature.
                self._signature = _signature(self.path)
            return self._principals

    def __getitem__(self, digest: str) -> Principal:
        return self._current()[digest]

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())


def load_principals(settings: ApiSettings) -> Mapping[str, Principal]:
    """Principals keyed by the sha256 hex of their token.

    ``settings.tokens`` (``EDGELOOP_API_TOKENS``) wins: a fixed table whose tokens are
    named after their role. Otherwise the tokens file, watched for changes
    (``TokensFilePrincipals``); an empty file is created when missing, and a warning logged
    while it holds no token.

    Raises:
        ValueError: the tokens file exists but is malformed (the API refuses to start
            rather than serve with nobody able to sign in).
    """
    if settings.tokens:
        return {
            token_digest(token): Principal(name=role, role=role)
            for token, role in settings.tokens.items()
        }
    path = settings.resolved_tokens_file
    if not ensure_tokens_file(path):
        logger.warning(
            "no API token in %s yet: every request that needs one is refused until you run "
            "`edgeloop token create NAME --role labeler|agent|admin` (no restart needed)",
            path,
        )
    return TokensFilePrincipals(path)


def authenticate(principals: Mapping[str, Principal], token: str) -> Principal | None:
    """The principal owning ``token``, or None."""
    return principals.get(token_digest(token))
