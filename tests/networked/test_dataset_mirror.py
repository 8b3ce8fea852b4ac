"""Dataset versions on a networked site whose hosts share no folder: each host (a Dagster
run on a worker, an API replica) has its own empty data folder; the JPEG packs go to the
DVC remote on S3-compatible object storage (moto, DVC's own S3 support) and the git
history as one bundle per version (``edgeloop.datasets.mirror``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import require_server, s3_server
from support import labeled_frames

from edgeloop.datasets import DatasetRepo, DatasetRepoError
from edgeloop.datasets.mirror import bundle_key
from edgeloop.settings import LoopSettings

pytestmark = pytest.mark.integration

BUCKET = "edgeloop-datasets"
NAMES = ["Normal", "Fall"]


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopSettings]:
    """A site's settings on a fresh moto endpoint (``AWS_*`` set for this process and the
    git/DVC subprocesses it starts); each host gets them with its own ``data_dir``."""
    require_server("s3")
    with s3_server(tmp_path / "s3") as endpoint:
        endpoint.client().create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
        for name, value in endpoint.environment().items():
            monkeypatch.setenv(name, value)
        yield LoopSettings(data_dir=tmp_path / "unused", object_store_url=f"s3://{BUCKET}/site")


def _host(site: LoopSettings, folder: Path) -> DatasetRepo:
    return DatasetRepo.from_settings(site.model_copy(update={"data_dir": folder}))


def _images(root: Path) -> int:
    return len(list((root / "images").rglob("*.jpg")))


def test_hosts_sharing_no_folder_build_on_one_history(site: LoopSettings, tmp_path: Path) -> None:
    frames = labeled_frames(tmp_path, 14)
    a, b = _host(site, tmp_path / "worker-a"), _host(site, tmp_path / "worker-b")

    v1 = a.commit_version(a.stage(frames[:10], NAMES), message="first ten")
    # b has never seen a's folder: the version comes from the bundle, the JPEGs from S3.
    assert [v.version for v in b.versions()] == ["v1"]
    seen = b.checkout("v1", verify=True)
    assert (seen.version, seen.dvc_md5, _images(seen.root)) == ("v1", v1.dvc_md5, 10)

    v2 = b.commit_version(b.stage(frames, NAMES), message="more")
    assert (v2.version, v2.new_frames) == ("v2", 4)  # built on a's v1, not from scratch
    assert [v.version for v in a.versions()] == ["v1", "v2"]
    assert _images(a.checkout("v2", verify=True).root) == 14

    objects = site.objects()
    assert {bundle_key("v1"), bundle_key("v2")} <= set(objects.keys("datasets/git/"))
    assert any(True for _ in objects.keys("dvc/")), "the packs are not on the DVC remote"
    for host in ("worker-a", "worker-b"):  # no local remote: nothing shared on a disk
        assert not (tmp_path / host / "dvc-remote").exists()


def test_a_version_another_host_published_first_is_taken_back_not_forked(
    site: LoopSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = labeled_frames(tmp_path, 12)
    c, d = _host(site, tmp_path / "worker-c"), _host(site, tmp_path / "worker-d")
    d.versions()  # d's working copy exists (empty history) before c publishes
    assert d.mirror is not None
    staged = d.stage(frames[2:], NAMES)  # d stages its v1 (frames 2-11) ...
    won = c.commit_version(c.stage(frames[:10], NAMES), message="c's v1")  # ... c publishes

    # d does not see c's v1 before publishing (the race: both pulled before either pushed).
    with monkeypatch.context() as patched:
        patched.setattr(d.mirror, "pull", lambda root, branch, have: None)
        with pytest.raises(DatasetRepoError, match="published by another host"):
            d.commit_version(staged, message="d's v1")

    assert [(v.version, v.dvc_md5) for v in d.versions()] == [("v1", won.dvc_md5)]
    assert _images(d.checkout("v1", verify=True).root) == 10  # c's pack, not d's own
    again = d.commit_version(d.stage(frames[2:], NAMES), message="d, on c's v1")
    assert (again.version, again.new_frames) == ("v2", 2)
    assert [v.version for v in c.versions()] == ["v1", "v2"]
