"""git and DVC as subprocesses in a data repo (``edgeloop.datasets.repo.DatasetRepo``).

DVC runs as ``python -m dvc`` with this interpreter, analytics off; git runs with no
system config and no terminal prompt, so a missing credential fails instead of waiting.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

_ADD_AND_PUSH = """
import sys
from dvc.repo import Repo
with Repo(".") as repo:
    repo.add([sys.argv[2]])
    repo.push(targets=[sys.argv[2] + ".dvc"])
"""


class DatasetRepoError(RuntimeError):
    """A git or dvc command in the data repo failed, or a version is unknown or unreadable;
    the message carries the command's output."""


def run(root: Path, args: list[str], *, command: str | None = None) -> str:
    """Run ``args`` in ``root`` and return its stdout.

    Args:
        command: how the error names the command (default: ``args`` joined).

    Raises:
        DatasetRepoError: the command exited non-zero; the message has its stderr.
    """
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    logger.debug("data repo: %s", " ".join(args))
    proc = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise DatasetRepoError(
            f"`{command or ' '.join(args)}` failed in {root} (exit {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()}"
        )
    return proc.stdout


def git(root: Path, *args: str) -> str:
    """``git *args`` in ``root``; its stdout. Raises ``DatasetRepoError`` when it fails."""
    return run(root, ["git", *args])


def dvc(root: Path, *args: str) -> str:
    """``dvc *args`` in ``root``; its stdout. Raises ``DatasetRepoError`` when it fails."""
    return run(root, [sys.executable, "-m", "dvc", *args], command=f"dvc {' '.join(args)}")


def dvc_add_and_push(root: Path, path: str) -> None:
    """``dvc add path`` then ``dvc push path.dvc`` in one DVC process (DVC's Python ``Repo``
    API, what its CLI runs): one start-up instead of two, about 1.7 s less per version.

    Raises:
        DatasetRepoError: either step failed.
    """
    run(
        root,
        [sys.executable, "-c", _ADD_AND_PUSH, "--", path],
        command=f"dvc add + push -- {path}",
    )


def tag_number(tag: str) -> int:
    """``N`` of a version tag ``vN``; 0 for any other tag."""
    return int(tag[1:]) if tag.startswith("v") and tag[1:].isdigit() else 0
