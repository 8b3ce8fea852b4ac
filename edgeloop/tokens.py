"""API bearer tokens: the roles, and the tokens file that ``edgeloop token`` writes and the API reads.

Each person (or camera host) has a token of their own, under a unique name. The file
(``<data_dir>/api-tokens.json`` unless ``EDGELOOP_API_TOKENS_FILE`` says otherwise) holds
only each token's sha256, never the token itself::

    {"format": 2,
     "tokens": [{"name": "alice", "role": "labeler", "sha256": "<64 hex>",
                 "cameras": null, "created_at": "2026-01-01T00:00:00+00:00"}, ...]}

``cameras`` (agent tokens only) lists the camera ids the token may send frames for;
null means every camera. A token is shown once, when ``create_token`` makes it
(``secrets.token_urlsafe(32)``: 256 bits, 43 characters); whoever loses it revokes the
name and creates a new one. The name is recorded as ``labeler`` on the labels its holder
makes.

Writes (``create_token``, ``revoke_token``, the migration) hold a lock file beside the
tokens file (``<file>.lock``, ``filelock``) and replace the file atomically with mode 0600
(``edgeloop.files.atomic_write_text``), so two ``edgeloop token create`` calls at once
lose nothing and a reader sees the old file or the new one. A tokens file of the first
format (plaintext ``{"<token>": {"role": ..., "name": ...}}``) is hashed and rewritten the
first time it is read, with a log line.

Standard library only for reading (the API's lookups), ``filelock`` (the ``loop`` extra)
for writing; nothing from ``api``: the CLI, the demo and the API share these helpers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

from edgeloop.files import atomic_write_text

logger = logging.getLogger(__name__)

Role = Literal["agent", "labeler", "admin"]
"""Bearer-token roles: ``agent`` ingests and fetches models, ``labeler`` labels the queue,
``admin`` may do everything (and trigger retraining)."""

ROLES: tuple[Role, ...] = ("agent", "labeler", "admin")

TOKENS_FILE_NAME = "api-tokens.json"
"""Name of the tokens file in the data dir (``<data_dir>/api-tokens.json``)."""

FILE_FORMAT = 2
"""The ``format`` of the tokens file this module writes (1: the plaintext legacy map)."""

TOKEN_BYTES = 32
"""Random bytes of a generated token: ``secrets.token_urlsafe(32)``, 256 bits, 43 characters."""

LOCK_TIMEOUT_S = 30.0
"""How long a write waits for another writer's lock on the tokens file, s."""

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
"""A token name: 1-64 characters, letters, digits and ``. _ @ + -``, not starting with a sign."""


class TokenNameTakenError(ValueError):
    """A token with that name exists already (revoke it first, or pick another name)."""


class TokenNotFoundError(KeyError):
    """No token has that name."""

    def __str__(self) -> str:  # KeyError quotes its argument; say the message plainly
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class TokenEntry:
    """One token as the file holds it: everything but the secret.

    Attributes:
        name: unique; recorded as ``labeler`` on labels, shown by ``edgeloop token list``.
        role: one of ``ROLES``.
        sha256: hex sha256 of the token's UTF-8 bytes (64 lowercase hex characters).
        cameras: the camera ids an agent token may send frames for; None: every camera.
        created_at: when ``create_token`` made it, timezone-aware UTC (None for a token
            migrated from the legacy format, whose creation time is unknown).
    """

    name: str
    role: Role
    sha256: str
    cameras: tuple[str, ...] | None = None
    created_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The entry as the tokens file stores it."""
        return {
            "name": self.name,
            "role": self.role,
            "sha256": self.sha256,
            "cameras": list(self.cameras) if self.cameras is not None else None,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


def token_digest(token: str) -> str:
    """Hex sha256 of ``token``'s UTF-8 bytes: what the tokens file stores and the API looks up."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def validate_name(name: str) -> str:
    """``name`` if it is a valid token name (``NAME_PATTERN``).

    Raises:
        ValueError: it is empty, too long, or has other characters.
    """
    if not NAME_PATTERN.match(name):
        raise ValueError(
            f"token name {name!r} is not valid: use 1-64 letters, digits or . _ @ + - "
            "(starting with a letter or digit)"
        )
    return name


def _entry(path: Path, raw: Any, index: int) -> TokenEntry:
    """One validated entry of a format-2 file (``raw`` is its JSON object)."""
    where = f"tokens file {path}, entry {index}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: must be a JSON object")
    name, role, digest = raw.get("name"), raw.get("role"), raw.get("sha256")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: needs a non-empty string name")
    if role not in ROLES:
        raise ValueError(f"{where} ({name}): needs a role among {ROLES}")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError(f"{where} ({name}): sha256 must be 64 lowercase hex characters")
    cameras = raw.get("cameras")
    if cameras is not None and (
        not isinstance(cameras, list) or not all(isinstance(c, str) and c for c in cameras)
    ):
        raise ValueError(f"{where} ({name}): cameras must be null or a list of camera ids")
    created = raw.get("created_at")
    try:
        created_at = datetime.fromisoformat(created) if isinstance(created, str) else None
    except ValueError as exc:
        raise ValueError(f"{where} ({name}): created_at is not an ISO 8601 time") from exc
    return TokenEntry(
        name=name,
        role=cast(Role, role),
        sha256=digest,
        cameras=tuple(cameras) if cameras is not None else None,
        created_at=created_at,
    )


def _legacy_entries(path: Path, raw: dict[str, Any]) -> list[TokenEntry]:
    """The entries of a legacy plaintext file ``{"<token>": {"role", "name"}}``, hashed.

    A name used twice (or missing: the role stands in) gets ``-2``, ``-3``… appended.
    """
    entries: list[TokenEntry] = []
    taken: set[str] = set()
    for token, value in raw.items():
        if not isinstance(value, dict) or value.get("role") not in ROLES:
            raise ValueError(
                f"tokens file {path}: the entry of token {token[:4]}… needs a role among {ROLES}"
            )
        name = value.get("name") or value["role"]
        if not isinstance(name, str):
            raise ValueError(f"tokens file {path}: the name of token {token[:4]}… must be a string")
        unique, n = name, 1
        while unique in taken:
            n += 1
            unique = f"{name}-{n}"
        taken.add(unique)
        entries.append(
            TokenEntry(name=unique, role=cast(Role, value["role"]), sha256=token_digest(token))
        )
    return entries


def _parse(path: Path, text: str) -> tuple[list[TokenEntry], bool]:
    """The entries of a tokens file's text, and whether it was in the legacy format.

    Raises:
        ValueError: not JSON, not an object, a malformed entry, or a name used twice.
    """
    try:
        raw: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"tokens file {path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(
            f'tokens file {path} must be a JSON object {{"format": 2, "tokens": [...]}}'
        )
    if "format" not in raw:
        return _legacy_entries(path, raw), True
    if raw["format"] != FILE_FORMAT or not isinstance(raw.get("tokens"), list):
        raise ValueError(
            f"tokens file {path}: unknown format {raw['format']!r} "
            f'(expected {{"format": {FILE_FORMAT}, "tokens": [...]}})'
        )
    entries = [_entry(path, item, i) for i, item in enumerate(raw["tokens"])]
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"tokens file {path}: token names used twice: {', '.join(twice)}")
    return entries, False


def _write(path: Path, entries: Iterable[TokenEntry]) -> None:
    content = {"format": FILE_FORMAT, "tokens": [e.to_json() for e in entries]}
    atomic_write_text(path, json.dumps(content, indent=2) + "\n", mode=0o600)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold ``<path>.lock`` (``filelock``, across processes) for a read-modify-write."""
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path.with_name(path.name + ".lock")), timeout=LOCK_TIMEOUT_S)
    try:
        with lock:
            yield
    except Timeout as exc:
        raise TimeoutError(
            f"another process held {lock.lock_file} for {LOCK_TIMEOUT_S:.0f} s; "
            "is an `edgeloop token` command stuck? retry when it is done"
        ) from exc


def _read_locked(path: Path) -> list[TokenEntry]:
    """The entries of ``path`` (none when missing), a legacy file hashed and rewritten.

    Call it holding ``_locked(path)``.
    """
    if not path.exists():
        return []
    entries, legacy = _parse(path, path.read_text(encoding="utf-8"))
    if legacy:
        _write(path, entries)
        logger.warning(
            "tokens file %s held %d plaintext token(s): rewritten with their sha256 only "
            "(names: %s); the tokens themselves keep working",
            path,
            len(entries),
            ", ".join(e.name for e in entries) or "none",
        )
    return entries


def _migrate(path: Path) -> list[TokenEntry]:
    """Hash a legacy plaintext file in place (under the lock); the entries either way."""
    with _locked(path):
        return _read_locked(path)


def read_tokens(path: Path) -> list[TokenEntry]:
    """The entries of the tokens file at ``path``, in file order (oldest first).

    A legacy plaintext file is hashed and rewritten first (see the module doc); when it
    cannot be rewritten (a read-only folder) its hashed entries are returned and a warning
    logged.

    Raises:
        FileNotFoundError: there is no file at ``path`` (``ensure_tokens_file`` creates one).
        ValueError: the file is not a valid tokens file (the message says what is wrong).
    """
    entries, legacy = _parse(path, path.read_text(encoding="utf-8"))
    if not legacy:
        return entries
    try:
        return _migrate(path)
    except OSError as exc:
        logger.warning("could not rewrite the plaintext tokens file %s hashed: %s", path, exc)
        return entries


def ensure_tokens_file(path: Path) -> list[TokenEntry]:
    """Create an empty tokens file (mode 0600) if missing; return the entries of the file.

    No token is made here: ``create_token`` (``edgeloop token create``) makes each one.

    Raises:
        ValueError: an existing file is not a valid tokens file (it is left as it is).
        OSError: the folder is not writable.
    """
    if path.exists():
        return read_tokens(path)
    with _locked(path):
        if not path.exists():
            _write(path, [])
            logger.info("created an empty API tokens file %s", path)
    return read_tokens(path)


def create_token(
    path: Path,
    *,
    name: str,
    role: Role,
    cameras: Iterable[str] | None = None,
    replace: bool = False,
) -> str:
    """Make a token named ``name``, store its sha256 in ``path``, and return the token.

    The token is returned once and stored nowhere: hand it to its holder.

    Args:
        path: the tokens file; created (empty first) when missing.
        name: unique among the file's tokens (``NAME_PATTERN``).
        role: one of ``ROLES``.
        cameras: agent tokens only: the camera ids it may send frames for (None: all).
        replace: revoke an existing token of that name first (the demo recreates its
            tokens this way on every run); False raises ``TokenNameTakenError`` instead.

    Returns:
        The new token, ``secrets.token_urlsafe(TOKEN_BYTES)`` (43 URL-safe characters).

    Raises:
        TokenNameTakenError: ``name`` exists and ``replace`` is False.
        ValueError: a bad name, role, or camera id, or cameras given for a non-agent role.
        TimeoutError: another writer held the lock past ``LOCK_TIMEOUT_S``.
    """
    validate_name(name)
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    scope = None if cameras is None else tuple(dict.fromkeys(cameras))
    if scope is not None:
        if role != "agent":
            raise ValueError(
                f"--camera scopes agent tokens only; a {role} token never sends frames"
            )
        if not scope or not all(c.strip() for c in scope):
            raise ValueError("camera ids must be non-empty (or give no --camera: every camera)")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    entry = TokenEntry(
        name=name,
        role=role,
        sha256=token_digest(token),
        cameras=scope,
        created_at=datetime.now(UTC).replace(microsecond=0),
    )
    with _locked(path):
        entries = _read_locked(path)
        if any(e.name == name for e in entries):
            if not replace:
                raise TokenNameTakenError(
                    f"a token named {name!r} exists already in {path}: revoke it first "
                    f"(`edgeloop token revoke {name}`) or pick another name"
                )
            entries = [e for e in entries if e.name != name]
            logger.info("replacing the token %s in %s", name, path)
        _write(path, [*entries, entry])
    logger.info("created the %s token %s in %s", role, name, path)
    return token


def revoke_token(path: Path, name: str) -> TokenEntry:
    """Remove the token named ``name`` from ``path``; return what it was.

    A running API stops accepting the token on its next request (``api.auth``).

    Raises:
        TokenNotFoundError: no token has that name (or there is no tokens file).
        TimeoutError: another writer held the lock past ``LOCK_TIMEOUT_S``.
    """
    if not path.exists():
        raise TokenNotFoundError(f"no token named {name!r}: there is no tokens file {path}")
    with _locked(path):
        entries = _read_locked(path)
        gone = next((e for e in entries if e.name == name), None)
        if gone is None:
            known = ", ".join(e.name for e in entries) or "none"
            raise TokenNotFoundError(f"no token named {name!r} in {path} (tokens: {known})")
        _write(path, [e for e in entries if e.name != name])
    logger.info("revoked the %s token %s in %s", gone.role, name, path)
    return gone
