"""Starting and stopping the loop host's long-running processes (API, Dagster) from Python.

Each service runs in its own process group (``start_new_session=True``): ``dagster dev``
started from a script ignores SIGTERM otherwise, and its children (webserver, daemon,
code server) must stop with it. Used by ``edgeloop up``, ``edgeloop demo`` and the tests.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from edgeloop.offline import OFFLINE_ENV
from edgeloop.settings import LoopSettings

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent


class ServiceStartError(RuntimeError):
    """A service did not become healthy in time; the message carries its log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def dagster_home(settings: LoopSettings) -> Path:
    """``DAGSTER_HOME`` for this data folder (``<data_dir>/dagster``), with ``dagster.yaml`` in it."""
    home = (settings.data_dir / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    source = REPO_ROOT / "dagster.yaml"
    target = home / "dagster.yaml"
    if source.exists() and (not target.exists() or target.read_bytes() != source.read_bytes()):
        shutil.copyfile(source, target)
    return home


def service_env(settings: LoopSettings) -> dict[str, str]:
    """The environment every loop-host process gets: offline flags and shared locations."""
    env = dict(os.environ)
    for key, value in OFFLINE_ENV.items():
        env.setdefault(key, value)
    env["EDGELOOP_DATA_DIR"] = str(settings.data_dir.resolve())
    env.setdefault("DAGSTER_HOME", str(dagster_home(settings)))
    env.setdefault("YOLO_CONFIG_DIR", str(settings.yolo_config_dir.resolve()))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@dataclass
class Service:
    """A started service: its process, URL and log file."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after ``timeout_s``."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _start(
    name: str, cmd: list[str], *, env: dict[str, str], log_path: Path, url: str, cwd: Path
) -> Service:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    process = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()
    return Service(name=name, process=process, url=url, log_path=log_path)


def wait_healthy(service: Service, path: str, timeout_s: float) -> None:
    """Poll ``service.url + path`` until it answers 200.

    Raises:
        ServiceStartError: the process exited, or ``timeout_s`` passed (log tail included).
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise ServiceStartError(
                f"{service.name} exited with code {service.process.returncode}; "
                f"log {service.log_path}:\n{service.log_tail()}"
            )
        try:
            if httpx.get(service.url + path, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    service.stop()
    raise ServiceStartError(
        f"{service.name} did not answer {path} within {timeout_s:.0f} s; "
        f"log {service.log_path}:\n{service.log_tail()}"
    )


def start_api(
    settings: LoopSettings,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    extra_env: dict[str, str] | None = None,
    timeout_s: float = 60.0,
) -> Service:
    """Start the FastAPI service under uvicorn and wait for ``/api/health``."""
    port = port or free_port(host)
    env = service_env(settings) | (extra_env or {})
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "api.main:create_app",
        "--factory",
        "--host",
        host,
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    service = _start(
        "api",
        cmd,
        env=env,
        log_path=settings.data_dir / "logs" / "api.log",
        url=f"http://{host}:{port}",
        cwd=REPO_ROOT,
    )
    wait_healthy(service, "/api/health", timeout_s)
    return service


def start_dagster(
    settings: LoopSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 3000,
    timeout_s: float = 180.0,
) -> Service:
    """Start ``dagster dev`` (webserver + daemon) on the repo's workspace; wait for the UI."""
    env = service_env(settings)
    dagster = Path(sys.executable).with_name("dagster")
    cmd = [
        str(dagster) if dagster.exists() else "dagster",
        "dev",
        "-w",
        str(REPO_ROOT / "workspace.yaml"),
        "-h",
        host,
        "-p",
        str(port),
    ]
    service = _start(
        "dagster",
        cmd,
        env=env,
        log_path=settings.data_dir / "logs" / "dagster.log",
        url=f"http://{host}:{port}",
        cwd=REPO_ROOT,
    )
    wait_healthy(service, "/server_info", timeout_s)
    return service
