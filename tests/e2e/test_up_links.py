"""`edgeloop up --host 0.0.0.0` serves what its links name, seen from another machine: a
second network namespace (``ip netns``), joined to this one by a veth pair, whose
``/etc/hosts`` maps this machine's name to its end of the pair, opens the API, Dagster UI
and MLflow UI links that `edgeloop up` prints (and hands the console). Before, Dagster and
the MLflow UI listened on loopback only, so those links were dead from anywhere else."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeloop.cli.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

HOST_ADDRESS, OTHER_ADDRESS = "10.231.0.1", "10.231.0.2"


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"`ip {' '.join(args)}` failed (network namespaces unavailable): {done.stderr}")


@pytest.fixture
def other_machine() -> Iterator[list[str]]:
    """A namespace with a veth link to this one and this machine's name in its hosts file;
    yields the command prefix that runs a program there."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("network namespaces need root and iproute2's `ip`")
    name, pid = f"edgeloop-links-{os.getpid()}", os.getpid() % 10_000
    etc = Path("/etc/netns") / name
    _ip("netns", "add", name)
    try:
        _ip("link", "add", f"elh{pid}", "type", "veth", "peer", "name", f"eln{pid}")
        _ip("link", "set", f"eln{pid}", "netns", name)
        _ip("addr", "add", f"{HOST_ADDRESS}/30", "dev", f"elh{pid}")
        _ip("link", "set", f"elh{pid}", "up")
        inside = ["ip", "netns", "exec", name]
        for args in (
            ["ip", "addr", "add", f"{OTHER_ADDRESS}/30", "dev", f"eln{pid}"],
            ["ip", "link", "set", f"eln{pid}", "up"],
            ["ip", "link", "set", "lo", "up"],
        ):
            subprocess.run([*inside, *args], check=True, timeout=30)
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n{HOST_ADDRESS} {socket.gethostname()}\n")
        yield inside
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(["ip", "link", "del", f"elh{pid}"], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        shutil.rmtree(etc, ignore_errors=True)


def test_up_on_every_interface_serves_its_links_to_another_machine(
    other_machine: list[str], tmp_path: Path
) -> None:
    env = {**os.environ, "EDGELOOP_DATA_DIR": str(tmp_path / "data")}
    for key in ("EDGELOOP_DAGSTER_UI_URL", "EDGELOOP_MLFLOW_UI_URL", "EDGELOOP_API_URL"):
        env.pop(key, None)
    cli = [sys.executable, "-m", "edgeloop.cli"]
    subprocess.run(
        [*cli, "token", "create", "ops", "--role", "admin"], env=env, check=True, timeout=120
    )
    ports = [str(free_port()) for _ in range(3)]
    flags = ("--api-port", "--dagster-port", "--mlflow-port")
    up = subprocess.Popen(
        [
            *cli,
            "up",
            "--host",
            "0.0.0.0",
            *(a for pair in zip(flags, ports, strict=True) for a in pair),
        ],
        env=env | {"COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    printed: list[str] = []
    try:
        assert up.stdout is not None
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            if not line:
                break
            printed.append(line)
            if "stops them all" in line:
                break
        output = "".join(printed)
        assert "stops them all" in output, output[-3000:]
        links = dict(re.findall(r"✓ (API|Dagster UI|MLflow UI)\s+(http://\S+)", output))
        name = socket.gethostname()
        assert links == {
            "API": f"http://{name}:{ports[0]}/docs",
            "Dagster UI": f"http://{name}:{ports[1]}",
            "MLflow UI": f"http://{name}:{ports[2]}",
        }, output
        probe = (
            "import sys, httpx\n"
            "for url in sys.argv[1:]:\n"
            "    print(httpx.get(url, timeout=30).status_code, url)\n"
        )
        urls = [
            f"http://{name}:{ports[0]}/api/health",
            f"http://{name}:{ports[1]}/server_info",
            f"http://{name}:{ports[2]}/health",
        ]
        seen = subprocess.run(
            [*other_machine, sys.executable, "-c", probe, *urls],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert seen.returncode == 0, seen.stderr[-3000:]
        assert seen.stdout.split("\n")[:3] == [f"200 {url}" for url in urls], seen.stdout
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(up.pid, signal.SIGINT)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(timeout=30)
    # It stopped what it started: each service runs in a process group of its own, which
    # a SIGKILL of `up` would leave listening (it did, launched from a background job).
    for port in ports:
        with socket.socket() as probe_socket:
            assert probe_socket.connect_ex(("127.0.0.1", int(port))) != 0, f"port {port} open"
