"""API bearer tokens: the roles, and the tokens file the API reads and ``edgeloop init`` writes.

The tokens file (``<data_dir>/api-tokens.json`` unless ``EDGELOOP_API_TOKENS_FILE`` says
otherwise) maps each token to its role and a name::

    {"<token>": {"role": "agent", "name": "agent"}, ...}

The name is recorded as ``labeler`` on the labels a token's holder makes; it defaults to
the role. Standard library only, and nothing from ``api``: the CLI, the demo and the API
share these helpers.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping
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

Tokens = dict[str, dict[str, str]]
"""A tokens file's content: token -> ``{"role": <one of ROLES>, "name": <str>}``."""

TOKEN_BYTES = 32
"""Random bytes of a generated token: ``secrets.token_urlsafe(32)``, 256 bits, 43 characters."""


def read_tokens_file(path: Path) -> Tokens:
    """The content of the tokens file at ``path``, validated.

    Raises:
        FileNotFoundError: there is no file at ``path`` (``ensure_tokens_file`` creates one).
        ValueError: the file is not JSON, not a JSON object, or an entry has no role among
            ``ROLES`` or a name that is not a string.
    """
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"tokens file {path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f'tokens file {path} must be a JSON object {{"<token>": {{"role": ...}}}}')
    for token, entry in raw.items():
        if not isinstance(entry, dict) or entry.get("role") not in ROLES:
            raise ValueError(
                f"tokens file {path}: the entry of token {token[:4]}… needs a role among {ROLES}"
            )
        if not isinstance(entry.get("name", ""), str):
            raise ValueError(f"tokens file {path}: the name of token {token[:4]}… must be a string")
    return cast(Tokens, raw)


def ensure_tokens_file(path: Path) -> Tokens:
    """Create the tokens file with one random token per role if missing; return its content.

    A new file holds ``{"<token>": {"role": <role>, "name": <role>}}`` for each of
    ``ROLES`` (tokens from ``secrets.token_urlsafe``, ``TOKEN_BYTES`` random bytes),
    written atomically with mode 0600 (``edgeloop.files.atomic_write_text``). An existing
    file is read and validated, never rewritten.

    Raises:
        ValueError: an existing file is not a valid tokens file (``read_tokens_file``).
        OSError: the folder is not writable.
    """
    if path.exists():
        return read_tokens_file(path)
    content: Tokens = {
        secrets.token_urlsafe(TOKEN_BYTES): {"role": role, "name": role} for role in ROLES
    }
    atomic_write_text(path, json.dumps(content, indent=2) + "\n", mode=0o600)
    logger.info("created API tokens file %s with one token per role", path)
    return content


def token_for_role(tokens: Mapping[str, Mapping[str, str]], role: Role) -> str | None:
    """The first token, in file order, whose role is exactly ``role``; None when none has it.

    An ``admin`` token is not returned for ``agent`` or ``labeler``, although it may act as
    either: ask for ``admin`` explicitly.
    """
    return next((token for token, entry in tokens.items() if entry.get("role") == role), None)
