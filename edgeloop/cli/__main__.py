"""``python -m edgeloop.cli``: the same as the ``edgeloop`` command."""

from edgeloop.cli.app import app

app()
