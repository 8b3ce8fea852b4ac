"""``edgeloop token create|list|revoke``: one API token per person or camera host.

The tokens file is the API's (``EDGELOOP_API_TOKENS_FILE``, default
``<data_dir>/api-tokens.json``) and holds only each token's sha256; a token is printed
once, by ``create``. A running API sees every change on its next request.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, NoReturn, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgeloop.tokens import ROLES, Role

app = typer.Typer(
    help="API tokens, one per person or camera host: create (shown once), list, revoke.",
    no_args_is_help=True,
)
console = Console()

FileOption = Annotated[
    Path | None,
    typer.Option(
        "--file",
        help="The tokens file (default: EDGELOOP_API_TOKENS_FILE, else <data_dir>/api-tokens.json).",
    ),
]


def tokens_file(override: Path | None = None) -> Path:
    """The tokens file the API reads: ``override``, else ``ApiSettings.resolved_tokens_file``."""
    if override is not None:
        return override
    from api.settings import ApiSettings

    return ApiSettings().resolved_tokens_file


def _fail(message: str) -> NoReturn:
    console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code=1)


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Unique name: the person (alice) or camera host.")],
    role: Annotated[
        str,
        typer.Option(help=f"One of {', '.join(ROLES)}."),
    ],
    camera: Annotated[
        list[str] | None,
        typer.Option(
            "--camera",
            help="Agent tokens only: a camera id the token may send frames for (repeat it); "
            "none: every camera.",
        ),
    ] = None,
    file: FileOption = None,
) -> None:
    """Create a token for NAME and print it once (the file keeps only its sha256)."""
    from edgeloop.tokens import create_token

    if role not in ROLES:
        _fail(f"--role must be one of {', '.join(ROLES)}, not {role!r}")
    path = tokens_file(file)
    try:
        token = create_token(path, name=name, role=cast(Role, role), cameras=camera or None)
    except (ValueError, TimeoutError, OSError) as exc:
        _fail(str(exc))
    scope = f", cameras {', '.join(camera)}" if camera else ""
    console.print(
        f"[green]✓[/] {role} token [bold]{escape(name)}[/]{escape(scope)} added to {path}. "
        "It is shown this once; keep it secret:",
        highlight=False,
    )
    sys.stdout.write(token + "\n")
    sys.stdout.flush()
    if role == "agent":
        hint = "give it to the agent as EDGELOOP_AGENT_TOKEN (never on the command line)"
    else:
        hint = "paste it into the labeling page's sign-in (it stays in that browser)"
    console.print(f"  {hint}; lost it? `edgeloop token revoke {escape(name)}` and create another.")


@app.command("list")
def list_tokens(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    file: FileOption = None,
) -> None:
    """Name, role, cameras and creation time of every token (never a secret)."""
    from edgeloop.tokens import read_tokens

    path = tokens_file(file)
    try:
        entries = read_tokens(path) if path.exists() else []
    except (ValueError, OSError) as exc:
        _fail(str(exc))
    if as_json:
        rows = [
            {
                "name": e.name,
                "role": e.role,
                "cameras": list(e.cameras) if e.cameras is not None else None,
                "created_at": e.created_at.isoformat() if e.created_at else None,
            }
            for e in entries
        ]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    if not entries:
        console.print(
            f"no token in {path}: create one with "
            "`edgeloop token create NAME --role labeler|agent|admin`"
        )
        return
    table = Table(title=f"API tokens ({path})")
    for column in ("name", "role", "cameras", "created_at (UTC)"):
        table.add_column(column)
    for e in entries:
        table.add_row(
            escape(e.name),
            e.role,
            escape(", ".join(e.cameras)) if e.cameras is not None else "all",
            f"{e.created_at:%Y-%m-%d %H:%M:%S}" if e.created_at else "(migrated)",
        )
    console.print(table)


@app.command()
def revoke(
    name: Annotated[str, typer.Argument(help="The token's name, as `edgeloop token list` shows.")],
    file: FileOption = None,
) -> None:
    """Remove NAME's token: a running API refuses it from its next request on."""
    from edgeloop.tokens import TokenNotFoundError, revoke_token

    path = tokens_file(file)
    try:
        gone = revoke_token(path, name)
    except (TokenNotFoundError, ValueError, TimeoutError, OSError) as exc:
        _fail(str(exc))
    console.print(f"[green]✓[/] revoked the {gone.role} token [bold]{escape(name)}[/] ({path})")
