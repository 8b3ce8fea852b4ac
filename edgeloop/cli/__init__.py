"""The composition root: the ``edgeloop`` CLI and what only it runs.

This package may import every other package of the project (the agent, the API's
entry point, the code location); nothing imports it back. It holds the commands
(``app``), the process supervisor behind ``edgeloop up`` (``services``, with the
packaged ``dagster/dagster.yaml`` and ``dagster/workspace.yaml``), status collection and
rendering (``status``), sample media fetching (``media``), the simulated reviewer
(``reviewer``), the demo driver (``demo``) and headless Dagster runs (``headless``).

The offline variables (``edgeloop.offline``) are set first, before any command imports
what it runs.
"""

from edgeloop.offline import set_offline_variables

set_offline_variables()

from edgeloop.cli.app import app  # noqa: E402  (after the offline variables)

__all__ = ["app"]
