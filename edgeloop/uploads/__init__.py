"""Uploaded images for prediction batches: the limits, and reading a request's files or one
zip into checked images, all before anything is stored.

Every file is checked, and every image decoded, before the caller writes anything: a bad
upload is refused whole (``UploadRejectedError``, with the HTTP status the API answers and a
message that names the file and the limit), so a hostile upload changes nothing.

| threat | guard |
|---|---|
| a huge file or request | ``max_image_bytes``, ``max_request_bytes`` (bounded reads, ``read_bounded``) |
| too many files | ``max_images``, ``max_zip_entries`` |
| a zip bomb | each entry's declared size against ``max_image_bytes`` and the declared total against ``max_zip_bytes``, then a bounded read of each entry (a header that lies is caught when the bytes exceed the limit, or by zipfile's CRC check) |
| path names in a zip (``../x``, ``/etc/x``, ``C:\\x``) | refused; ``dir/x.jpg`` is kept as ``x.jpg`` (``sanitise_name``) |
| symlinks and other non-regular entries, encrypted entries | refused |
| not an image, a truncated image | Pillow identifies and fully decodes each file; anything else is refused |
| a decompression bomb (an image header claiming huge dimensions) | ``max_pixels``, checked from the header before decoding |

The stored form of an image is a JPEG: a JPEG is kept byte for byte, any other format
(PNG, WebP, BMP) is encoded once as a JPEG (quality ``REENCODE_QUALITY``). Detections are
made on the stored JPEG decoded by OpenCV (``decode_bgr``), as the thumbnails and the
labeling page see it, so every run of a batch sees the same pixels.
"""

from __future__ import annotations

import hashlib
import io
import re
import stat
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import IO

import numpy as np
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024
FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
"""Image formats an upload may hold (Pillow's format names)."""
REENCODE_QUALITY = 95
"""JPEG quality a non-JPEG upload is stored at (OpenCV ``IMWRITE_JPEG_QUALITY``)."""
OBJECT_PREFIX = "uploads/"
NAME_MAX_CHARS = 128
ZIP_MAGIC = b"PK\x03\x04"
ZIP_EMPTY_MAGIC = b"PK\x05\x06"
SKIPPED_ZIP_FOLDERS = ("__MACOSX/",)
"""Folders of metadata some zip tools add (macOS Finder's resource forks), left out."""


class UploadLimits(BaseSettings):
    """Limits of one upload (``EDGELOOP_UPLOAD_*``); the API's body limit
    (``EDGELOOP_API_MAX_BODY_BYTES``) caps a request before any of these."""

    model_config = SettingsConfigDict(env_prefix="EDGELOOP_UPLOAD_", extra="ignore")

    max_images: int = Field(50, ge=1, le=1000, description="Images in one batch.")
    max_image_bytes: int = Field(
        20 * MIB, gt=0, description="Largest image file, bytes (in a request or a zip)."
    )
    max_request_bytes: int = Field(
        64 * MIB, gt=0, description="Largest total of the uploaded files of one request, bytes."
    )
    max_zip_entries: int = Field(
        200, ge=1, description="Entries of a zip (folders included) read at most."
    )
    max_zip_bytes: int = Field(
        256 * MIB,
        gt=0,
        description="Largest total uncompressed size of a zip's entries, bytes (declared).",
    )
    max_pixels: int = Field(
        40_000_000,
        gt=0,
        description=(
            "Largest image, width x height px (a 40 MP camera; Pillow warns of a "
            "decompression bomb at 89.5 MP)."
        ),
    )


class UploadRejectedError(ValueError):
    """The upload is refused; nothing of it may be stored.

    Attributes:
        status_code: the HTTP status the API answers: 413 for a limit passed, 422 for
            content that is not what was promised (not an image, truncated, a bad zip).
    """

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


def too_large(message: str) -> UploadRejectedError:
    return UploadRejectedError(413, message)


def unprocessable(message: str) -> UploadRejectedError:
    return UploadRejectedError(422, message)


@dataclass(frozen=True)
class UploadedFile:
    """A file of the request: its name as sent, and its bytes."""

    name: str
    data: bytes


@dataclass(frozen=True)
class CheckedImage:
    """An image that passed every check, in its stored form.

    Attributes:
        file_name: the sanitised base name.
        jpeg: the bytes to store (the upload itself when it was a JPEG).
        sha256: hex sha256 of ``jpeg``.
        width, height: of the image as decoded by OpenCV from ``jpeg``, px.
    """

    file_name: str
    jpeg: bytes
    sha256: str
    width: int
    height: int

    @property
    def object_key(self) -> str:
        """``uploads/<sha[:2]>/<sha>.jpg``: content-addressed, so an image uploaded twice
        is one object."""
        return f"{OBJECT_PREFIX}{self.sha256[:2]}/{self.sha256}.jpg"


def read_bounded(stream: IO[bytes], limit: int, what: str) -> bytes:
    """At most ``limit`` bytes of ``stream``.

    Raises:
        UploadRejectedError: 413 when ``stream`` holds more than ``limit`` bytes.
    """
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise too_large(f"{what} is larger than {limit} bytes")
    return data


def sanitise_name(name: str, index: int) -> str:
    """The base name of ``name`` (either kind of separator), kept to letters, digits,
    space and ``._-()``, at most ``NAME_MAX_CHARS``; ``image-<index>.jpg`` when nothing is
    left."""
    base = re.split(r"[\\/]", name)[-1]
    base = re.sub(r"[^A-Za-z0-9 ._()-]", "_", base).strip(" .")
    return base[-NAME_MAX_CHARS:] or f"image-{index}.jpg"


def is_zip(data: bytes) -> bool:
    """True when ``data`` starts like a zip archive (a local file header, or an empty one)."""
    return data.startswith((ZIP_MAGIC, ZIP_EMPTY_MAGIC))


def _zip_member_name(info: zipfile.ZipInfo) -> str:
    name = info.filename
    if (
        PurePosixPath(name).is_absolute()
        or PureWindowsPath(name).is_absolute()
        or PureWindowsPath(name).drive
        or ".." in re.split(r"[\\/]", name)
    ):
        raise unprocessable(
            f"zip entry {name!r} has an absolute path or '..': entries must be plain files "
            "or files in folders"
        )
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0: no Unix file type recorded
    if kind == stat.S_IFLNK:
        raise unprocessable(f"zip entry {name!r} is a symbolic link; only regular files")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise unprocessable(f"zip entry {name!r} is not a regular file")
    if info.flag_bits & 0x1:
        raise unprocessable(f"zip entry {name!r} is encrypted")
    return name


def files_from_zip(data: bytes, limits: UploadLimits) -> list[UploadedFile]:
    """The regular files of the zip ``data`` (folders and ``SKIPPED_ZIP_FOLDERS`` left
    out), named by their path in the zip.

    Raises:
        UploadRejectedError: 422 for a corrupt zip or an entry that is not a plain regular file
            (see the module's table); 413 for too many entries, or declared or actual sizes
            past the limits.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as exc:
        raise unprocessable(f"the zip cannot be read: {exc}") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_zip_entries:
            raise too_large(
                f"the zip has {len(infos)} entries; at most {limits.max_zip_entries} are read"
            )
        members = [i for i in infos if not i.filename.startswith(SKIPPED_ZIP_FOLDERS)]
        names = [_zip_member_name(i) for i in members]
        declared = sum(i.file_size for i in members)
        if declared > limits.max_zip_bytes:
            raise too_large(
                f"the zip's entries declare {declared} bytes uncompressed; at most "
                f"{limits.max_zip_bytes} (a zip bomb?)"
            )
        files = []
        for info, name in zip(members, names, strict=True):
            if info.is_dir():
                continue
            if info.file_size > limits.max_image_bytes:
                raise too_large(
                    f"zip entry {name!r} declares {info.file_size} bytes; an image may have "
                    f"at most {limits.max_image_bytes}"
                )
            try:
                with archive.open(info) as member:
                    body = read_bounded(member, limits.max_image_bytes, f"zip entry {name!r}")
            except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError) as exc:
                raise unprocessable(f"zip entry {name!r} cannot be read: {exc}") from None
            files.append(UploadedFile(name=name, data=body))
    return files


def check_images(files: Sequence[UploadedFile], limits: UploadLimits) -> list[CheckedImage]:
    """Decode and check every file (in order); the stored form of each.

    Raises:
        UploadRejectedError: 422 when there is no file, or one is not a complete image of
            ``FORMATS``; 413 for more than ``max_images`` files, or an image past
            ``max_pixels`` or ``max_image_bytes``.
    """
    if not files:
        raise unprocessable("no image: send image files, or one zip of images")
    if len(files) > limits.max_images:
        raise too_large(
            f"{len(files)} images; a batch has at most {limits.max_images} "
            "(EDGELOOP_UPLOAD_MAX_IMAGES)"
        )
    return [_check_image(f, i, limits) for i, f in enumerate(files)]


def _check_image(upload: UploadedFile, index: int, limits: UploadLimits) -> CheckedImage:
    import cv2
    from PIL import Image

    name = sanitise_name(upload.name, index)
    if len(upload.data) > limits.max_image_bytes:
        raise too_large(f"{name}: larger than {limits.max_image_bytes} bytes")
    try:
        image = Image.open(io.BytesIO(upload.data))
    except Exception:  # UnidentifiedImageError, or what a plugin raises on hostile bytes
        # (a process that imported ultralytics has its wrapper as Image.open, which raises
        # ModuleNotFoundError where Pillow says "not an image").
        raise unprocessable(
            f"{name}: not an image (expected one of {', '.join(FORMATS)})"
        ) from None
    with image:
        if image.format not in FORMATS:
            raise unprocessable(f"{name}: a {image.format} image; send one of {', '.join(FORMATS)}")
        width, height = image.size
        if width * height > limits.max_pixels:
            raise too_large(f"{name}: {width}x{height} px is more than {limits.max_pixels} pixels")
        try:
            image.load()  # a truncated file raises here (Pillow refuses truncated images)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise unprocessable(f"{name}: the image cannot be decoded ({exc})") from None
        if image.format == "JPEG":
            jpeg = upload.data
        else:
            rgb = np.asarray(image.convert("RGB"))
            ok, buffer = cv2.imencode(
                ".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, REENCODE_QUALITY]
            )
            if not ok:  # pragma: no cover - OpenCV encodes any decoded RGB image
                raise unprocessable(f"{name}: the image cannot be encoded as JPEG")
            jpeg = bytes(buffer.tobytes())
    decoded = decode_bgr(jpeg)
    if decoded is None:
        raise unprocessable(f"{name}: OpenCV cannot decode the image")
    return CheckedImage(
        file_name=name,
        jpeg=jpeg,
        sha256=hashlib.sha256(jpeg).hexdigest(),
        width=int(decoded.shape[1]),
        height=int(decoded.shape[0]),
    )


def decode_bgr(jpeg: bytes) -> np.ndarray | None:
    """The stored JPEG as ``(H, W, 3) uint8 BGR`` (OpenCV ``imdecode``, which applies the
    EXIF orientation, as browsers do), or None when OpenCV cannot decode it."""
    import cv2

    try:
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:  # e.g. more pixels than OpenCV's CV_IO_MAX_IMAGE_PIXELS
        return None
    return image if image is not None else None


def read_upload(
    files: Sequence[UploadedFile], limits: UploadLimits
) -> tuple[str, list[CheckedImage]]:
    """The checked images of a request's files: images, or exactly one zip of images.

    Returns:
        ``(source, images)``: source ``files`` or ``zip``.

    Raises:
        UploadRejectedError: see ``files_from_zip`` and ``check_images``; 422 for a zip sent
            beside other files; 413 when the files total more than ``max_request_bytes``.
    """
    total = sum(len(f.data) for f in files)
    if total > limits.max_request_bytes:
        raise too_large(f"the files total {total} bytes; at most {limits.max_request_bytes}")
    zips = [f for f in files if is_zip(f.data)]
    if zips and len(files) > 1:
        raise unprocessable("send one zip, or image files, not both")
    if zips:
        return "zip", check_images(files_from_zip(zips[0].data, limits), limits)
    return "files", check_images(files, limits)
