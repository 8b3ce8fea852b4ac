"""``python -m edge_agent``: the same command as ``edgeloop agent``."""

import typer

from edge_agent.cli import agent

if __name__ == "__main__":
    typer.run(agent)
