"""Backbone layers: the ViT block matches timm's, and every LayerNorm's epsilon is the one set here."""

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ofa_embed.model import create_model
from ofa_embed.model.layers import GENERATOR_LAYER_NORM_EPS, LAYER_NORM_EPS, Block, patch_projection
from ofa_embed.model.mae import OFAMAE


def test_block_equals_timms_vision_transformer_block_with_the_same_weights():
    timm_vit = pytest.importorskip("timm.models.vision_transformer", reason="timm is a declared dependency")
    torch.manual_seed(0)
    ours = Block(64, 4, 4.0, qkv_bias=True).eval()
    theirs = timm_vit.Block(64, 4, 4.0, qkv_bias=True, norm_layer=functools.partial(nn.LayerNorm, eps=LAYER_NORM_EPS)).eval()
    assert theirs.load_state_dict(ours.state_dict(), strict=True)  # same parameter names and shapes
    x = torch.randn(3, 17, 64)
    with torch.inference_mode():
        assert torch.allclose(ours(x), theirs(x), atol=1e-6)


def test_every_layer_norm_uses_the_fixed_epsilon():
    model = create_model("ofa_test")
    mae = OFAMAE(model)
    generator = {id(m) for m in model.patch_embed.weight_generator.modules()}
    norms = [m for m in mae.modules() if isinstance(m, nn.LayerNorm) and id(m) not in generator]
    assert len(norms) == 2 * 2 + 1 + 2 * 2 + 1  # encoder blocks, final norm, decoder blocks, decoder norm
    assert {m.eps for m in norms} == {LAYER_NORM_EPS}
    generated = [m for m in model.patch_embed.weight_generator.modules() if isinstance(m, nn.LayerNorm)]
    assert len(generated) == 2 and {m.eps for m in generated} == {GENERATOR_LAYER_NORM_EPS}


@pytest.mark.parametrize("padding", [0, 1])
def test_patch_projection_is_the_strided_convolution_for_strided_and_oblong_input(padding):
    generator = torch.Generator().manual_seed(0)
    kernel, bias = torch.randn(24, 5, 8, 8, generator=generator), torch.randn(24, generator=generator)
    # the reader's layout: a (C, T, R, K * T) window whose R x K tiles are a strided (R * K, C, T, T) view
    channels, size, rows, columns = 5, 16, 2, 3
    window = torch.randn(channels, size, rows, columns * size, generator=generator)
    tiles = window.as_strided((rows * columns, channels, size, size),
                              (size, size * rows * columns * size, rows * columns * size, 1))
    assert not tiles.is_contiguous()
    oblong = torch.randn(2, channels, 16, 32, generator=generator)
    for x in (tiles, oblong):
        tokens, grid = patch_projection(x, kernel, bias, padding)
        expected = F.conv2d(x.contiguous(), kernel, bias, stride=8, padding=padding)
        assert grid == tuple(expected.shape[-2:])
        torch.testing.assert_close(tokens, expected.flatten(2).transpose(1, 2), rtol=1e-5, atol=1e-5)
