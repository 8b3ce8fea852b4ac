"""DuckDB extensions loaded from their PyPI wheels, never downloaded at run time.

DuckDB normally fetches an extension (``INSTALL ducklake``) from its extension repository
the first time it is used; an air-gapped site cannot. The ``duckdb-extension-<name>`` wheels
carry the binaries (``duckdb_extension_<name>/extensions/v<version>/<name>.duckdb_extension``),
built for one DuckDB version each: a 1.5.5 binary refuses to load into 1.5.6 (measured,
DESIGN.md), which is why ``pyproject.toml`` pins ``duckdb`` to the version the wheels exist
for. ``load_extension`` loads the binary by path, so DuckDB never looks at the network.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edgeloop.store.connection import Connection

WHEEL_PACKAGES = {
    "ducklake": "duckdb_extension_ducklake",
    "httpfs": "duckdb_extension_httpfs",
    "postgres_scanner": "duckdb_extension_postgres_scanner",
}
"""Extension name -> the module its ``duckdb-extension-*`` wheel installs."""


class ExtensionUnavailableError(RuntimeError):
    """The extension's wheel is not installed, or was built for another DuckDB version."""


def extension_path(name: str) -> Path:
    """The binary of extension ``name`` for the running DuckDB, inside its wheel.

    Raises:
        ExtensionUnavailableError: unknown name, wheel missing, or no binary for this DuckDB
            version; the message names the package to install.
    """
    import duckdb

    module = WHEEL_PACKAGES.get(name)
    if module is None:
        raise ExtensionUnavailableError(
            f"no packaged DuckDB extension {name!r}; known: {sorted(WHEEL_PACKAGES)}"
        )
    package = module.replace("_", "-")
    wanted = f"v{duckdb.__version__}"
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ExtensionUnavailableError(
            f"DuckDB extension {name!r} is not installed: pip install "
            f"'{package}=={duckdb.__version__}' (or uv sync --extra networked)"
        )
    path = Path(spec.origin).parent / "extensions" / wanted / f"{name}.duckdb_extension"
    if not path.exists():
        found = sorted(p.name for p in (Path(spec.origin).parent / "extensions").glob("v*"))
        raise ExtensionUnavailableError(
            f"{package} carries {found} but DuckDB is {duckdb.__version__}: install the "
            f"wheel of the same version ({package}=={duckdb.__version__})"
        )
    return path


def load_extension(con: Connection, name: str) -> None:
    """``LOAD`` extension ``name`` into ``con`` from its wheel (see ``extension_path``).

    Raises:
        ExtensionUnavailableError: see ``extension_path``.
        duckdb.Error: DuckDB refused the file.
    """
    con.execute(f"LOAD '{extension_path(name)}'")
