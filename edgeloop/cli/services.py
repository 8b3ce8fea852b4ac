"""Starting and stopping the loop host's long-running processes (API, Dagster) from Python.

Processes start in the caller's working directory, with ``EDGELOOP_DATA_DIR`` made
absolute, so they find the same stores from a checkout or from an installed wheel.
Each service runs in its own process group (``start_new_session=True``): ``dagster dev``
started from a script ignores SIGTERM otherwise, and its children (webserver, daemon,
code server) must stop with it. Used by ``edgeloop up``, ``edgeloop demo`` and the tests.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from edgeloop.files import atomic_write_bytes
from edgeloop.offline import OFFLINE_ENV
from edgeloop.relocation import check_own_location
from edgeloop.settings import LoopSettings

logger = logging.getLogger(__name__)


def dagster_files() -> Path:
    """The folder holding ``dagster.yaml`` and ``workspace.yaml``: the copies an installed
    wheel carries (``edgeloop/cli/dagster``), else the repository root of a checkout."""
    packaged = Path(__file__).resolve().parent / "dagster"
    if (packaged / "dagster.yaml").is_file():
        return packaged
    return Path(__file__).resolve().parents[2]


DAGSTER_FILES = dagster_files()
"""``dagster.yaml`` (the instance) and ``workspace.yaml`` (the code location), shipped in
the package so an installed wheel runs the stack without a checkout."""


class ServiceStartError(RuntimeError):
    """A service did not become healthy in time; the message carries its log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


POSTGRES_STORAGE = """
# Written by edgeloop because EDGELOOP_DAGSTER_DATABASE_URL is set: runs, event logs and
# schedule/sensor ticks in PostgreSQL (dagster-postgres), shared by the webserver, the
# daemon and the workers on every host. The URL is read from the environment when the
# instance loads; it is never written here.
storage:
  postgres:
    postgres_url:
      env: EDGELOOP_DAGSTER_DATABASE_URL
"""
"""What ``instance_yaml`` appends to ``dagster.yaml`` for a networked site's instance."""


def instance_yaml(settings: LoopSettings) -> bytes:
    """The Dagster instance file for ``settings``: the repository's ``dagster.yaml`` (queued
    runs, one retrain at a time), plus ``POSTGRES_STORAGE`` when
    ``settings.dagster_database_url`` is set."""
    text = (DAGSTER_FILES / "dagster.yaml").read_bytes()
    if settings.dagster_database_url:
        text += POSTGRES_STORAGE.encode()
    return text


def write_instance(home: Path, settings: LoopSettings) -> Path:
    """Write ``instance_yaml(settings)`` to ``home/dagster.yaml`` (only when it changed);
    returns ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    wanted = instance_yaml(settings)
    target = home / "dagster.yaml"
    if not target.exists() or target.read_bytes() != wanted:
        atomic_write_bytes(target, wanted, durable=False)
    return home


def dagster_home(settings: LoopSettings) -> Path:
    """``DAGSTER_HOME`` for this data folder (``<data_dir>/dagster``), with the instance file
    (``instance_yaml``) in it."""
    return write_instance((settings.data_dir / "dagster").resolve(), settings)


def service_env(settings: LoopSettings) -> dict[str, str]:
    """The environment every loop-host process gets: offline flags and shared locations.

    Writes the data folder's stack id first when it has none (``edgeloop.orchestration``):
    the code location reads it when it loads, the API before each launch.

    Raises:
        ForeignDataFolderError: ``DAGSTER_HOME`` or ``YOLO_CONFIG_DIR`` is set to a folder
            of another data folder (the one this data folder was copied from, say).
    """
    settings.stack_id()
    env = dict(os.environ)
    for name in ("DAGSTER_HOME", "YOLO_CONFIG_DIR"):
        if env.get(name):
            check_own_location(name, env[name], settings.data_dir)
    for key, value in OFFLINE_ENV.items():
        env.setdefault(key, value)
    env["EDGELOOP_DATA_DIR"] = str(settings.data_dir.resolve())
    for name in ("database_url", "object_store_url", "dagster_database_url", "celery_broker_url"):
        if value := getattr(settings, name):
            env[f"EDGELOOP_{name.upper()}"] = value
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


def _script(name: str) -> str:
    """A console script of this environment (``dagster``, ``mlflow``), else from PATH."""
    script = Path(sys.executable).with_name(name)
    return str(script) if script.exists() else name


def _start(
    name: str,
    cmd: list[str],
    settings: LoopSettings,
    env: dict[str, str],
    url: str,
    health_path: str,
    timeout_s: float,
) -> Service:
    """Start ``cmd`` in its own process group, logging to ``<data_dir>/logs/<name>.log``,
    and wait until ``url + health_path`` answers 200 (``wait_healthy``)."""
    service = spawn(name, cmd, env, settings.data_dir / "logs" / f"{name}.log", url=url)
    wait_healthy(service, health_path, timeout_s)
    return service


def spawn(name: str, cmd: list[str], env: dict[str, str], log_path: Path, url: str = "") -> Service:
    """Start ``cmd`` in a process group of its own (``Service.stop`` ends the group),
    stdout and stderr appended to ``log_path``; returns at once."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
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


WILDCARD_HOSTS = ("0.0.0.0", "::", "")
"""Binds that serve every interface."""


def local_url(host: str, port: int) -> str:
    """The URL this machine reaches a service on: a wildcard bind is reached on loopback."""
    reach = "127.0.0.1" if host in WILDCARD_HOSTS else host
    return f"http://{reach}:{port}"


def public_url(host: str, port: int) -> str:
    """The URL other hosts reach a service on: a wildcard bind by this machine's name."""
    reach = socket.gethostname() if host in WILDCARD_HOSTS else host
    return f"http://{reach}:{port}"


def start_api(
    settings: LoopSettings,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    extra_env: dict[str, str] | None = None,
    timeout_s: float = 60.0,
) -> Service:
    """Start the FastAPI service under uvicorn on ``host:port`` and wait for ``/api/health``.

    ``host`` ``0.0.0.0`` serves every interface (cameras on other hosts); the default,
    loopback, serves this machine only.
    """
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
    return _start("api", cmd, settings, env, local_url(host, port), "/api/health", timeout_s)


def start_dagster(
    settings: LoopSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 3000,
    extra_env: dict[str, str] | None = None,
    timeout_s: float = 180.0,
) -> Service:
    """Start ``dagster dev`` (webserver + daemon) on the packaged workspace; wait for the UI."""
    workspace = str(DAGSTER_FILES / "workspace.yaml")
    cmd = [_script("dagster"), "dev", "-w", workspace, "-h", host, "-p", str(port)]
    env = service_env(settings) | (extra_env or {})
    return _start("dagster", cmd, settings, env, local_url(host, port), "/server_info", timeout_s)


def start_mlflow_ui(
    settings: LoopSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 5000,
    timeout_s: float = 120.0,
) -> Service:
    """Start the MLflow UI on the loop's tracking store (runs, registered versions, aliases),
    so the MLflow links in Dagster metadata (``EDGELOOP_MLFLOW_UI_URL``) open; wait for
    ``/health``."""
    store, artifacts = settings.tracking_uri, settings.artifact_location
    cmd = [_script("mlflow"), "server", "--backend-store-uri", store]
    cmd += ["--default-artifact-root", artifacts, "--host", host, "--port", str(port)]
    cmd += ["--workers", "1"]  # one worker is plenty on the loop host
    if host in WILDCARD_HOSTS:
        # MLflow answers only Host headers it allows (DNS-rebinding protection; by default
        # localhost and private addresses): add the name the console's links use.
        from mlflow.server.security_utils import get_default_allowed_hosts

        name = socket.gethostname()
        allowed = [*get_default_allowed_hosts(), name, f"{name}:*"]
        cmd += ["--allowed-hosts", ",".join(allowed)]
    env = service_env(settings)
    # MLflow 3's server starts seven job-runner processes (huey) for its GenAI jobs, which the
    # loop never submits: off unless the site turns them on.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return _start("mlflow", cmd, settings, env, local_url(host, port), "/health", timeout_s)
