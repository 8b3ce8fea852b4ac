"""The store's linger: a busy process keeps the DuckDB file open between connections, and
gives it up at once when another process asks for it (``<file>.wanted``)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from edgeloop.store import Store

_OPEN_ONCE = "import duckdb, sys; duckdb.connect(sys.argv[1]).close()"
_WAIT_FOR_FILE = """
import sys, time
from edgeloop.store import Store
start = time.perf_counter()
with Store(sys.argv[1], lock_timeout_s=60).connect() as con:
    con.execute("SELECT count(*) FROM frames").fetchall()
print(f"{time.perf_counter() - start:.3f}")
"""


def _other_process_can_open(path: Path) -> bool:
    """True when a separate process opens the file at its first try (nobody holds it)."""
    result = subprocess.run([sys.executable, "-c", _OPEN_ONCE, str(path)], capture_output=True)
    return result.returncode == 0


def test_a_lingering_store_holds_the_file_then_releases_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "edgeloop.duckdb", linger_s=30, max_hold_s=60)
    with store.connect() as con:
        con.execute("SELECT 1").fetchall()
    assert not _other_process_can_open(store.path)  # held open between connections
    store.close()
    assert _other_process_can_open(store.path)


def test_an_idle_store_releases_the_file_after_the_linger(tmp_path: Path) -> None:
    store = Store(tmp_path / "edgeloop.duckdb", linger_s=0.2, max_hold_s=60)
    with store.connect():
        pass
    time.sleep(1.0)
    assert _other_process_can_open(store.path)
    # Lingers again, now long enough that a subprocess's start on a loaded machine (over
    # 0.2 s) cannot outlast it.
    store.linger_s = 30
    with store.connect() as con:  # opens again, and lingers again
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
    assert not _other_process_can_open(store.path)
    store.close()


def test_a_store_without_linger_closes_the_file_with_each_connection(tmp_path: Path) -> None:
    store = Store(tmp_path / "edgeloop.duckdb")
    with store.connect():
        pass
    assert _other_process_can_open(store.path)


def test_a_waiting_process_gets_the_file_while_this_one_stays_busy(tmp_path: Path) -> None:
    """Without the ``.wanted`` marker the other process would wait for ``max_hold_s``
    (60 s here) while this one keeps connecting; with it, the lingering store lets go."""
    store = Store(tmp_path / "edgeloop.duckdb", linger_s=30, max_hold_s=60)
    with store.connect():
        pass
    busy = threading.Event()
    stop = threading.Event()
    served = 0

    def keep_busy() -> None:  # a steady stream of requests, as the API under load
        nonlocal served
        while not stop.is_set():
            try:
                with store.connect() as con:
                    con.execute("SELECT count(*) FROM frames").fetchall()
                served += 1
            except Exception:  # the other process holds the file now: retried
                pass
            busy.set()
            time.sleep(0.005)

    worker = threading.Thread(target=keep_busy, daemon=True)
    worker.start()
    busy.wait(5)
    try:
        result = subprocess.run(
            [sys.executable, "-c", _WAIT_FOR_FILE, str(store.path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        stop.set()
        worker.join(70)
        store.close()
    assert result.returncode == 0, result.stderr
    waited_s = float(result.stdout.strip())
    print(f"\nthe other process got the file after {waited_s:.2f} s ({served} connections here)")
    assert waited_s < 10.0  # far below the 60 s max hold it would otherwise wait
    assert served > 0
