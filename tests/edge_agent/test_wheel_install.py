"""A camera host's install, as the README gives it: the built wheel (`make dist`) with the
`edge` extra alone, in a fresh virtual environment: nothing heavy comes with it, and its
`edgeloop agent` runs on the sample video against a real API (uvicorn, from the checkout),
which stores every frame it sends."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO_ROOT, SAMPLES_DIR, require

from edgeloop.cli.services import start_api
from edgeloop.settings import LoopSettings
from edgeloop.store import frames

pytestmark = pytest.mark.integration

HEAVY = ("torch", "dagster", "mlflow", "pandas", "duckdb", "ultralytics", "fastapi")
"""What a camera host must not get (house rule 2)."""


def _uv(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    """``uv *args``, from its cache first (no network), then from the package index."""
    found = shutil.which("uv")
    uv = [found] if found else [sys.executable, "-m", "uv"]
    for extra in (["--offline"], []):
        done = subprocess.run(
            [*uv, *args, *extra], cwd=cwd, capture_output=True, text=True, timeout=900
        )
        if done.returncode == 0:
            break
    return done


def _requires_by_extra(wheel: Path) -> dict[str, list[str]]:
    """Extra -> its ``Requires-Dist`` requirements (markers dropped), from the wheel's
    METADATA."""
    import zipfile
    from email.parser import Parser

    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(name).decode())
    found: dict[str, list[str]] = {}
    for requirement in metadata.get_all("Requires-Dist") or []:
        spec, _, marker = requirement.partition(";")
        extra = marker.split("extra ==")[-1].strip().strip("'\"") if "extra ==" in marker else ""
        found.setdefault(extra, []).append(spec.strip())
    return found


def test_the_edge_wheel_alone_runs_the_agent_against_a_real_api(
    seed_onnx: Path, tmp_path: Path
) -> None:
    video = require(SAMPLES_DIR / "vtest.avi")
    built = _uv("build", "--wheel", "--out-dir", str(tmp_path / "dist"))
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("edgeloop-*.whl")
    # A GPU camera host's extra brings ONNX Runtime's GPU build, not the CPU one (the two
    # write the same module; uv.lock declares them in conflict).
    requires = _requires_by_extra(wheel)
    assert {r.split(">")[0] for r in requires["edge-gpu"]} == {
        "opencv-python-headless",
        "onnxruntime-gpu",
    }
    assert "onnxruntime" in {r.split(">")[0] for r in requires["edge"]}
    venv = tmp_path / "camera-host"
    made = _uv("venv", "--python", sys.executable, str(venv))
    assert made.returncode == 0, made.stderr[-3000:]
    python = venv / "bin" / "python"
    installed = _uv("pip", "install", "--python", str(python), f"{wheel}[edge]")
    assert installed.returncode == 0, installed.stderr[-3000:]
    present = subprocess.run(
        [
            str(python),
            "-c",
            f"import importlib.util as u; print([m for m in {HEAVY!r} if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert present.stdout.strip() == "[]", present.stdout
    print(f"\nwheel {wheel.name}: {wheel.stat().st_size / 1024:.0f} KiB")

    loop = LoopSettings(data_dir=tmp_path / "loop")
    tokens = json.dumps({"camera-host-token": "agent"})
    with start_api(loop, extra_env={"EDGELOOP_API_TOKENS": tokens}) as api:
        agent = subprocess.run(
            [
                str(venv / "bin" / "edgeloop"),
                *("agent", "--source", str(video), "--camera-id", "cam-wheel"),
                *("--api", api.url, "--model", str(seed_onnx), "--max-frames", "6"),
                *("--state-dir", str(tmp_path / "agent")),
            ],
            env={
                "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
                "HOME": str(tmp_path),
                "EDGELOOP_AGENT_TOKEN": "camera-host-token",
                "COLUMNS": "200",
            },
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        output = agent.stdout + agent.stderr
        assert agent.returncode == 0, output[-3000:]
        assert "execution provider" in output  # the agent's summary table
    with loop.store().connect() as con:
        summary = {row["camera_id"]: row for row in frames.camera_summary(con=con)}
    assert summary["cam-wheel"]["frames"] == 6
