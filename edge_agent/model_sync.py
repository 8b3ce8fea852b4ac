"""Keeping the agent's model in step with the API's production model.

On start the agent asks ``GET {api_url}/api/models/production`` for the
``edgeloop.wire.ProductionModel`` (name, version, sha256, onnx_url, class names, imgsz,
and the loop host's uncertainty band). When the cached model's sha256 differs, it
downloads ``{api_url}{onnx_url}`` (with the bearer token), checks the sha256, writes it
into the cache with ``edgeloop.files.atomic_write_bytes`` and records it in
``current.json``. Cache layout, under ``<state_dir>/models/``::

    <sha256>.onnx     the model file
    current.json      {"model": <ProductionModel as the API sent it>, "file": "<sha256>.onnx"}

``current.json`` keeps the uncertainty band the API sent with the model, so an agent
restarted while the API is unreachable keeps the loop host's band.

Which model runs, in order: the API's production model (downloaded when needed) → the
cached model when the API is unreachable or has no production model (404, or the
edgeloop API's 503 before a model is registered) → the local
``model_path`` → an error that says what to do. The runner can call ``check_for_update``
every ``model_check_interval_s`` and hot-swap the detector (a new file, or the same file
with a new version or uncertainty band).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import ValidationError

from edge_agent.detectors import ModelError
from edge_agent.shipper import api_message
from edgeloop.files import atomic_write_bytes, sha256_file
from edgeloop.wire import ProductionModel

logger = logging.getLogger(__name__)

PRODUCTION_PATH = "/api/models/production"
CURRENT_FILE = "current.json"


class ApiUnavailableError(RuntimeError):
    """The API could not be reached or answered with a server error."""


class ModelMovedError(ModelError):
    """Production moved to another version between asking for it and downloading it (409)."""


MOVED_RETRIES = 3
"""Times to ask again for the production model when it moved during a download."""


@dataclass(frozen=True)
class ModelFile:
    """A model file on this host and what is known about it.

    Attributes:
        path: the ONNX file.
        version: version recorded with every frame (the registry's, or ``local-<sha[:12]>``).
        sha256: hex sha256 of the file.
        origin: ``"api"`` (just checked against the API), ``"cache"`` (API unavailable or
            without a production model) or ``"local"`` (``model_path``).
        class_names: class names by class_id; None means the ONNX metadata's.
        imgsz: the model's square input size, px; None means read it from the file.
        uncertainty_band: the loop host's uncertainty band ``(low, high)``, exclusive
            bounds on confidence in [0, 1], sent with the production model; None when
            unknown (a local model file, or an API from before the band was on the wire).
    """

    path: Path
    version: str
    sha256: str
    origin: str
    class_names: list[str] | None = None
    imgsz: int | None = None
    uncertainty_band: tuple[float, float] | None = None

    @classmethod
    def of(cls, model: ProductionModel, path: Path, origin: str) -> ModelFile:
        """The file at ``path`` holding the API's ``model``."""
        sent = {"uncertainty_low", "uncertainty_high"} <= model.model_fields_set
        band = (model.uncertainty_low, model.uncertainty_high) if sent else None
        return cls(path, model.version, model.sha256, origin, model.class_names, model.imgsz, band)

    def describes(self, model: ProductionModel) -> bool:
        """True when ``model`` is this file with the same version and uncertainty band."""
        return self == ModelFile.of(model, self.path, self.origin)


class ModelSync:
    """Fetches the production model from the API into a local cache.

    Args:
        client: httpx client with the API's base URL and bearer token.
        cache_dir: the model cache (created if missing).
    """

    def __init__(self, client: httpx.Client, cache_dir: Path) -> None:
        self.client = client
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._etag: str | None = None
        self._last: ProductionModel | None = None

    def fetch_production(self) -> ProductionModel | None:
        """The API's production model; None when the API has none (404).

        A conditional request: the ETag of the last answer goes in ``If-None-Match``, and a
        304 (unchanged) returns the model parsed then.

        Raises:
            ApiUnavailableError: connection error, timeout or 5xx.
            ModelError: the API refused the token (401/403) or answered something that is
                not a ``ProductionModel``.
        """
        headers = {"If-None-Match": self._etag} if self._etag and self._last else {}
        try:
            response = self.client.get(PRODUCTION_PATH, headers=headers)
        except httpx.TransportError as exc:
            raise ApiUnavailableError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 304 and self._last is not None:
            return self._last
        if response.status_code == 404:
            return None
        if response.status_code in (401, 403):
            raise ModelError(
                f"the API at {self.client.base_url} refused the agent's token "
                f"(HTTP {response.status_code}); set EDGELOOP_AGENT_TOKEN, or "
                "EDGELOOP_AGENT_TOKEN_FILE (--token-file) to a file holding the token"
            )
        if not response.is_success:
            # The edgeloop API answers 503 while no model is registered (run `edgeloop init`).
            raise ApiUnavailableError(
                f"HTTP {response.status_code} from {response.request.url}: {api_message(response)}"
            )
        try:
            self._last = ProductionModel.model_validate_json(response.content)
            self._etag = response.headers.get("ETag")
            return self._last
        except ValidationError as exc:
            raise ModelError(
                f"{response.request.url} answered something that is not a ProductionModel: {exc}"
            ) from exc

    def cached(self) -> ModelFile | None:
        """The cached model from ``current.json``, if its file exists and its sha256 matches."""
        current = self.cache_dir / CURRENT_FILE
        if not current.exists():
            return None
        try:
            record = json.loads(current.read_text())
            model = ProductionModel.model_validate(record["model"])
            path = self.cache_dir / str(record["file"])
        except (OSError, ValueError, KeyError, ValidationError) as exc:
            logger.warning("ignoring unreadable %s: %s", current, exc)
            return None
        if not path.is_file():
            logger.warning("cached model %s listed in %s is missing", path, current)
            return None
        sha = sha256_file(path)
        if sha != model.sha256:
            logger.warning(
                "cached model %s is corrupt (sha256 %s, expected %s); ignoring it",
                path,
                sha,
                model.sha256,
            )
            return None
        return ModelFile.of(model, path, "cache")

    def download(self, model: ProductionModel) -> ModelFile:
        """Download ``model`` into the cache, verify its sha256 and make it current.

        The file is held in memory once (detection ONNX files are tens of MB) and written
        only when its sha256 matches, with ``edgeloop.files.atomic_write_bytes``: a crash
        leaves the old cache or the new file, never part of one.

        Raises:
            ApiUnavailableError: the download failed on the network or with a 5xx.
            ModelMovedError: production moved to another version meanwhile (409).
            ModelError: the download's sha256 differs from the API's, or another 4xx.
        """
        logger.info(
            "downloading model %s version %s from %s", model.name, model.version, model.onnx_url
        )
        try:
            response = self.client.get(model.onnx_url)
        except httpx.TransportError as exc:
            raise ApiUnavailableError(
                f"downloading {model.onnx_url}: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code == 409:
            raise ModelMovedError(
                f"production moved while downloading version {model.version}: "
                f"{api_message(response)[:300]}"
            )
        if response.status_code >= 500:
            raise ApiUnavailableError(f"HTTP {response.status_code} downloading {model.onnx_url}")
        if not response.is_success:
            raise ModelError(
                f"cannot download model {model.name} version {model.version}: "
                f"HTTP {response.status_code} from {response.request.url}"
            )
        sha = hashlib.sha256(response.content).hexdigest()
        if sha != model.sha256:
            raise ModelError(
                f"downloaded model {model.name} version {model.version} has sha256 {sha}, "
                f"but the API announced {model.sha256}; not using it"
            )
        target = self.cache_dir / f"{model.sha256}.onnx"
        atomic_write_bytes(target, response.content)
        self._record(model, target)
        logger.info("model %s version %s cached at %s", model.name, model.version, target)
        return ModelFile.of(model, target, "api")

    def _record(self, model: ProductionModel, path: Path) -> None:
        """Make ``path`` the current model; the record keeps only what the API sent."""
        record = {"model": model.model_dump(mode="json", exclude_unset=True), "file": path.name}
        atomic_write_bytes(self.cache_dir / CURRENT_FILE, json.dumps(record, indent=2).encode())
        for old in self.cache_dir.glob("*.onnx"):
            if old != path:
                logger.info("removing superseded cached model %s", old)
                old.unlink(missing_ok=True)

    def sync(self) -> ModelFile | None:
        """The model to run per the API, downloading it when the cache differs.

        Returns:
            The API's production model (``origin="api"``), else the cached one when the API
            is unreachable or has no production model, else None.

        Raises:
            ModelError: the token was refused, or the download's sha256 is wrong and no
                cached model exists.
        """
        try:
            production = self.fetch_production()
        except ApiUnavailableError as exc:
            cached = self.cached()
            if cached is not None:
                logger.warning(
                    "no production model from the API (%s); using the cached model version %s",
                    exc,
                    cached.version,
                )
            else:
                logger.warning("no production model from the API (%s) and no cached model", exc)
            return cached
        if production is None:
            cached = self.cached()
            logger.info(
                "the API has no production model yet; %s",
                f"using the cached model version {cached.version}" if cached else "no cached model",
            )
            return cached
        cached = self.cached()
        try:
            return self._production_file(production, cached)
        except (ApiUnavailableError, ModelError) as exc:
            if cached is None:
                raise ModelError(str(exc)) from exc
            logger.error("%s; keeping the cached model version %s", exc, cached.version)
            return cached

    def _production_file(self, production: ProductionModel, cached: ModelFile | None) -> ModelFile:
        """``production`` in the cache: the cached file when its sha256 matches (its record
        rewritten when the version or band changed), else downloaded."""
        if cached is None or cached.sha256 != production.sha256:
            return self._download_current(production)
        if not cached.describes(production):
            self._record(production, cached.path)
        logger.info("cached model is the production model (version %s)", production.version)
        return ModelFile.of(production, cached.path, "api")

    def _download_current(self, production: ProductionModel) -> ModelFile:
        """``download``, asking again for the production model when it moved meanwhile (409)."""
        for _ in range(MOVED_RETRIES):
            try:
                return self.download(production)
            except ModelMovedError as exc:
                logger.info("%s; asking the API again", exc)
                newer = self.fetch_production()
                if newer is None:
                    raise
                production = newer
        return self.download(production)

    def check_for_update(self, current: ModelFile) -> ModelFile | None:
        """The API's production model when it differs from ``current`` (another file, or the
        same file with another version or uncertainty band), downloaded when needed; else None.

        Errors are logged, not raised: the agent keeps running its current model.
        """
        try:
            production = self.fetch_production()
            if production is None or current.describes(production):
                return None
            return self._production_file(production, self.cached())
        except (ApiUnavailableError, ModelError) as exc:
            logger.warning("model update check failed (%s); keeping the current model", exc)
            return None


def resolve_model(sync: ModelSync, model_path: Path | None) -> ModelFile:
    """The model the agent should run: the API's, else the cache's, else ``model_path``.

    Raises:
        ModelError: none of them is available; the message says what to do.
    """
    model = sync.sync()
    if model is not None:
        return model
    if model_path is not None:
        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"--model {path} does not exist")
        sha = sha256_file(path)
        logger.info("using the local model %s", path)
        return ModelFile(path, f"local-{sha[:12]}", sha, "local")
    raise ModelError(
        f"no model to run: the API at {sync.client.base_url} gave no production model (it is "
        f"unreachable or none is promoted yet), the cache {sync.cache_dir} is empty, and no local "
        "model was given. Pass --model PATH (an ultralytics ONNX export, e.g. `yolo export "
        "model=best.pt format=onnx`), set EDGELOOP_AGENT_MODEL_PATH, or promote a model in the loop."
    )
