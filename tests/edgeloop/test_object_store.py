"""The object store behaves the same on a local folder and on S3-compatible storage (a real
``moto_server`` on loopback): create-exclusive writes, reads, listing, local copies, and a
clear error when the endpoint is unreachable."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import free_port, require_server, s3_server

from edgeloop.objects import (
    ObjectNotFoundError,
    ObjectStore,
    ObjectStoreUnavailableError,
    check_key,
    open_object_store,
)
from edgeloop.objects.local import LocalObjectStore
from edgeloop.objects.s3 import S3ObjectStore


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    require_server("s3")
    with s3_server(tmp_path_factory.mktemp("moto")) as endpoint:
        endpoint.client().create_bucket(Bucket="edgeloop-objects")  # type: ignore[attr-defined]
        yield endpoint


@pytest.fixture(params=["local", "s3"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ObjectStore:
    if request.param == "local":
        return open_object_store(None, data_dir=tmp_path / "data")
    endpoint = request.getfixturevalue("s3_endpoint")
    for name, value in endpoint.environment().items():
        monkeypatch.setenv(name, value)
    # A prefix per test: the bucket is shared by the module's tests.
    return open_object_store(f"s3://edgeloop-objects/{tmp_path.name}", data_dir=tmp_path / "data")


def test_an_unusable_object_store_url_stops_the_settings(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from edgeloop.settings import LoopSettings

    with pytest.raises(ValidationError, match="s3://bucket/prefix"):
        LoopSettings(data_dir=tmp_path, object_store_url="gs://bucket/frames")
    with pytest.raises(ValidationError, match="names no bucket"):
        LoopSettings(data_dir=tmp_path, object_store_url="s3://")
    assert LoopSettings(data_dir=tmp_path, object_store_url="s3://b/p").object_store_url


def test_the_setting_chooses_the_backend(tmp_path: Path) -> None:
    assert isinstance(open_object_store(None, data_dir=tmp_path), LocalObjectStore)
    assert isinstance(open_object_store("s3://b/p", data_dir=tmp_path), S3ObjectStore)
    folder = open_object_store(f"file://{tmp_path}/elsewhere", data_dir=tmp_path)
    assert isinstance(folder, LocalObjectStore) and folder.root == tmp_path / "elsewhere"
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        open_object_store("gs://bucket", data_dir=tmp_path)
    with pytest.raises(ValueError, match="names no bucket"):
        open_object_store("s3://", data_dir=tmp_path)


@pytest.mark.parametrize("key", ["", "/abs.jpg", "a/../b.jpg", "a//b", "./a", "a\\b", "x" * 1025])
def test_a_key_that_could_escape_or_collide_is_refused(key: str) -> None:
    with pytest.raises(ValueError):
        check_key(key)


def test_put_new_never_replaces_an_object(store: ObjectStore) -> None:
    assert store.put_new("frames/cam-1/f~1.jpg", b"first") is True
    assert store.put_new("frames/cam-1/f~1.jpg", b"second") is False
    assert store.get("frames/cam-1/f~1.jpg") == b"first"
    assert store.exists("frames/cam-1/f~1.jpg")


def test_racing_creates_of_one_key_leave_exactly_one_winner(store: ObjectStore) -> None:
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def create(i: int) -> None:
        barrier.wait()
        results.append(store.put_new("race/key.bin", f"writer {i}".encode()))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]
    assert store.get("race/key.bin").startswith(b"writer ")


def test_put_replaces_and_local_path_follows(store: ObjectStore) -> None:
    store.put("reports/drift.html", b"<p>old</p>")
    assert store.local_path("reports/drift.html").read_bytes() == b"<p>old</p>"
    store.put("reports/drift.html", b"<p>new</p>")
    assert store.local_path("reports/drift.html").read_bytes() == b"<p>new</p>"


def test_missing_objects_say_so(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFoundError, match=r"no object 'nope\.jpg'"):
        store.get("nope.jpg")
    with pytest.raises(ObjectNotFoundError):
        store.local_path("nope.jpg")
    assert not store.exists("nope.jpg")
    store.delete("nope.jpg")  # nothing to delete is not an error


def test_keys_lists_by_prefix_sorted(store: ObjectStore) -> None:
    for key in ("frames/b/2.jpg", "frames/a/1.jpg", "models/v1.onnx"):
        store.put(key, b"x")
    assert list(store.keys("frames/")) == ["frames/a/1.jpg", "frames/b/2.jpg"]
    store.delete("frames/a/1.jpg")
    assert list(store.keys("frames/")) == ["frames/b/2.jpg"]


def test_an_unreachable_endpoint_is_a_clear_error_not_a_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    store = open_object_store("s3://edgeloop-objects/p", data_dir=tmp_path)
    with pytest.raises(ObjectStoreUnavailableError, match="unreachable"):
        store.put_new("frames/a.jpg", b"x")
    with pytest.raises(ObjectStoreUnavailableError):
        store.get("frames/a.jpg")
