"""Every benchmark that runs in seconds at a small size still runs and ends with its TARGET
line (bench/README.md): ``make bench`` broke unseen once, when agents moved to wire
version 3 and bench/edge_fps.py still read version 2. The figures at these sizes mean
nothing, so only the run and the form of the last line are checked; the benchmarks' own
checks (every detection stored, every crop embedded, ...) still run.

Not here: api_reads.py (needs ``make init``'s registry), console.py (a fleet file) and
trigger.py (a real ``dagster dev``), which take minutes at any size. api_reads_postgres.py
runs without a registry (the API then takes the class names from the detections).
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from servers import require_server
from support import REPO_ROOT, SAMPLES_DIR, SEED_PT, require

SMALL = {
    "edge_fps.py": ["--frames", "8", "--repeats", "1", "--chunk", "4", "--batch-frames", "4"],
    "ingest.py": [
        *("--batches", "2", "--frames", "20", "--detections", "2"),
        *("--concurrency", "2", "--rounds", "1"),
    ],
    "vector_publish.py": ["--points", "300", "--dims", "16", "--no-hnsw"],
    "search.py": ["--points", "400", "--dims", "16", "--cameras", "2", "--queries", "20"],
    "datasets.py": ["--frames", "30"],
    "crop_embeddings.py": ["--size", "12", "--boxes", "2", "--batch-size", "4"],
    "store_backends.py": ["--detections", "8000", "--iterations", "2", "--batches", "2"],
    "api_reads_postgres.py": [
        *("--detections", "8000", "--frames", "1000"),
        *("--requests", "3", "--iterations", "1"),
    ],
    "ingest_replicas.py": [
        *("--batches", "2", "--frames", "20", "--detections", "2"),
        *("--clients", "2", "--rounds", "1"),
    ],
    "batch_fetch.py": [
        *("--detections", "8000", "--frames", "1000", "--requests", "5"),
        *("--baseline-batches", "1", "--page-rounds", "1"),
    ],
    "console_live.py": ["--n", "2", "--baseline-n", "1"],
    "audit_grid.py": ["--detections", "8000", "--frames", "1000", "--rounds", "1"],
    "queue_diversity.py": ["--frames", "12", "--labels", "0"],
}
NEEDS_SERVERS = {
    "store_backends.py": ("postgres", "s3"),
    "api_reads_postgres.py": ("postgres",),
    "ingest_replicas.py": ("postgres", "nginx"),
}

TARGET_LINE = re.compile(r"^TARGET (met|NOT met): \S")


@pytest.mark.parametrize("script", sorted(SMALL))
def test_benchmark_runs_and_ends_with_its_target_line(script: str) -> None:
    require(SAMPLES_DIR / "vtest.avi")
    require(SEED_PT)
    for server in NEEDS_SERVERS.get(script, ()):
        require_server(server)
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / script), *SMALL[script]],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    last = done.stdout.strip().splitlines()[-1]
    assert TARGET_LINE.match(last), last
