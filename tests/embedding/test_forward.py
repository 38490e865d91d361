"""The one forward pass: precision policy, and bf16 embeddings that stay close to fp32 on real data."""

import numpy as np
import pytest
import torch
from rasterio.windows import Window

from ofa_embed.embedding import forward
from ofa_embed.embedding.forward import embed, resolve_precision
from ofa_embed.errors import ConfigError
from ofa_embed.model.weights import load_weights
from ofa_embed.raster.opening import open_scene
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


def test_the_environment_answers_for_the_cpu_in_autos_policy(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setenv(forward.CPU_BF16_ENV, "1")
    assert resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setenv(forward.CPU_BF16_ENV, "0")
    assert resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setenv(forward.CPU_BF16_ENV, "yes")
    with pytest.raises(ConfigError, match="OFA_EMBED_CPU_BF16='yes': set 0"):
        resolve_precision("auto", cpu)
    monkeypatch.delenv(forward.CPU_BF16_ENV)
    assert resolve_precision("auto", cpu) == ("bf16" if forward.native_cpu_bf16() else "fp32")


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


def test_wavelength_conditioned_models_leave_missing_bands_out_and_per_modality_ones_fill_them():
    from ofa_embed.embedding.forward import model_input
    from ofa_embed.model import OFAConfig, create_model

    spectral = create_model("ofa_test")
    fed = model_input(spectral, "sentinel2_l2a", missing_bands=("B01", "B09"))
    assert "B01" not in fed.bands and len(fed.bands) == 10 and fed.positions == tuple(range(1, 9)) + (10, 11)
    assert fed.record["wavelengths_um"][0] == pytest.approx(0.4924)
    x = torch.randn(2, 12, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = spectral(x[:, list(fed.positions)], "sentinel2_l2a", bands=list(fed.bands)).numpy()
        # a missing band filled with the mean would still shape every other band's kernel
        filled = spectral(x, "sentinel2_l2a").numpy()
    got = embed(spectral, x.numpy(), fed, torch.device("cpu"), precision="fp32")
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert np.abs(got - filled).max() > 1e-4
    per_modality = create_model(OFAConfig("v1", embed_dim=32, depth=1, num_heads=2, patch_embed="per_modality"))
    kept = model_input(per_modality, "sentinel2_l2a", missing_bands=("B01",))
    assert kept.positions is None and kept.wavelengths_um is None and len(kept.bands) == 12


def test_dofa_is_fed_its_documented_normalisation_where_there_is_one():
    from ofa_embed.embedding.forward import model_input
    from ofa_embed.model.dofa import create_dofa
    from ofa_embed.sensors import get_modality

    fed = model_input(create_dofa("dofa_small"), "rgbn")
    red, nir = get_modality("rgbn").bands[0], get_modality("rgbn").bands[3]
    assert fed.record["mean"] == [0.485, 0.456, 0.406, nir.mean] and fed.record["std"][:3] == [0.229, 0.224, 0.225]
    raw = np.array([40.0, 90.0, 200.0, 120.0]) / 255  # physical values of one pixel
    registry = (raw - get_modality("rgbn").mean) / get_modality("rgbn").std
    out = fed.feed(torch.tensor(registry, dtype=torch.float32)[None, :, None, None])[0, :, 0, 0].numpy()
    expected = (raw - np.array(fed.record["mean"])) / np.array(fed.record["std"])
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    assert red.mean != 0.485  # the registry's rgbn statistics really differ
