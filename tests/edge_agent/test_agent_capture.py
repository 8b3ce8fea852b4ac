"""Frame sources: image directories with a corrupt file, video stride, unopenable sources, live streams."""

from __future__ import annotations

import functools
import shutil
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
from support import SAMPLES_DIR, require

from edge_agent.capture import LiveSource, SourceError, open_source


def _sample(name: str) -> Path:
    return require(SAMPLES_DIR / name)


def test_image_dir_sorted_and_corrupt_image_skipped(tmp_path: Path, caplog) -> None:
    shutil.copyfile(_sample("bus.jpg"), tmp_path / "b.jpg")
    shutil.copyfile(_sample("zidane.jpg"), tmp_path / "d.jpg")
    (tmp_path / "c.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    with open_source(tmp_path) as source:
        frames = list(source)
    assert [f.frame_index for f in frames] == [0, 2]
    assert frames[0].image.shape == (1080, 810, 3) and frames[0].image.dtype == np.uint8
    assert frames[1].image.shape == (720, 1280, 3)
    assert source.skipped == 1
    assert "c.jpg could not be decoded" in caplog.text
    assert frames[0].captured_at.tzinfo is not None
    assert frames[0].source_id != frames[1].source_id


def test_video_frames_are_bgr_with_stable_source_id() -> None:
    path = _sample("vtest.avi")
    with open_source(path) as source:
        first = [f for _, f in zip(range(3), source, strict=False)]
    assert [f.frame_index for f in first] == [0, 1, 2]
    assert first[0].image.shape == (576, 768, 3) and first[0].image.dtype == np.uint8
    with open_source(str(path)) as again:
        assert next(iter(again)).source_id == first[0].source_id
    # The same frame as OpenCV decodes it directly.
    cap = cv2.VideoCapture(str(path))
    ok, direct = cap.read()
    cap.release()
    assert ok and np.array_equal(direct, first[0].image)


def test_fps_strides_through_a_file() -> None:
    with open_source(_sample("vtest.avi"), fps=2.5) as source:  # 10 fps source → every 4th frame
        indices = [f.frame_index for _, f in zip(range(4), source, strict=False)]
    assert indices == [0, 4, 8, 12]


def _short_video(path: Path, frames: int, fps: float) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), i * 20, np.uint8))
    writer.release()
    return path


def test_realtime_replay_paces_frames_at_the_files_rate(tmp_path: Path) -> None:
    video = _short_video(tmp_path / "clip.avi", frames=6, fps=20.0)
    started = time.monotonic()
    with open_source(video, replay="realtime") as source:
        indices = [f.frame_index for f in source]
    assert indices == [0, 1, 2, 3, 4, 5]
    assert time.monotonic() - started >= 5 / 20.0 - 0.01  # the 6th frame is due at 0.25 s
    started = time.monotonic()
    with open_source(video) as fast:
        assert len(list(fast)) == 6
    assert time.monotonic() - started < 0.25


def test_loop_replay_starts_again_with_indices_that_keep_counting(tmp_path: Path) -> None:
    video = _short_video(tmp_path / "clip.avi", frames=5, fps=200.0)
    with open_source(video, replay="loop", start_frame=3) as source:
        frames = [f for _, f in zip(range(7), source, strict=False)]
    assert [f.frame_index for f in frames] == [3, 4, 5, 6, 7, 8, 9]
    # Index 5 is the file's frame 0 again: the same pixels, a new (unique) index.
    assert not np.array_equal(frames[2].image, frames[0].image)
    assert abs(int(frames[2].image.mean()) - 0) <= 2 and abs(int(frames[0].image.mean()) - 60) <= 2


@pytest.mark.parametrize("name", ["missing.avi", "missing_dir/"])
def test_missing_source_names_it(tmp_path: Path, name: str) -> None:
    with pytest.raises(SourceError, match=name.rstrip("/")):
        open_source(tmp_path / name)


def test_undecodable_video_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "camera.avi"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(SourceError, match=r"cannot open video source .*camera\.avi"):
        open_source(bad)


def test_empty_image_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="holds no images"):
        open_source(tmp_path)


def test_unreachable_stream_is_a_clear_error() -> None:
    with pytest.raises(SourceError, match=r"rtsp://127\.0\.0\.1:9/cam"):
        open_source("rtsp://127.0.0.1:9/cam")


@pytest.fixture
def http_samples():
    handler = functools.partial(
        SimpleHTTPRequestHandler, directory=str(_sample("vtest.avi").parent)
    )
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_live_stream_drops_frames_rather_than_lagging(http_samples: str) -> None:
    import time

    source = open_source(f"{http_samples}/vtest.avi")
    assert isinstance(source, LiveSource)
    with source:
        frames = []
        for frame in source:
            frames.append(frame)
            time.sleep(0.05)  # a slow consumer: the capture thread runs ahead
            if len(frames) == 5:
                break
    indices = [f.frame_index for f in frames]
    assert indices == sorted(set(indices))
    assert source.dropped > 0 and indices[-1] > 4
    assert source.source_id.startswith("s") and source.source_id.endswith("Z")
    assert frames[0].image.shape == (576, 768, 3)
