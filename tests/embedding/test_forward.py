"""The one forward pass: precision policy, and bf16 embeddings that stay close to fp32 on real data."""

import numpy as np
import pytest
import torch
from rasterio.windows import Window

from ofa_embed.embedding import forward
from ofa_embed.embedding.forward import embed, resolve_precision
from ofa_embed.errors import ConfigError
from ofa_embed.model.weights import load_weights
from ofa_embed.raster.scene import open_scene
from ofa_embed.sample import sample_scene


def test_auto_precision_is_bf16_only_where_bf16_is_native(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(forward, "native_cpu_bf16", lambda: False)
    assert resolve_precision("auto", cpu) == "fp32" and resolve_precision("auto", cuda) == "bf16"
    monkeypatch.setattr(forward, "native_cpu_bf16", lambda: True)
    assert resolve_precision("auto", cpu) == "bf16"
    assert resolve_precision("fp32", cuda) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ConfigError, match="choose one of auto, fp32, bf16"):
        resolve_precision("fp16", cpu)


def test_bf16_embeddings_of_the_bundled_sample_stay_within_cosine_0_999_of_fp32():
    model = load_weights().model
    with open_scene(sample_scene()) as scene:
        data, _ = scene.read(Window(0, 0, 512, 512))
    tiles = data.reshape(13, 4, 128, 4, 128).transpose(1, 3, 0, 2, 4).reshape(16, 13, 128, 128).copy()
    cpu = torch.device("cpu")
    full = embed(model, tiles, "sentinel2_l1c", cpu, precision="fp32")
    half = embed(model, tiles, "sentinel2_l1c", cpu, precision="bf16")
    assert half.dtype == np.float32 and not np.array_equal(full, half)  # bf16 really ran
    cosine = (full * half).sum(1) / np.linalg.norm(full, axis=1) / np.linalg.norm(half, axis=1)
    assert cosine.min() >= 0.999, cosine.min()


def test_the_patch_embedding_stays_fp32_under_bf16_autocast():
    model = load_weights(None, "ofa_test").model
    x = torch.randn(2, 13, 32, 32)
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
        tokens = model.embed_tokens(x, "sentinel2_l1c")
    assert tokens.dtype == torch.float32
    with torch.inference_mode():
        assert torch.equal(tokens, model.embed_tokens(x, "sentinel2_l1c"))
