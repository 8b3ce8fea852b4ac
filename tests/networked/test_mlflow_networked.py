"""MLflow on the networked engines: the registry in PostgreSQL, the artifacts (model files)
in S3-compatible object storage. A model registered from one data folder is served to the
agents by an API whose data folder is another, empty one (an API replica on another
machine), byte for byte. Real PostgreSQL 15, real moto S3, real MLflow store."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopdata import register_model
from servers import Postgres, require_server, s3_server

sys.path.insert(0, str(Path(__file__).parents[1] / "api"))
from api_support import AGENT, TOKENS
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import ApiSettings
from edgeloop.offline import configure_offline_environment
from edgeloop.registry import PRODUCTION
from edgeloop.settings import LoopSettings

pytestmark = pytest.mark.integration

BUCKET = "edgeloop-mlflow"


@pytest.fixture
def networked(
    tmp_path: Path,
    postgres: Postgres,
    postgres_database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[LoopSettings, LoopSettings]]:
    """Two loop hosts' settings (data folders of their own) on one PostgreSQL database for
    the tables, one for MLflow, and one bucket."""
    import psycopg

    require_server("s3")
    mlflow_db = postgres_database.rsplit("/", 1)[1] + "_mlflow"
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {mlflow_db}".encode())
    with s3_server(tmp_path / "s3") as s3:
        s3.client().create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
        for name, value in s3.environment().items():
            monkeypatch.setenv(name, value)
        common = {
            "database_url": postgres_database,
            "object_store_url": f"s3://{BUCKET}/site",
            "mlflow_tracking_uri": postgres.url_for(mlflow_db).replace(
                "postgresql://", "postgresql+psycopg://"
            ),
        }
        yield (
            LoopSettings(data_dir=tmp_path / "host-a", **common),  # type: ignore[arg-type]
            LoopSettings(data_dir=tmp_path / "host-b", **common),  # type: ignore[arg-type]
        )
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {mlflow_db} WITH (FORCE)".encode())


def test_a_model_registered_on_one_host_is_served_by_an_api_on_another(
    networked: tuple[LoopSettings, LoopSettings], tmp_path: Path
) -> None:
    trainer, replica = networked
    configure_offline_environment(tmp_path / "ultralytics")
    work = tmp_path / "model"
    work.mkdir()
    onnx = b"\x08\x07fake-onnx-model" * 256
    (work / "best.pt").write_bytes(b"not really torch weights")
    (work / "best.onnx").write_bytes(onnx)
    version = register_model(
        trainer,
        pt_path=work / "best.pt",
        onnx_path=work / "best.onnx",
        class_names=["Normal", "Fall"],
        alias=PRODUCTION,
    )
    assert version == "1"
    # The artifacts went to the bucket, not to the trainer's data folder.
    assert any(key.endswith("best.onnx") for key in trainer.objects().keys("mlflow/artifacts/"))
    assert not (trainer.artifact_root).exists()

    settings = ApiSettings(loop=replica, tokens=TOKENS, warm_registry=False)  # type: ignore[arg-type]
    with TestClient(create_app(settings)) as client:
        response = client.get("/api/models/production/onnx", headers=AGENT)
        assert response.status_code == 200, response.text
        assert response.content == onnx
        assert response.headers["X-Model-Version"] == "1"
        assert response.headers["X-Model-Sha256"] == hashlib.sha256(onnx).hexdigest()
        with replica.store().connect() as con:
            rows = con.execute("SELECT version, alias, actor FROM model_deployments").fetchall()
    assert rows == [("1", "production", "test")]  # the trainer's promotion, in the shared table
