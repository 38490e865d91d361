"""DOFA against TorchGeo's implementation: random TorchGeo weights saved in the published layout must embed
identically through ofa-embed's import, for every kind of sensor; wrong layouts and foreign keys are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ofa_embed.errors import WeightsError
from ofa_embed.model import dofa as dofa_module
from ofa_embed.model.checkpoint import file_sha256, load_published
from ofa_embed.model.dofa import DOFA, TRAINING_WAVELENGTHS_UM, create_dofa, published_config
from ofa_embed.model.layers import sincos_1d
from tests.helpers import mae_pos_embed, torchgeo_dofa


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """TorchGeo's module, one of its random small DOFA models with the position table its MAE training
    stores, and that model saved as a published file (no fc_norm, no head)."""
    folder = tmp_path_factory.mktemp("dofa")
    tg = torchgeo_dofa(folder)
    torch.manual_seed(3)
    model = tg.dofa_small_patch16_224().eval()
    with torch.no_grad():
        model.pos_embed.copy_(torch.from_numpy(mae_pos_embed(model.embed_dim, 14))[None])
        # published weights have trained, non-trivial biases everywhere; random ones start at 0.01 or 0
        for name, p in model.named_parameters():
            if name.startswith("blocks.") and name.endswith("bias"):
                p.normal_(0, 0.02)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(("fc_norm.", "head."))}
    path = folder / "dofa_small_patch16_224-random.pth"
    torch.save(state, path)
    return tg, model, state, path


def ours(path: Path, layout: str | None = "bands_first") -> DOFA:
    loaded = load_published(path, layout)
    assert isinstance(loaded.model, DOFA)
    return loaded.model


def both(reference, x: torch.Tensor, wavelengths: list[float], ofa_kwargs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    tg, model, _, path = reference
    with torch.no_grad():
        expected = model.forward_features(x, wavelengths)
        got = ours(path)(x, **ofa_kwargs)
    return expected, got


def test_published_base_layout_has_168_keys_and_no_fc_norm(tmp_path):
    tg = torchgeo_dofa(tmp_path)
    keys = [k for k in tg.dofa_base_patch16_224().state_dict() if not k.startswith(("fc_norm.", "head."))]
    assert len(keys) == 168
    ours_keys = set(create_dofa("dofa_base").state_dict())
    # ours has fc_norm (at defaults) and computes pos_embed from the formula
    assert ours_keys - set(keys) == {"fc_norm.weight", "fc_norm.bias"} and set(keys) - ours_keys == {"pos_embed"}


@pytest.mark.parametrize("modality", ["sentinel2_9band", "sentinel2_l2a", "rgbn", "rgb", "sentinel1_grd"])
def test_embeddings_equal_torchgeo_for_registered_sensors(reference, modality):
    model = ours(reference[3])
    bands = [b for b in dofa_module.MODALITIES[modality].band_names]
    wavelengths = model.band_wavelengths(modality, bands)
    x = torch.randn(2, len(bands), 224, 224, generator=torch.Generator().manual_seed(1))
    expected, got = both(reference, x, wavelengths, {"modality": modality, "bands": bands})
    assert expected.shape == got.shape == (2, 384)
    assert (expected - got).abs().max().item() < 1e-5


def test_embeddings_equal_torchgeo_for_an_unknown_five_band_sensor(reference):
    wavelengths = [0.45, 0.52, 0.63, 0.76, 1.2]
    x = torch.randn(1, 5, 224, 224, generator=torch.Generator().manual_seed(2))
    expected, got = both(reference, x, wavelengths,
                         {"modality": None, "wavelengths_um": torch.tensor(wavelengths)})
    assert (expected - got).abs().max().item() < 1e-5


def test_the_kernel_matches_torchgeo_bit_for_bit(reference):
    tg, model, _, path = reference
    waves = torch.tensor([0.665, 0.56, 0.49, 0.842])
    with torch.no_grad():
        codes = tg.position_embedding(128, waves * 1000)
        theirs = model.patch_embed.weight_generator(model.patch_embed.fclayer(codes))
        mine = ours(path).patch_embed.kernels(waves)
    expected_kernel = theirs[0].view(4, 16, 16, 384).permute(3, 0, 1, 2) * 0.01
    assert torch.equal(sincos_1d(waves * 1000, 128, torch.float32), codes)
    assert torch.equal(mine[0], expected_kernel) and torch.equal(mine[1], theirs[1] * 0.01)


def test_the_wrong_kernel_layout_loads_and_embeds_differently(reference):
    tg, model, _, path = reference
    x = torch.randn(1, 4, 224, 224, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = model.forward_features(x, [0.665, 0.56, 0.49, 0.842])
        legacy = ours(path, "legacy")(x, "rgbn")
    assert (expected - legacy).abs().max().item() > 1e-2


def test_an_unrecognised_file_without_a_layout_is_refused(reference):
    with pytest.raises(WeightsError, match="not a recognised DOFA release.*--weights-layout"):
        load_published(reference[3])


def test_a_recognised_release_needs_no_layout_and_a_renamed_file_is_refused(reference, tmp_path, monkeypatch):
    path = reference[3]
    prefix = file_sha256(path)[:8]
    release = dofa_module.PublishedWeights("dofa_small", f"dofa_small_patch16_224-{prefix}.pth", "https://x", "bands_first")
    monkeypatch.setattr(dofa_module, "PUBLISHED_WEIGHTS", {prefix: release})
    monkeypatch.setattr("ofa_embed.model.checkpoint.PUBLISHED_WEIGHTS", {prefix: release})
    named = tmp_path / release.filename
    named.write_bytes(path.read_bytes())
    assert load_published(named).model.config.kernel_layout == "bands_first"
    assert load_published(named).model.config.source_sha256 == file_sha256(path)
    wrong = tmp_path / f"dofa_small_patch16_224-{prefix}" / release.filename
    wrong.parent.mkdir()
    state = dict(reference[2])
    state["cls_token"] = state["cls_token"] + 1
    torch.save(state, wrong)
    with pytest.raises(WeightsError, match="renamed or damaged"):
        load_published(wrong)


def test_upstream_extras_are_ignored_and_foreign_keys_refused(reference, tmp_path):
    state = dict(reference[2])
    extras = state | {"mask_token": torch.zeros(1, 1, 384), "norm.weight": torch.ones(384),
                      "norm.bias": torch.zeros(384), "projector.0.weight": torch.zeros(8, 384)}
    torch.save(extras, tmp_path / "upstream.pth")
    load_published(tmp_path / "upstream.pth", "bands_first")
    foreign = state | {"decoder_embed.weight": torch.zeros(8, 384)}
    torch.save(foreign, tmp_path / "foreign.pth")
    with pytest.raises(WeightsError, match="unexpected.*decoder_embed"):
        load_published(tmp_path / "foreign.pth", "bands_first")
    missing = {k: v for k, v in state.items() if k != "blocks.3.attn.qkv.weight"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match="missing.*blocks.3.attn.qkv.weight"):
        load_published(tmp_path / "missing.pth", "bands_first")


def test_a_position_table_that_is_not_dofas_is_refused(reference, tmp_path):
    state = dict(reference[2])
    state["pos_embed"] = torch.zeros_like(state["pos_embed"])  # what a never-trained TorchGeo model stores
    torch.save(state, tmp_path / "zeros.pth")
    with pytest.raises(WeightsError, match="pos_embed is not DOFA's"):
        load_published(tmp_path / "zeros.pth", "bands_first")


def test_the_patch_embedding_stays_float32_under_bf16_autocast(reference):
    model = ours(reference[3])
    x = torch.randn(1, 4, 224, 224, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        plain = model.embed_tokens(x, "rgbn")
        with torch.autocast("cpu", torch.bfloat16):
            autocast = model.embed_tokens(x, "rgbn")
    assert autocast.dtype == torch.float32 and torch.equal(plain, autocast)


def test_other_tile_sizes_evaluate_the_formula_on_their_grid(reference):
    model = ours(reference[3])
    stored = torch.from_numpy(mae_pos_embed(384, 8))[1:]
    assert torch.allclose(model.pos_embed(8, 8, torch.device("cpu"))[0], stored, atol=1e-6)
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 128, 128), "rgb").shape == (1, 384)


def test_training_wavelengths_are_the_checkpoints_not_the_registrys():
    model = create_dofa(published_config("dofa_small"))
    s2 = dict(zip(dofa_module.MODALITIES["sentinel2_l1c"].band_names,
                  model.band_wavelengths("sentinel2_l1c"), strict=True))
    assert s2["B12"] == 2.19 and s2["B08"] == 0.842  # the registry's centres: 2.2024, 0.8328
    assert s2["B10"] == dofa_module.MODALITIES["sentinel2_l1c"].bands[10].wavelength_um
    assert model.band_wavelengths("sentinel1_grd") == [3.75, 3.75]
    assert model.unseen_bands("sentinel2_l1c") == ["B01", "B8A", "B09", "B10"]
    assert model.unseen_bands("landsat_oli") == list(dofa_module.MODALITIES["landsat_oli"].band_names)
    assert model.unseen_bands("hyperspectral") == [] and "sentinel2_l1c" in TRAINING_WAVELENGTHS_UM
