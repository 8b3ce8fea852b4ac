"""Real servers from packages, started on loopback for a test or a benchmark, then stopped.

The networked topology (DESIGN.md) keeps its state in engines a site already runs. Here they
come from packages: PostgreSQL 15 from Debian's ``postgresql``, an S3-compatible endpoint
from PyPI's ``moto[server]``, and Debian's ``nginx`` as the replicas' load balancer. Each server gets a fresh folder and a free port; nothing is
shared with the machine's own services.

On a machine without a server's package, ``missing_server`` says what to install;
``require_server`` skips with that message, or fails when ``EDGELOOP_REQUIRE_SERVERS=1``
(``.ci/run`` sets it, so CI never skips silently).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"
"""Where Debian's ``postgresql`` package puts ``initdb`` / ``pg_ctl`` (not on PATH)."""
START_TIMEOUT_S = 30.0
"""Longest wait for a server to accept connections, s."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes] | None, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {START_TIMEOUT_S} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def _listening(
    command: list[str], port: int, what: str, *, stdout: int | IO[bytes], stderr: int | IO[bytes]
) -> Iterator[None]:
    """Run ``command`` in its own session until it listens on 127.0.0.1:``port``; stop it
    (``_stop``) when the block ends.

    Raises:
        RuntimeError: it exited or did not listen within ``START_TIMEOUT_S``.
    """
    process = subprocess.Popen(command, stdout=stdout, stderr=stderr, start_new_session=True)
    try:
        _wait_for_port(port, process, what)
        yield
    finally:
        _stop(process)


def _run(command: list[str]) -> None:
    """Run ``command``; on failure raise with its output (initdb and pg_ctl say why)."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")


def _postgres_bin() -> Path | None:
    found = sorted(Path("/").glob(POSTGRES_BIN_GLOB.lstrip("/")))
    return found[-1] if found and (found[-1] / "initdb").exists() else None


def _moto_server() -> Path | None:
    path = Path(sys.executable).with_name("moto_server")
    return path if path.exists() else None


def _nginx() -> Path | None:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    return Path(found) if Path(found).exists() else None


def missing_server(name: str) -> str | None:
    """What to install for server ``name`` ("postgres", "s3", "nginx", "redis"), or None when it is here."""
    if name == "postgres" and _postgres_bin() is None:
        return "PostgreSQL server binaries missing: apt-get install postgresql"
    if name == "nginx" and _nginx() is None:
        return "nginx missing: apt-get install nginx"
    if name == "redis" and _redis() is None:
        return "redis-server missing: apt-get install redis-server"
    if name == "s3" and _moto_server() is None:
        return "moto_server missing: uv sync --extra networked (dev group: moto[server])"
    return None


def require_server(name: str) -> None:
    """Skip the calling test (fail under ``EDGELOOP_REQUIRE_SERVERS=1``) when ``name`` is missing."""
    import pytest

    reason = missing_server(name)
    if reason is None:
        return
    if os.environ.get("EDGELOOP_REQUIRE_SERVERS") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass(frozen=True)
class Postgres:
    """A running PostgreSQL server: ``url`` (libpq URI of database ``postgres``, user
    ``postgres``, trust authentication on loopback), ``dsn`` (keyword form, as DuckDB's
    postgres extension takes it), ``port`` and ``data_dir``."""

    port: int
    data_dir: Path
    bin_dir: Path

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def url_for(self, database: str) -> str:
        """The libpq URI of ``database`` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def dsn_for(self, database: str) -> str:
        """The keyword DSN of ``database`` on this server."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def restart(self, down_s: float) -> None:
        """Stop the server (fast shutdown: open connections are cut), stay down ``down_s``
        seconds, start it again on the same port and wait until it accepts connections."""
        pg_ctl = [*_as_postgres(), str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir / "db")]
        _run([*pg_ctl, "-m", "fast", "-w", "stop"])
        time.sleep(down_s)
        options = _postgres_options(self.port, self.data_dir)
        _run([*pg_ctl, "-o", options, "-l", str(self.data_dir / "server.log"), "-w", "start"])
        _wait_for_port(self.port, None, "PostgreSQL")


def _as_postgres() -> list[str]:
    """The command prefix that runs a PostgreSQL binary as ``postgres`` when we are root."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _postgres_options(port: int, data_dir: Path) -> str:
    return f"-p {port} -k {data_dir} -c listen_addresses=127.0.0.1 -c max_connections=200"


@contextlib.contextmanager
def postgres_server(root: Path) -> Iterator[Postgres]:
    """Start PostgreSQL on a free loopback port; stop it (fast shutdown) and remove it after.

    Its data folder is a new temporary folder (``root/pg`` names it).
    As root the server runs as the ``postgres`` user the Debian package creates (PostgreSQL
    refuses to run as root). fsync stays on: benchmarks measure durable commits.

    Raises:
        RuntimeError: the binaries are missing (``missing_server``) or the server did not start.
    """
    bin_dir = _postgres_bin()
    if bin_dir is None:
        raise RuntimeError(missing_server("postgres"))
    root.mkdir(parents=True, exist_ok=True)
    # Its own folder under the system's temporary directory: as root the server runs as
    # ``postgres``, which cannot enter a 0700 folder of root's (pytest's tmp_path is one).
    data_dir = Path(tempfile.mkdtemp(prefix="edgeloop-pg-"))
    (root / "pg").write_text(f"{data_dir}\n")
    prefix = _as_postgres()
    if prefix:
        user = pwd.getpwnam("postgres")
        os.chown(data_dir, user.pw_uid, user.pw_gid)
    port = free_port()
    initdb = [str(bin_dir / "initdb"), "-D", str(data_dir / "db"), "-A", "trust"]
    _run([*prefix, *initdb, "-U", "postgres", "--no-sync"])
    options = _postgres_options(port, data_dir)
    pg_ctl = [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data_dir / "db")]
    _run([*pg_ctl, "-o", options, "-l", str(data_dir / "server.log"), "-w", "start"])
    try:
        _wait_for_port(port, None, "PostgreSQL")
        yield Postgres(port=port, data_dir=data_dir, bin_dir=bin_dir)
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], check=False, capture_output=True)
        shutil.rmtree(data_dir, ignore_errors=True)


@dataclass(frozen=True)
class S3Endpoint:
    """A running S3-compatible endpoint: ``url`` (``http://127.0.0.1:PORT``), ``port``, and
    the credentials and region it accepts (moto accepts any)."""

    port: int
    access_key: str = "edgeloop-test"
    secret_key: str = "edgeloop-test-secret"
    region: str = "us-east-1"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        """boto3's standard variables that point a process at this endpoint."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self) -> object:
        """A boto3 S3 client for this endpoint."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )


@contextlib.contextmanager
def s3_server(root: Path, *, port: int | None = None) -> Iterator[S3Endpoint]:
    """Start ``moto_server`` (PyPI ``moto[server]``) on loopback, on ``port`` or a free one;
    stop it after. moto keeps buckets in memory: a restarted endpoint is empty.

    Raises:
        RuntimeError: ``moto_server`` is missing or did not start.
    """
    binary = _moto_server()
    if binary is None:
        raise RuntimeError(missing_server("s3"))
    port = port or free_port()
    root.mkdir(parents=True, exist_ok=True)
    command = [str(binary), "-H", "127.0.0.1", "-p", str(port)]
    with (
        (root / "moto.log").open("wb") as log,
        _listening(command, port, "moto_server", stdout=log, stderr=subprocess.STDOUT),
    ):
        yield S3Endpoint(port=port)


NGINX_CONF = """
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    client_max_body_size 64m;
    upstream api {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_read_timeout 120s;
        }}
    }}
}}
"""
"""A round-robin load balancer over the API replicas (nginx's upstream module); a replica
that refuses connections is passed over (``proxy_next_upstream error``, the default)."""


@dataclass(frozen=True)
class LoadBalancer:
    """nginx in front of the replicas: ``url`` is the one address agents and browsers use."""

    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def nginx_server(root: Path, upstream_ports: list[int]) -> Iterator[LoadBalancer]:
    """Start nginx (Debian's package) on a free loopback port, balancing ``upstream_ports``
    (127.0.0.1); stop it after.

    Raises:
        RuntimeError: nginx is missing or did not start.
    """
    binary = _nginx()
    if binary is None:
        raise RuntimeError(missing_server("nginx"))
    root = Path(tempfile.mkdtemp(prefix="edgeloop-nginx-", dir=root))
    os.chmod(root, 0o755)
    port = free_port()
    servers = "\n".join(
        f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in upstream_ports
    )
    conf = root / "nginx.conf"
    text = NGINX_CONF.format(root=root, servers=servers, port=port)
    if os.geteuid() == 0:  # workers would run as nobody, who cannot enter pytest's tmp folders
        text = "user root;\n" + text
    conf.write_text(text)
    command = [str(binary), "-p", str(root), "-c", str(conf), "-g", "daemon off;"]
    with (
        (root / "stderr.log").open("wb") as log,
        _listening(command, port, "nginx", stdout=subprocess.DEVNULL, stderr=log),
    ):
        yield LoadBalancer(port=port)


def remove_tree(path: Path) -> None:
    """Remove a folder of servers' logs and state, whoever owns its files."""
    shutil.rmtree(path, ignore_errors=True)


def _redis() -> Path | None:
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    return Path(found) if Path(found).exists() else None


@dataclass
class Redis:
    """A running Redis server (the Celery broker of the scaled-out orchestration):
    ``url`` (``redis://127.0.0.1:PORT/0``) and ``restart``."""

    port: int
    data_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _start(self) -> None:
        command = [str(_redis()), "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", str(self.data_dir), "--save", "", "--appendonly", "no"]
        log = (self.data_dir / "redis.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        _wait_for_port(self.port, self.process, "redis-server")

    def restart(self, down_s: float) -> None:
        """Stop the server (queued messages are lost, as on a broker host's crash without
        persistence), stay down ``down_s`` seconds, start it again on the same port."""
        _stop(self.process)
        time.sleep(down_s)
        self._start()


@contextlib.contextmanager
def redis_server(root: Path) -> Iterator[Redis]:
    """Start Debian's ``redis-server`` on a free loopback port (no persistence), in
    ``root/redis``; stop it after.

    Raises:
        RuntimeError: the binary is missing (``missing_server``) or it did not start.
    """
    if _redis() is None:
        raise RuntimeError(missing_server("redis"))
    data_dir = root / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    server = Redis(port=free_port(), data_dir=data_dir, process=None)  # type: ignore[arg-type]
    server._start()
    try:
        yield server
    finally:
        _stop(server.process)
