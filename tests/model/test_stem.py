"""The conv stem option (OFAConfig.stem, config version 3) and the configs and checkpoints written before it."""

import dataclasses

import pytest
import torch

from ofa_embed.model import CONFIGS, OFAConfig, create_model
from ofa_embed.model.checkpoint import load_checkpoint, save_checkpoint
from ofa_embed.model.config import CONFIG_VERSION, STEM_PATCH
from ofa_embed.model.layers import ConvStem, SpectralPatchEmbed
from ofa_embed.model.weights import load_weights

STEM = dataclasses.replace(CONFIGS["ofa_test"], stem="conv")


@pytest.mark.parametrize(("patch", "size"), [(16, (32, 48)), (16, (16, 16)), (8, (24, 40))])
def test_the_conv_stem_gives_one_token_per_patch_behind_the_spectral_embedding(patch, size):
    model = create_model(dataclasses.replace(STEM, patch_size=patch)).eval()
    assert isinstance(model.patch_embed, SpectralPatchEmbed) and model.patch_embed.patch_size == STEM_PATCH
    x = torch.randn(2, 13, *size)
    with torch.inference_mode():
        tokens = model.forward_features(x, "sentinel2_l1c")
        subset = model(x[:, [1, 2, 3, 7]], "sentinel2_l1c", bands=["B02", "B03", "B04", "B08"])
    assert tokens.shape == (2, size[0] // patch * size[1] // patch, STEM.embed_dim)
    assert subset.shape == (2, STEM.embed_dim) and torch.isfinite(subset).all()
    # one 3 x 3 stride-2 convolution per halving from the 4 px cells to the patch
    convs = [m for m in model.stem.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == {16: 2, 8: 1}[patch] and all(c.kernel_size == (3, 3) and c.stride == (2, 2) for c in convs)


def test_stem_tokens_overlap_their_neighbours_and_the_model_is_smaller():
    stem = ConvStem(8, 16, 4)
    fine = torch.zeros(1, 64, 8)  # an 8 x 8 grid of 4 px cells: a 2 x 2 patch grid
    fine[0, 3 * 8 + 3] = 1.0  # one cell inside the top-left patch, at its border
    with torch.no_grad():
        out, grid = stem(fine, (8, 8))
        base, _ = stem(torch.zeros(1, 64, 8), (8, 8))
    changed = (out - base).abs().sum(-1).reshape(grid) > 0
    assert grid == (2, 2) and changed[0, 0] and changed.sum() > 1  # a patchify stem would change one token
    count = lambda config: sum(p.numel() for p in create_model(config).parameters())  # noqa: E731
    tiny = CONFIGS["ofa_tiny"]
    assert count(dataclasses.replace(tiny, stem="conv")) < count(tiny) / 2


@pytest.mark.parametrize("settings", [{"stem": "resnet"}, {"stem": "conv", "patch_embed": "per_modality"},
                                      {"stem": "conv", "patch_size": 12}, {"stem": "conv", "patch_size": 4}])
def test_impossible_stems_are_refused(settings):
    with pytest.raises(ValueError, match="stem"):
        dataclasses.replace(CONFIGS["ofa_test"], **settings)


def test_configs_before_version_3_load_without_a_stem_and_stem_checkpoints_round_trip(tmp_path):
    old = {k: v for k, v in CONFIGS["ofa_test"].to_dict().items() if k != "stem"}
    config = OFAConfig.from_dict({**old, "config_version": 2})
    assert config.stem == "none" and config.config_version == CONFIG_VERSION == 4
    assert OFAConfig.from_dict(STEM.to_dict()) == STEM
    model = create_model(STEM, seed=3).eval()
    path = tmp_path / "stem.safetensors"
    save_checkpoint(model, path, source="test")
    loaded = load_checkpoint(path)
    x = torch.randn(1, 4, 32, 32)
    with torch.inference_mode():
        assert torch.equal(loaded.model(x, "rgbn"), model(x, "rgbn"))
    assert loaded.model.config.stem == "conv"


def test_the_shipped_checkpoint_written_with_config_version_2_still_loads():
    loaded = load_weights(None, "ofa_tiny")
    assert loaded.model.config.stem == "none" and loaded.model.stem is None and loaded.pretrained
