import pytest
import torch

from ofa_embed.errors import WeightsError
from ofa_embed.model import CONFIGS, OFAConfig, create_model
from ofa_embed.model.checkpoint import load_checkpoint, random_init, save_checkpoint, weights_hash
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


def test_modalities_use_their_own_patch_embedding_and_shared_blocks(model):
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        assert not torch.allclose(model(x, "rgb"), model.forward(torch.randn(1, 3, 32, 32), "rgb"))
    shared = [n for n, _ in model.named_parameters() if n.startswith("blocks.")]
    assert shared and all("patch_embed" not in n for n in shared)


def test_seeded_init_is_deterministic_and_seed_dependent():
    a, b, c = (create_model("ofa_test", seed=s).state_dict() for s in (0, 0, 1))
    assert weights_hash(a) == weights_hash(b) != weights_hash(c)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, model):
    path = tmp_path / "m.safetensors"
    written = save_checkpoint(model, path, source="unit test")
    loaded = load_checkpoint(path)
    assert loaded.weights_hash == written and loaded.pretrained
    assert loaded.model.config == model.config
    x = torch.randn(2, 2, 32, 32)
    with torch.inference_mode():
        assert torch.equal(loaded.model(x, "sentinel1_grd"), model(x, "sentinel1_grd"))


def test_half_precision_checkpoint_has_its_own_hash(tmp_path, model):
    full = save_checkpoint(model, tmp_path / "f32.safetensors")
    half = save_checkpoint(model, tmp_path / "f16.safetensors", dtype=torch.float16)
    assert full != half == load_checkpoint(tmp_path / "f16.safetensors").weights_hash


def test_config_round_trips_through_json_dict():
    config = CONFIGS["ofa_tiny"]
    assert OFAConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="newer"):
        OFAConfig.from_dict({**config.to_dict(), "config_version": 99})


def test_random_init_reports_itself():
    loaded = random_init("ofa_test")
    assert not loaded.pretrained and loaded.source == "random-init(seed=0)"


def test_bad_checkpoints_are_refused(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.safetensors: not a readable safetensors"):
        load_checkpoint(junk)
