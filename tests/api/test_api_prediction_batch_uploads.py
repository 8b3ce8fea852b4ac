"""Hostile uploads to ``POST /api/prediction-batches``: each gets a clear 4xx and changes
nothing (no row in any prediction-batch table, no object in the object store). Every case
is refused before a model is needed, so the app runs without a registry."""

from __future__ import annotations

import io
import stat
import zipfile
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
from api_support import AGENT, LABELER, api_settings_for, app_without_registry
from fastapi.testclient import TestClient
from support import SAMPLES_DIR, require

from edgeloop.settings import LoopSettings
from edgeloop.store import prediction_batches as pb
from edgeloop.uploads import MIB, UploadLimits

LIMITS = UploadLimits(
    max_images=3,
    max_image_bytes=MIB,
    max_request_bytes=2 * MIB,
    max_zip_entries=5,
    max_zip_bytes=3 * MIB,
    max_pixels=4_000_000,
)
File = tuple[str, bytes, str]


def bus() -> bytes:
    return require(SAMPLES_DIR / "bus.jpg").read_bytes()


def zipped(*entries: tuple[str | zipfile.ZipInfo, bytes], level: int = 6) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as z:
        for name, data in entries:
            z.writestr(name, data)
    return out.getvalue()


def symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def lying_zip() -> bytes:
    """A zip whose one entry (2 MiB of zeros) declares 1,000 bytes in both headers: the
    bounded read stops at the declared size and zipfile's CRC check refuses it."""
    data = bytearray(zipped(("liar.jpg", bytes(2 * MIB)), level=9))
    central = data.index(b"PK\x01\x02")
    for offset in (22, central + 24):  # uncompressed size (APPNOTE 4.3.7, 4.3.12)
        data[offset : offset + 4] = (1000).to_bytes(4, "little")
    return bytes(data)


def png_claiming(width: int, height: int) -> bytes:
    ok, png = cv2.imencode(".png", np.zeros((height, width), np.uint8))
    assert ok
    return png.tobytes()


def jpg(name: str, data: bytes) -> File:
    return (name, data, "image/jpeg")


def zip_file(data: bytes) -> File:
    return ("upload.zip", data, "application/zip")


CASES: dict[str, tuple[list[File], int, str]] = {
    "huge file": ([jpg("big.jpg", b"\xff\xd8\xff" + bytes(MIB))], 413, "larger than 1048576"),
    "huge request": (
        [jpg(f"{i}.jpg", bytes(900_000)) for i in range(3)],
        413,
        "total more than 2097152",
    ),
    "truncated JPEG": (
        [jpg("cut.jpg", bus()[: len(bus()) // 2])],
        422,
        "cut.jpg: the image cannot be decoded",
    ),
    "text named .jpg": (
        [jpg("notes.jpg", b"just some text, not pixels\n" * 100)],
        422,
        "notes.jpg: not an image",
    ),
    "GIF": ([jpg("anim.gif", b"GIF89a" + bytes(64))], 422, "anim.gif"),
    "too many files": ([jpg(f"{i}.jpg", bus()) for i in range(4)], 413, "at most 3"),
    "pixel bomb": ([jpg("wide.png", png_claiming(4000, 1001))], 413, "more than 4000000 pixels"),
    "zip bomb": (
        [zip_file(zipped(("bomb.jpg", bytes(64 * MIB)), level=9))],
        413,
        "zip bomb",
    ),
    "zip entry too large": (
        [zip_file(zipped(("big.jpg", bytes(2 * MIB)), level=9))],
        413,
        "declares 2097152 bytes",
    ),
    "zip entry that lies about its size": ([zip_file(lying_zip())], 422, "Bad CRC-32"),
    "zip ../ path": ([zip_file(zipped(("../evil.jpg", bus())))], 422, "absolute path or '..'"),
    "zip absolute path": (
        [zip_file(zipped(("/etc/evil.jpg", bus())))],
        422,
        "absolute path or '..'",
    ),
    "zip windows drive": (
        [zip_file(zipped(("C:\\evil.jpg", bus())))],
        422,
        "absolute path or '..'",
    ),
    "zip symlink": (
        [zip_file(zipped(("a.jpg", bus()), symlink("b.jpg", "/etc/passwd")))],
        422,
        "symbolic link",
    ),
    "zip with too many entries": (
        [zip_file(zipped(*((f"{i}.jpg", b"x") for i in range(6))))],
        413,
        "6 entries",
    ),
    "zip beside an image": (
        [zip_file(zipped(("a.jpg", bus()))), jpg("b.jpg", bus())],
        422,
        "not both",
    ),
    "corrupt zip": ([zip_file(b"PK\x03\x04" + bytes(100))], 422, "the zip cannot be read"),
    "zip of a text file": ([zip_file(zipped(("readme.jpg", b"hello")))], 422, "not an image"),
}


@pytest.fixture
def client(loop_settings: LoopSettings) -> Iterator[TestClient]:
    app = app_without_registry(api_settings_for(loop_settings, uploads=LIMITS))
    with TestClient(app) as test_client:
        yield test_client


def nothing_stored(loop: LoopSettings) -> None:
    with loop.store().connect() as con:
        assert set(pb.counts(con=con).values()) == {0}
    assert list(loop.objects().keys("uploads/")) == []


@pytest.mark.backends
@pytest.mark.parametrize("case", list(CASES))
def test_hostile_upload_is_refused_and_changes_nothing(
    case: str, client: TestClient, loop_settings: LoopSettings
) -> None:
    files, code, message = CASES[case]
    response = client.post(
        "/api/prediction-batches", headers=LABELER, files=[("files", f) for f in files]
    )
    assert response.status_code == code, response.text
    assert message in response.json()["detail"]
    nothing_stored(loop_settings)


@pytest.mark.backends
def test_a_good_upload_without_a_production_model_is_503_and_stores_nothing(
    client: TestClient, loop_settings: LoopSettings
) -> None:
    """Checked, then refused because no version has the alias: still nothing stored."""
    response = client.post(
        "/api/prediction-batches", headers=LABELER, files=[("files", jpg("bus.jpg", bus()))]
    )
    assert response.status_code == 503 and "edgeloop init" in response.json()["detail"]
    nothing_stored(loop_settings)


@pytest.mark.parametrize(
    ("headers", "code"), [({}, 401), (AGENT, 403)], ids=["no token", "agent token"]
)
def test_uploads_need_a_labeler(
    headers: dict[str, str], code: int, client: TestClient, loop_settings: LoopSettings
) -> None:
    response = client.post(
        "/api/prediction-batches", headers=headers, files=[("files", jpg("bus.jpg", bus()))]
    )
    assert response.status_code == code
    nothing_stored(loop_settings)


def test_no_file_and_both_model_choices_are_422(client: TestClient) -> None:
    assert client.post("/api/prediction-batches", headers=LABELER).status_code == 422
    both = client.post(
        "/api/prediction-batches",
        headers=LABELER,
        data={"model_version": "1", "alias": "staging"},
        files=[("files", jpg("bus.jpg", bus()))],
    )
    assert both.status_code == 422 and "not both" in both.json()["detail"]
    assert client.get("/api/prediction-batches/7", headers=LABELER).status_code == 404
    assert client.get("/api/prediction-batches/7/images/0.jpg", headers=LABELER).status_code == 404
