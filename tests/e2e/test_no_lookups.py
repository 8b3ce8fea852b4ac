"""Nothing phones home: the agent and the loop's stages run with no reachable resolver and
make no DNS lookup of a non-local name.

The processes run in a network namespace of their own (``ip netns``: loopback only) whose
``resolv.conf`` names a recorder on 127.0.0.1:53 (``dns_recorder.py``) that logs every
query and refuses it. ``no_lookups_driver.py`` runs ``edgeloop init``, ``edgeloop up``
(API, Dagster webserver + daemon + code server, MLflow UI), the agent on the real sample
video, ``labeling_job``, labels through the API, ``retrain_job`` (DVC, ultralytics,
MLflow, ONNX export, evaluation) and ``drift_job`` (Evidently) in Dagster's run workers,
and ``edgeloop status`` — with none of the offline variables set by the caller, since the
processes must set them themselves (``edgeloop.offline``). Any query for a name other
than this machine's own fails the test; the names seen are printed either way.

onnxruntime 1.31's Linux wheel looks up ``mobile.events.data.microsoft.com`` about 10 s
after it is imported unless ``ORT_DISABLE_TELEMETRY=1`` was set first: the agent runs for
15 s so that this would show. The stages took 542 s on 2 CPU cores shared with other
work (init 100 s, `edgeloop up` ready 190 s, the four runs 200 s).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import SAMPLES_DIR, SEED_PT, require

from edgeloop.offline import OFFLINE_ENV

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

HERE = Path(__file__).resolve().parent
PROBE = "edgeloop-recorder-probe.invalid"
"""Looked up once before the run: proves that lookups in the namespace reach the recorder."""

CALLER_SET = (*OFFLINE_ENV, "YOLO_CONFIG_DIR", "DAGSTER_HOME")
"""Variables the test removes from the processes' environment: they must set them."""


def _local_names() -> set[str]:
    host = socket.gethostname()
    return {"localhost", "localhost.localdomain", host, socket.getfqdn(host), PROBE}


def _is_local(name: str) -> bool:
    name = name.rstrip(".").lower()
    return name in _local_names() or name.endswith(".localhost")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


class Namespace:
    """A network namespace with only loopback, whose resolver is the recorder."""

    def __init__(self, name: str, log: Path) -> None:
        self.name = name
        self.log = log
        self.prefix = ["ip", "netns", "exec", name]

    def stop_processes(self) -> None:
        """SIGTERM, then SIGKILL, every process still in the namespace (``ip netns pids``)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = [int(pid) for pid in _ip("netns", "pids", self.name).stdout.split()]
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 20
            while pids and time.monotonic() < deadline:
                pids = [pid for pid in pids if _alive(pid)]
                time.sleep(0.2)

    def queries(self) -> list[str]:
        """The names queried so far, in order (``<qtype> <name>`` lines of the log)."""
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [line.split(" ", 1)[1] for line in lines if " " in line]


@pytest.fixture
def namespace(tmp_path: Path) -> Iterator[Namespace]:
    """``ip netns add``, ``/etc/netns/<ns>/resolv.conf`` -> 127.0.0.1, the recorder in it."""
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (iproute2): network namespaces are needed")
    if os.geteuid() != 0:
        pytest.skip("not root: `ip netns add` needs root (CAP_SYS_ADMIN)")
    name = f"edgeloop-dns-{os.getpid()}"
    added = _ip("netns", "add", name)
    if added.returncode != 0:
        pytest.skip(f"`ip netns add` failed (network namespaces unavailable): {added.stderr}")
    etc = Path("/etc/netns") / name
    ns = Namespace(name, tmp_path / "dns-queries.log")
    try:
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions attempts:1 timeout:1\n")
        recorder = subprocess.Popen(
            [*ns.prefix, sys.executable, str(HERE / "dns_recorder.py"), str(ns.log)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert recorder.stdout is not None
        ready = recorder.stdout.readline().strip()
        assert ready == "ready", recorder.stderr.read() if recorder.stderr else ready
        yield ns
    finally:
        ns.stop_processes()  # the recorder, and whatever a failed run left behind
        _ip("netns", "del", name)
        shutil.rmtree(etc, ignore_errors=True)


def _environment(data_dir: Path) -> dict[str, str]:
    """The caller's environment less the offline variables, on ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if k not in CALLER_SET}
    env["EDGELOOP_DATA_DIR"] = str(data_dir)
    # The daemon's sensors and schedules would add retrain and drift runs of their own (with
    # the full training config): the driver launches each job once instead.
    env["EDGELOOP_PIPELINES_SENSOR_INTERVAL_S"] = "86400"
    env["EDGELOOP_PIPELINES_DRIFT_CRON"] = env["EDGELOOP_PIPELINES_LABELING_CRON"] = "0 0 1 1 *"
    return env


@pytest.mark.timeout(1800)
def test_the_agent_and_the_loop_look_up_no_name(namespace: Namespace, tmp_path: Path) -> None:
    require(SAMPLES_DIR / "vtest.avi")
    require(SEED_PT)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for folder, source in (("samples", SAMPLES_DIR), ("seed", SEED_PT.parent)):
        shutil.copytree(source, data_dir / folder, copy_function=os.link)
    env = _environment(data_dir)

    probe = subprocess.run(
        [
            *namespace.prefix,
            sys.executable,
            "-c",
            f"import socket; socket.getaddrinfo({PROBE!r}, 80)",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "gaierror" in probe.stderr, probe.stderr  # refused: the lookup failed at once
    assert PROBE in namespace.queries(), "lookups in the namespace do not reach the recorder"

    result_path = tmp_path / "driver.json"
    started = time.monotonic()
    driver_cmd = [
        sys.executable,
        str(HERE / "no_lookups_driver.py"),
        str(data_dir),
        str(result_path),
    ]
    driver = subprocess.run(
        [*namespace.prefix, *driver_cmd],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    elapsed = time.monotonic() - started
    queried = namespace.queries()
    names = sorted(set(queried) - {PROBE})
    print(f"\nthe loop's stages took {elapsed:.0f} s in the namespace")
    print(f"DNS queries seen ({len(queried) - queried.count(PROBE)}): {names or 'none'}")
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    print(f"steps (s since start): {result.get('seconds')}")
    tail = (driver.stdout + driver.stderr)[-6000:]
    assert driver.returncode == 0, tail
    assert [name for name in names if not _is_local(name)] == []
    # The stages really ran: every library that could look a name up was loaded.
    assert result["labels"] > 0, result
    assert (result["labeling_job"], result["drift_job"], result["retrain_job"]) == (
        "SUCCESS",
        "SUCCESS",
        "SUCCESS",
    ), tail
    assert result["trigger"] == 202  # the API's own launch, past its stack check
    cameras = {c["camera_id"]: c for c in result["status"]["cameras"]}
    assert cameras["cam-offline"]["frames"] == 30
