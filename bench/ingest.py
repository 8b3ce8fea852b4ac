"""Ingest throughput: detections/s through the API against a raw Arrow insert into DuckDB.

What it measures, in one run on the same machine:
  * api: real uvicorn on loopback (a subprocess), clients POSTing batches
    (``--frames`` frames x ``--detections`` detections per batch, no JPEGs) to
    ``/api/ingest``, in wire version 1 (``IngestBatch``, JSON, an object per frame and per
    detection), version 2 (``IngestBatchColumnar``, JSON, parallel arrays, encoded with the
    agent's ``encode_columnar``) and version 3 (``IngestBatchBinary``, MessagePack with
    typed arrays, the agent's ``ingest_body``: what agents send); end to end: HTTP, parse
    and checks, Arrow build, DuckDB insert and commit, the connection's open and close
    (checkpoint). Run with 1 client (one batch in flight) and with each of
    ``--concurrency`` clients (fleets of agents; default 2 and 4); every run is a fresh
    API on an empty store that gets 2 warm-up batches, then the ``--batches`` timed. Batches
    that wait while another is written are written together, in one transaction when
    all their frames are new (``api.writer.IngestWriter``): with 4 clients that happens,
    with 2 it rarely does.
  * raw: the same rows as pre-built pyarrow tables inserted into a fresh DuckDB file
    with the same schema, after the same 2 warm-up batches (untimed), (``INSERT INTO t
    SELECT * FROM arrow``, a transaction per batch),
    through one connection for all batches (``--rounds`` times, alternating with the
    version-3 API runs so that both see the machine's changing load; the best of each
    counts) and once with a connection opened and closed per batch (the open and the
    closing checkpoint are what the API's writer amortises), and, for context only,
    with 4 batches per transaction (what the API's group commit does at best: the raw
    insert grouped the same way).

Also printed: the API process' CPU time per batch (user + system, from /proc), which
says what the run would give on an idle machine when other work shares the cores.

Usage: ``uv run --frozen python bench/ingest.py [--batches 32] [--concurrency 2 4] [--rounds 3]``.
Target (issue 9): end to end through the API in wire version 3, what agents send (the best
of 1 client and the fleets: what the API sustains), at >= 0.9x the raw Arrow insert through
one connection, a transaction per batch, in the same run; the last line says
``TARGET met: ...`` or ``TARGET NOT met: ...`` with both figures and the fleet size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pyarrow as pa

from edgeloop.cli.services import start_api
from edgeloop.settings import LoopSettings
from edgeloop.store import Store
from edgeloop.wire import (
    IngestBatch,
    encode_binary,
    encode_columnar,
    ingest_media_type,
    parse_ingest_batch,
)

TOKEN = "bench-agent-token"
TARGET_RATIO = 0.9
"""Issue 9: end to end through the API at >= 0.9x a raw Arrow insert through one connection."""
WIDTH, HEIGHT = 768, 576


def make_batch(rng: np.random.Generator, batch_index: int, frames: int, detections: int) -> bytes:
    """One IngestBatch as JSON bytes: boxes inside a 768x576 frame, confidences in [0.25, 1)."""
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=batch_index * frames / 10)
    out = []
    for i in range(frames):
        conf = rng.uniform(0.25, 1.0, detections)
        x1 = rng.uniform(0, WIDTH - 100, detections)
        y1 = rng.uniform(0, HEIGHT - 200, detections)
        dets = [
            {
                "bbox_xyxy": [
                    round(float(x1[j]), 2),
                    round(float(y1[j]), 2),
                    round(float(x1[j]) + 60.5, 2),
                    round(float(y1[j]) + 150.25, 2),
                ],
                "class_id": 0,
                "class_name": "Normal",
                "confidence": round(float(conf[j]), 4),
                "uncertain": bool(0.4 < conf[j] < 0.7),
            }
            for j in range(detections)
        ]
        out.append(
            {
                "frame_key": f"cam-{batch_index % 4}:{batch_index}:{i:06d}",
                "camera_id": f"cam-{batch_index % 4}",
                "frame_index": batch_index * frames + i,
                "captured_at": (start + timedelta(milliseconds=100 * i)).isoformat(),
                "width": WIDTH,
                "height": HEIGHT,
                "quality": {
                    "brightness": 110.5,
                    "contrast": 42.1,
                    "sharpness": 310.7,
                    "saturation": 35.2,
                },
                "inference_ms": 31.4,
                "model_version": "1",
                "detections": dets,
            }
        )
    return json.dumps(
        {"wire_version": "1", "agent_id": "bench", "sent_at": start.isoformat(), "frames": out}
    ).encode()


def post_all(port: int, bodies: list[bytes], concurrency: int) -> tuple[float, int]:
    """POST every body with ``concurrency`` keep-alive clients; returns (seconds, detections)."""
    stored = 0
    lock = threading.Lock()
    queue = list(enumerate(bodies))
    errors: list[str] = []

    def worker() -> None:
        nonlocal stored
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=120,
        ) as client:
            while True:
                with lock:
                    if not queue:
                        return
                    _, body = queue.pop(0)
                response = client.post(
                    "/api/ingest", content=body, headers={"Content-Type": ingest_media_type(body)}
                )
                if response.status_code != 200:
                    errors.append(f"{response.status_code}: {response.text[:300]}")
                    return
                with lock:
                    stored += response.json()["detections"]

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"ingest failed: {errors[0]}")
    return elapsed, stored


def arrow_tables(body: bytes) -> tuple[pa.Table, pa.Table]:
    """The frames and prediction_logs rows of a batch as Arrow tables (built untimed)."""
    batch = json.loads(body)
    now = datetime.now(UTC)
    ts = pa.timestamp("us", tz="UTC")
    frames = batch["frames"]
    dets = [(f, i, d) for f in frames for i, d in enumerate(f["detections"])]
    frames_table = pa.table(
        {
            "frame_key": [f["frame_key"] for f in frames],
            "camera_id": [f["camera_id"] for f in frames],
            "frame_index": pa.array([f["frame_index"] for f in frames], pa.int64()),
            "captured_at": pa.array([datetime.fromisoformat(f["captured_at"]) for f in frames], ts),
            "received_at": pa.array([now] * len(frames), ts),
            "width": pa.array([f["width"] for f in frames], pa.int32()),
            "height": pa.array([f["height"] for f in frames], pa.int32()),
            "brightness": [f["quality"]["brightness"] for f in frames],
            "contrast": [f["quality"]["contrast"] for f in frames],
            "sharpness": [f["quality"]["sharpness"] for f in frames],
            "saturation": [f["quality"]["saturation"] for f in frames],
            "detection_count": pa.array([len(f["detections"]) for f in frames], pa.int32()),
            "mean_confidence": [
                float(np.mean([d["confidence"] for d in f["detections"]])) for f in frames
            ],
            "inference_ms": [f["inference_ms"] for f in frames],
            "model_version": [f["model_version"] for f in frames],
            "agent_id": [batch["agent_id"]] * len(frames),
            "jpeg_path": pa.array([None] * len(frames), pa.string()),
        }
    )
    det_table = pa.table(
        {
            "detection_id": [f"{f['frame_key']}:{i}" for f, i, _ in dets],
            "frame_key": [f["frame_key"] for f, _, _ in dets],
            "camera_id": [f["camera_id"] for f, _, _ in dets],
            "captured_at": pa.array(
                [datetime.fromisoformat(f["captured_at"]) for f, _, _ in dets], ts
            ),
            "class_id": pa.array([d["class_id"] for _, _, d in dets], pa.int32()),
            "class_name": [d["class_name"] for _, _, d in dets],
            "confidence": [d["confidence"] for _, _, d in dets],
            "x1": [d["bbox_xyxy"][0] for _, _, d in dets],
            "y1": [d["bbox_xyxy"][1] for _, _, d in dets],
            "x2": [d["bbox_xyxy"][2] for _, _, d in dets],
            "y2": [d["bbox_xyxy"][3] for _, _, d in dets],
            "uncertain": [d["uncertain"] for _, _, d in dets],
            "model_version": [f["model_version"] for f, _, _ in dets],
        }
    )
    return frames_table, det_table


def raw_insert(
    db_path: Path,
    tables: list[tuple[pa.Table, pa.Table]],
    *,
    connection_per_batch: bool,
    per_transaction: int = 1,
    warm_up: Sequence[tuple[pa.Table, pa.Table]] = (),
) -> tuple[float, int]:
    """Insert pre-built Arrow tables, a transaction per ``per_transaction`` batches (their
    tables concatenated, untimed), into a fresh file that first gets ``warm_up`` (untimed,
    as the API's warm-up batches); returns (seconds, rows)."""
    tables = [
        (
            pa.concat_tables([f for f, _ in tables[i : i + per_transaction]]),
            pa.concat_tables([d for _, d in tables[i : i + per_transaction]]),
        )
        for i in range(0, len(tables), per_transaction)
    ]
    with Store(db_path).connect() as con:
        for frames_table, det_table in warm_up:
            con.register("f", frames_table)
            con.register("d", det_table)
            con.execute("INSERT INTO frames BY NAME SELECT * FROM f")
            con.execute("INSERT INTO prediction_logs BY NAME SELECT * FROM d")
    rows = 0
    start = time.perf_counter()
    con = duckdb.connect(str(db_path))
    for frames_table, det_table in tables:
        if connection_per_batch and con is None:
            con = duckdb.connect(str(db_path))
        assert con is not None
        con.execute("BEGIN TRANSACTION")
        con.register("f", frames_table)
        con.register("d", det_table)
        con.execute("INSERT INTO frames BY NAME SELECT * FROM f")
        con.execute("INSERT INTO prediction_logs BY NAME SELECT * FROM d")
        con.execute("COMMIT")
        if connection_per_batch:
            con.close()
            con = None
        rows += det_table.num_rows
    if con is not None:
        con.close()
    return time.perf_counter() - start, rows


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, s (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def columnar_body(body: bytes, version: str) -> bytes:
    """The same batch as a version-2 body (JSON) or version-3 body (MessagePack), encoded
    as the agent does (``encode_columnar``, then ``encode_binary`` for version 3)."""
    batch = IngestBatch.model_validate_json(body)
    columnar = encode_columnar(batch.frames, agent_id=batch.agent_id, sent_at=batch.sent_at)
    if version == "3":
        return encode_binary(columnar)
    return columnar.model_dump_json().encode()


@dataclass(frozen=True)
class Run:
    name: str
    seconds: float
    detections: int
    cpu_ms_per_batch: float | None = None

    @property
    def rate(self) -> float:
        return self.detections / self.seconds


def api_runs(
    data_dir: Path, version: str, bodies: list[bytes], n: int, client_counts: list[int]
) -> list[Run]:
    """For each number of clients: start the API on an empty store, warm it up (the first
    2 bodies), post the next ``n`` with that many clients and check every detection is
    stored; the API is stopped after each.

    Every run starts on an empty store, as the raw insert does: an insert costs more as
    the tables grow (bench/README.md).
    """
    expected = sum(body_detections(b) for b in bodies[: 2 + n])
    runs = []
    for clients in client_counts:
        run_dir = data_dir / f"{clients}-clients"
        api = start_api(
            LoopSettings(data_dir=run_dir),
            extra_env={"EDGELOOP_API_TOKENS": json.dumps({TOKEN: "agent"})},
        )
        port = int(api.url.rsplit(":", 1)[1])
        pid = api.process.pid
        try:
            post_all(port, bodies[:2], 1)  # warm-up: first connection, kernels, allocator
            wait_idle(pid)  # start-up work in the background (importing MLflow) is done
            cpu0 = cpu_seconds(pid)
            seconds, detections = post_all(port, bodies[2 : 2 + n], clients)
            cpu_ms = (cpu_seconds(pid) - cpu0) / n * 1000
            health = httpx.get(
                f"http://127.0.0.1:{port}/api/health",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=30,
            ).json()
        finally:
            api.stop(timeout_s=30)
        shutil.rmtree(run_dir)
        stored = health["counts"]["detections"]
        if stored != expected:
            raise SystemExit(
                f"wire version {version}, {clients} clients: DuckDB holds {stored} "
                f"detections, expected {expected}"
            )
        name = f"api v{version}, {clients} client{'s' if clients > 1 else ''}"
        runs.append(Run(name, seconds, detections, cpu_ms))
    return runs


def wait_idle(pid: int, *, quiet_s: float = 0.5, timeout_s: float = 60.0) -> None:
    """Wait until process ``pid`` used under 5 % of a core for ``quiet_s`` (or ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    before = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = cpu_seconds(pid)
        if now - before < 0.05 * quiet_s:
            return
        before = now


def body_detections(body: bytes) -> int:
    """Detections in a body of any wire version."""
    batch = parse_ingest_batch(body)
    if isinstance(batch, IngestBatch):
        return sum(len(f.detections) for f in batch.frames)
    return int(batch.arrays().detection_count.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=32, help="timed batches per run")
    parser.add_argument("--frames", type=int, default=500, help="frames per batch")
    parser.add_argument("--detections", type=int, default=20, help="detections per frame")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[2, 4], help="clients of each fleet run"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of raw insert + API in wire version 3"
    )
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    n = args.batches
    per_version = 2 + n
    client_counts = [1, *args.concurrency]
    print(
        f"generating 3 x {per_version} batches of {args.frames} frames x "
        f"{args.detections} detections ..."
    )
    bodies = {
        "1": [make_batch(rng, b, args.frames, args.detections) for b in range(per_version)],
        **{
            version: [
                columnar_body(make_batch(rng, b, args.frames, args.detections), version)
                for b in range(k * per_version, (k + 1) * per_version)
            ]
            for k, version in ((1, "2"), (2, "3"))
        },
    }
    print(
        "  MB per batch: "
        + ", ".join(
            f"wire version {v} {sum(len(b) for b in bs[:n]) / n / 1e6:.2f}"
            for v, bs in bodies.items()
        )
    )

    warm_up = [arrow_tables(b) for b in bodies["1"][:2]]
    tables = [arrow_tables(b) for b in bodies["1"][2 : 2 + n]]
    raws: list[tuple[float, int]] = []
    v3_rounds: list[list[Run]] = []
    with tempfile.TemporaryDirectory(prefix="edgeloop-bench-") as tmp:
        data_dir = Path(tmp)
        load = os.getloadavg()[0]
        json_runs: list[Run] = []
        for version in ("1", "2"):
            json_runs += api_runs(data_dir, version, bodies[version], n, client_counts)
        # Raw inserts and API runs alternate, each into an empty file, so that both see the
        # machine's changing load; the best of each counts.
        for r in range(args.rounds):
            raws.append(
                raw_insert(
                    data_dir / f"raw-{r}.duckdb",
                    tables,
                    connection_per_batch=False,
                    warm_up=warm_up,
                )
            )
            v3_rounds.append(api_runs(data_dir, "3", bodies["3"], n, client_counts))
        raws.append(
            raw_insert(
                data_dir / "raw-last.duckdb", tables, connection_per_batch=False, warm_up=warm_up
            )
        )
        raw_pb_s, raw_pb_rows = raw_insert(
            data_dir / "raw-per-batch.duckdb", tables, connection_per_batch=True, warm_up=warm_up
        )
        grouped_s, grouped_rows = raw_insert(
            data_dir / "raw-grouped.duckdb",
            tables,
            connection_per_batch=False,
            per_transaction=4,
            warm_up=warm_up,
        )

    raw_s, raw_rows = min(raws)
    raw = Run("raw arrow, 1 connection", raw_s, raw_rows)
    v3_runs = [max(runs, key=lambda run: run.rate) for runs in zip(*v3_rounds, strict=True)]
    api = [*json_runs, *v3_runs]
    grouped = Run("raw arrow, 4 batches/txn", grouped_s, grouped_rows)
    runs = [*api, raw, Run("raw arrow, connection/batch", raw_pb_s, raw_pb_rows), grouped]
    dets_per_batch = args.frames * args.detections
    print(f"cpu cores: {os.cpu_count()}, 1-min load average before the API runs: {load:.1f}")
    print(
        "each API run starts on an empty store; wire version 3 and the raw insert: "
        f"the best of {args.rounds} alternating rounds"
    )
    print(f"batches of {args.frames} frames x {args.detections} detections ({dets_per_batch:,})")
    for run in runs:
        cpu = (
            ""
            if run.cpu_ms_per_batch is None
            else f"server cpu {run.cpu_ms_per_batch:.0f} ms/batch"
        )
        print(
            f"{run.name:<28} {run.rate:>10,.0f} detections/s  "
            f"({run.seconds:5.2f} s for {run.detections:,})  {cpu}"
        )
    print(
        "rounds, detections/s: raw arrow 1 connection "
        + ", ".join(f"{rows / secs:,.0f}" for secs, rows in raws)
        + "; api v3 "
        + ", ".join(" / ".join(f"{run.rate:,.0f}" for run in rnd) for rnd in v3_rounds)
    )
    print(
        "ratio api/raw(1 connection): "
        + ", ".join(f"{run.name.removeprefix('api ')} {run.rate / raw.rate:.2f}" for run in api)
    )
    v3 = max(v3_runs, key=lambda run: run.rate)
    ratio = v3.rate / raw.rate
    print(
        f"context, not the target: {v3.name} against the raw insert grouped 4 batches per "
        f"transaction as the API's group commit does at best: {v3.rate / grouped.rate:.2f}x"
    )
    per_core = dets_per_batch / (min(r.cpu_ms_per_batch or math.inf for r in v3_runs) / 1000)
    print(
        f"wire version 3: the server's CPU time per batch allows {per_core:,.0f} detections/s per core"
    )
    print(
        f"TARGET {'met' if ratio >= TARGET_RATIO else 'NOT met'}: end to end through the API "
        f"(wire version 3, {v3.name.removeprefix('api v3, ')}) {v3.rate:,.0f} detections/s = "
        f"{ratio:.2f}x a raw Arrow insert through one connection in the same run "
        f"({raw.rate:,.0f}/s); target >= {TARGET_RATIO}x"
    )


if __name__ == "__main__":
    main()
