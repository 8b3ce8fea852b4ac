"""The agent never dies on a frame: hostile images among real ones, through the real CLI,
the real seed ONNX model and a real local HTTP server (edgeloop issue 7).

Before the fix, the first thin strip made ``edgeloop agent`` exit 1 (``cv2.resize`` refused
a 0-px side in the letterbox), a 20000-px side or an 8 MiB+ JPEG failed the wire's
validation, and every good frame after them was lost.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest
from support import REPO_ROOT, SAMPLES_DIR, require

from edge_agent.capture import open_source
from edgeloop.wire import MAX_JPEG_BYTES, MAX_JPEG_SIDE, FrameRecord

if TYPE_CHECKING:
    from conftest import RecordingApi

pytestmark = pytest.mark.integration


def _write(path: Path, image: np.ndarray, params: list[int] | None = None) -> Path:
    assert cv2.imwrite(str(path), image, params or []), path
    return path


def hostile_folder(folder: Path) -> dict[str, tuple[int, int] | str]:
    """Real photos and a vtest.avi frame interleaved with hostile files. Returns, by file
    name, the decoded (width, height) a frame must come back with, or the skip reason."""
    folder.mkdir()
    bus = cv2.imread(str(require(SAMPLES_DIR / "bus.jpg")))
    zidane = cv2.imread(str(require(SAMPLES_DIR / "zidane.jpg")))
    with open_source(require(SAMPLES_DIR / "vtest.avi")) as video:
        street = next(iter(video)).image
    rng = np.random.default_rng(7)

    # High entropy 8000x6000: the bus photo scaled up in the middle (people to detect, so
    # the frame is sent with its JPEG), noise on both sides: its quality-95 JPEG is far
    # above the wire's 8 MiB.
    big = rng.integers(0, 256, (6000, 8000, 3), dtype=np.uint8)
    big[:, 1750:6250] = cv2.resize(bus, (4500, 6000), interpolation=cv2.INTER_LINEAR)
    ok, q95 = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok and len(q95) > MAX_JPEG_BYTES  # the premise: too large for the wire as it is

    expect: dict[str, tuple[int, int] | str] = {}

    def image(name: str, img: np.ndarray, params: list[int] | None = None) -> None:
        _write(folder / name, img, params)
        expect[name] = (img.shape[1], img.shape[0])

    def bad(name: str, data: bytes, reason: str) -> None:
        (folder / name).write_bytes(data)
        expect[name] = reason

    bus_bytes = (SAMPLES_DIR / "bus.jpg").read_bytes()
    image("00_bus.jpg", bus)
    image("01_strip_1x4000.png", rng.integers(0, 256, (1, 4000, 3), dtype=np.uint8))
    bad("02_empty.jpg", b"", "empty file")
    image("03_wide_20000x2.png", np.tile(street[:2, :], (1, 27, 1))[:, :20000])
    bad("04_truncated.jpg", bus_bytes[:600], "undecodable image")
    image("05_tall_2x20000.png", np.tile(street[:, :2], (35, 1, 1))[:20000])
    bad("06_text.jpg", b"this is a shopping list, not a photo\n" * 20, "undecodable image")
    image("07_pixel_1x1.png", np.array([[[10, 200, 30]]], np.uint8))
    _write(folder / "08_grey.png", cv2.cvtColor(zidane, cv2.COLOR_BGR2GRAY))
    expect["08_grey.png"] = (1280, 720)
    _write(folder / "09_bgra.png", cv2.cvtColor(bus, cv2.COLOR_BGR2BGRA))
    expect["09_bgra.png"] = (810, 1080)
    _write(folder / "10_sixteen_bit.png", zidane.astype(np.uint16) * 257)
    expect["10_sixteen_bit.png"] = (1280, 720)
    image("11_panorama_100000x1.png", np.tile(street[:1], (1, 131, 1))[:, :100000])
    (folder / "12_noise_8000x6000.jpg").write_bytes(q95.tobytes())
    expect["12_noise_8000x6000.jpg"] = (8000, 6000)
    image("13_street.jpg", street)
    image("14_zidane.jpg", zidane)
    return expect


def test_the_agent_processes_every_decodable_frame_and_skips_the_rest(
    recording_api: RecordingApi, seed_onnx: Path, tmp_path: Path
) -> None:
    expect = hostile_folder(tmp_path / "media")
    names = sorted(expect)
    token = tmp_path / "agent.token"
    token.write_text("t0ken\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGELOOP_AGENT_")} | {
        "EDGELOOP_AGENT_TOKEN_FILE": str(token),
        # Every detection is uncertain, so every frame with one goes with its JPEG.
        "EDGELOOP_AGENT_UNCERTAINTY_LOW": "0.25",
        "EDGELOOP_AGENT_UNCERTAINTY_HIGH": "1.0",
        "EDGELOOP_AGENT_HEARTBEAT_INTERVAL_S": "0.5",  # the recording API has no route: 404
        "COLUMNS": "200",
    }
    result = subprocess.run(
        [
            sys.executable, "-m", "edge_agent",
            "--source", str(tmp_path / "media"),
            "--camera-id", "hostile",
            "--api", recording_api.url,
            "--model", str(seed_onnx),
            "--state-dir", str(tmp_path / "state"),
            "--batch-frames", "4",
            "--model-check-interval", "0",
        ],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = " ".join((result.stdout + result.stderr).replace("│", " ").split())
    assert result.returncode == 0, output[-4000:]

    # Every decodable frame arrived, in order, the good ones after the bad ones included.
    frames = recording_api.frames
    decodable = [i for i, n in enumerate(names) if isinstance(expect[n], tuple)]
    assert [f["frame_index"] for f in frames] == decodable
    assert {h["authorization"] for h in recording_api.headers} == {"Bearer t0ken"}
    for f in frames:
        name = names[f["frame_index"]]
        record = FrameRecord.model_validate(f)  # the wire's own rules, boxes inside the frame
        assert (record.width, record.height) == expect[name], name
        for det in record.detections:
            x1, y1, x2, y2 = det.bbox_xyxy
            assert 0 <= x1 <= x2 <= record.width and 0 <= y1 <= y2 <= record.height, name
        if f["jpeg"] is None:
            continue
        data = base64.urlsafe_b64decode(f["jpeg"])
        jpeg = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        jh, jw = jpeg.shape[:2]
        assert len(data) <= MAX_JPEG_BYTES and max(jw, jh) <= MAX_JPEG_SIDE, name
        # Aspect ratio kept: each side is the original's times one scale, give or take 1 px.
        scale = max(jw, jh) / max(record.width, record.height)
        assert abs(jw - record.width * scale) <= 1 and abs(jh - record.height * scale) <= 1

    by_name = {names[f["frame_index"]]: f for f in frames}
    big = by_name["12_noise_8000x6000.jpg"]
    assert big["detections"], "the people in the 8000x6000 frame were detected at full size"
    assert big["jpeg"] is not None  # sent, downscaled to fit
    for name in ("13_street.jpg", "14_zidane.jpg"):
        assert by_name[name]["detections"], f"{name}, after the bad files, was detected"

    # The summary table says what was skipped and why.
    assert "frames skipped 3" in output
    assert "skipped: empty file 1" in output
    assert "skipped: undecodable image 2" in output
    assert "stream reconnects 0" in output
    assert "06_text.jpg could not be decoded as an image (undecodable image)" in output
    # The missing heartbeat route was logged, and did not stop anything.
    assert "has no /api/agents/heartbeat route" in output


def test_an_unreadable_image_is_skipped_with_its_reason(tmp_path: Path) -> None:
    shutil.copyfile(require(SAMPLES_DIR / "bus.jpg"), tmp_path / "a.jpg")
    shutil.copyfile(require(SAMPLES_DIR / "zidane.jpg"), tmp_path / "b.jpg")
    shutil.copyfile(require(SAMPLES_DIR / "bus.jpg"), tmp_path / "c.jpg")
    with open_source(tmp_path) as source:
        (tmp_path / "b.jpg").unlink()  # listed, then gone before it is read (as root, chmod cannot)
        frames = list(source)
    assert [f.frame_index for f in frames] == [0, 2]
    assert source.skipped == 1 and dict(source.skipped_by_reason) == {"unreadable file": 1}
