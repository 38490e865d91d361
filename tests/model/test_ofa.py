import dataclasses

import pytest
import torch

from ofa_embed.model import CONFIGS, OFAConfig, create_model
from ofa_embed.model.checkpoint import weights_hash
from ofa_embed.sensors import MODALITIES


@pytest.fixture(scope="module")
def model():
    return create_model("ofa_test").eval()


def test_every_registered_modality_has_a_patch_embedding(model):
    for name, modality in MODALITIES.items():
        x = torch.randn(2, modality.num_bands, 32, 32)
        with torch.inference_mode():
            assert model(x, name).shape == (2, CONFIGS["ofa_test"].embed_dim)


@pytest.mark.parametrize("size", [(16, 16), (64, 32), (128, 128)])
def test_any_tile_size_multiple_of_the_patch_works(model, size):
    x = torch.randn(1, 13, *size)
    with torch.inference_mode():
        tokens = model.forward_features(x, "sentinel2_l1c")
    assert tokens.shape == (1, size[0] // 16 * size[1] // 16, 32)
    assert torch.allclose(model.pool(tokens), model(x, "sentinel2_l1c"))


def test_wrong_inputs_are_refused(model):
    with pytest.raises(ValueError, match="expects input"):
        model(torch.randn(1, 4, 32, 32), "sentinel2_l1c")
    with pytest.raises(ValueError, match="patch size"):
        model(torch.randn(1, 13, 40, 40), "sentinel2_l1c")
    with pytest.raises(KeyError, match="no patch embedding"):
        model(torch.randn(1, 13, 32, 32), "sentinel3")


def test_per_modality_models_use_their_own_patch_embedding_and_shared_blocks():
    model = create_model(dataclasses.replace(CONFIGS["ofa_test"], patch_embed="per_modality")).eval()
    rgb, rgbn = torch.randn(1, 3, 32, 32), torch.randn(1, 4, 32, 32)

    def outputs() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            return model(rgb, "rgb"), model(rgbn, "rgbn")

    before_rgb, before_rgbn = outputs()
    with torch.no_grad():
        model.patch_embed["rgbn"].proj.weight.add_(torch.randn_like(model.patch_embed["rgbn"].proj.weight))
    after_rgb, after_rgbn = outputs()
    assert torch.equal(after_rgb, before_rgb) and not torch.allclose(after_rgbn, before_rgbn)
    with torch.no_grad():
        model.blocks[0].mlp.fc1.weight.add_(torch.randn_like(model.blocks[0].mlp.fc1.weight))
    shared_rgb, shared_rgbn = outputs()
    assert not torch.allclose(shared_rgb, after_rgb) and not torch.allclose(shared_rgbn, after_rgbn)


def test_seeded_init_is_deterministic_and_seed_dependent():
    a, b, c = (create_model("ofa_test", seed=s).state_dict() for s in (0, 0, 1))
    assert weights_hash(a) == weights_hash(b) != weights_hash(c)


def test_config_round_trips_through_json_dict():
    config = CONFIGS["ofa_tiny"]
    assert OFAConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="newer"):
        OFAConfig.from_dict({**config.to_dict(), "config_version": 99})


def test_a_version_1_config_is_the_per_modality_token_mean_model():
    old = {k: v for k, v in CONFIGS["ofa_test"].to_dict().items() if k not in ("patch_embed", "wave_dim", "pooling")}
    config = OFAConfig.from_dict({**old, "config_version": 1})
    assert config.patch_embed == "per_modality" and config.pooling == "token_mean"
    assert "patch_embed.rgb.proj.weight" in create_model(config).state_dict()


def test_the_spectral_embedding_is_one_module_for_every_sensor_and_follows_bands_not_positions(model):
    assert model.config.patch_embed == "spectral" and set(model.modalities) == set(MODALITIES)
    x = torch.randn(2, 13, 32, 32)
    waves, _ = model.band_keys("sentinel2_l1c")
    order = torch.randperm(13, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        # the kernel generator sees the set of bands: shuffling bands and their wavelengths together changes nothing
        reference = model(x, "sentinel2_l1c")
        shuffled = model(x[:, order], "sentinel2_l1c", wavelengths_um=waves[order])
        assert torch.allclose(reference, shuffled, atol=1e-5)
        # a sensor nobody registered: any bands with known wavelengths
        unseen = model(torch.randn(2, 5, 32, 32), "rgb", wavelengths_um=torch.tensor([0.45, 0.55, 0.65, 0.75, 0.85]))
        assert unseen.shape == (2, 32) and torch.isfinite(unseen).all()
        # the same values read as other wavelengths are another embedding
        assert not torch.allclose(model(x, "sentinel2_l1c", wavelengths_um=waves + 0.05), reference, atol=1e-3)
        with pytest.raises(ValueError, match="13 bands need 13 wavelengths"):
            model(x, "sentinel2_l1c", wavelengths_um=waves[:5])


def test_sar_polarisations_get_their_own_kernels(model):
    waves, polarisations = model.band_keys("sentinel1_grd")
    assert waves[0] == waves[1] and polarisations.tolist() == [1, 2]  # one radar wavelength, VV and VH
    with torch.inference_mode():
        kernel, _ = model.patch_embed.kernels(waves, polarisations)
    assert not torch.allclose(kernel[:, 0], kernel[:, 1])


def test_mean_norm_pooling_normalises_the_mean_of_the_tokens():
    model = create_model(dataclasses.replace(CONFIGS["ofa_test"], pooling="mean_norm")).eval()
    x = torch.randn(2, 13, 32, 32)
    with torch.inference_mode():
        tokens = model.forward_features(x, "sentinel2_l1c")
        assert torch.allclose(model(x, "sentinel2_l1c"), model.norm(tokens.mean(dim=1)))
    assert model.pooling == "final norm of the mean of patch tokens"
