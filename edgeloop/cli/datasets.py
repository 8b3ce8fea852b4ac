"""``edgeloop dataset``: the dataset versions in the DVC data repo ``data/datasets``.

- ``edgeloop dataset list``: every version, oldest first, with its frames and what it added.
- ``edgeloop dataset checkout vN [--to DIR] [--verify]``: materialise a version (its YOLO
  folder: images hardlinked from the object store, labels, ``data.yaml``) into ``DIR``
  (default ``data/datasets/checkouts/vN``), pulling its JPEGs from the DVC remote when
  the local cache lacks them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from edgeloop.cli.common import console, fail

if TYPE_CHECKING:
    from edgeloop.datasets import DatasetRepo

app = typer.Typer(
    help="Dataset versions (DVC data repo): list them, check one out.",
    no_args_is_help=True,
)


def _repo() -> DatasetRepo:
    """The data repo of the loop settings (``EDGELOOP_DATA_DIR``)."""
    from edgeloop.datasets import DatasetRepo
    from edgeloop.settings import get_settings

    return DatasetRepo.from_settings(get_settings())


@app.command("list")
def list_versions() -> None:
    """Every dataset version, oldest first: frames, splits, new frames, bytes added."""
    repo = _repo()
    versions = repo.versions()
    if not versions:
        fail(f"no dataset versions in {repo.root} yet: materialize training_dataset first")
    table = Table(title=f"dataset versions in {repo.root}")
    for column in ("version", "frames", "train", "val", "new frames", "MB added", "label cutoff"):
        table.add_column(
            column, justify="left" if column in ("version", "label cutoff") else "right"
        )
    for v in versions:
        table.add_row(
            v.version,
            str(v.label_count),
            str(len(v.train_frames)),
            str(len(v.val_frames)),
            str(v.new_frames),
            f"{v.bytes_added / 1e6:.1f}",
            v.label_cutoff_iso,
        )
    console.print(table)


@app.command()
def checkout(
    version: Annotated[str, typer.Argument(help="The dataset version, e.g. v3.")],
    to: Annotated[
        Path | None,
        typer.Option("--to", help="Folder to write (default data/datasets/checkouts/<version>)."),
    ] = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="Re-hash every file against the manifest.")
    ] = False,
) -> None:
    """Materialise an old (or the latest) dataset version into a folder ultralytics reads."""
    from edgeloop.datasets import CHECKOUTS_DIR, DatasetRepoError

    repo = _repo()
    target = to if to is not None else repo.root / CHECKOUTS_DIR / version
    try:
        restored = repo.checkout(version, target, verify=verify)
    except DatasetRepoError as exc:
        fail(str(exc))
        return
    console.print(
        f"[green]{escape(restored.version)}[/] in {escape(str(restored.root))}: "
        f"{len(restored.train_frames)} train / {len(restored.val_frames)} val images"
        f"{' (verified)' if verify else ''}; data file {escape(str(restored.data_yaml))}"
    )
