import dataclasses

import pytest
import torch
from torch import nn

from ofa_embed.model import CONFIGS, create_model
from ofa_embed.model.config import DOFA_CONFIGS
from ofa_embed.model.dofa import create_dofa
from ofa_embed.model.pooling import POOLING_DESCRIPTIONS, POOLINGS, final_tokens, pool_tokens, pooled_dim


def test_each_pooling_puts_the_norm_before_or_after_the_mean():
    encoded, norm = torch.randn(3, 5, 8), nn.LayerNorm(8)
    with torch.no_grad():
        nn.init.normal_(norm.weight), nn.init.normal_(norm.bias)
        for method, expected in (("token_mean", norm(encoded).mean(dim=1)), ("mean_norm", norm(encoded.mean(dim=1)))):
            pooled = pool_tokens(final_tokens(encoded, method, norm), method, norm)
            assert pooled.shape == (3, 8) and torch.equal(pooled, expected)
    assert set(POOLING_DESCRIPTIONS) == set(POOLINGS)
    with pytest.raises(ValueError, match="choose one of token_mean, mean_norm, token_mean_std"):
        pool_tokens(encoded, "max", norm)


def test_token_mean_std_appends_the_spread_of_the_normed_tokens():
    encoded, norm = torch.randn(3, 5, 8), nn.LayerNorm(8)
    tokens = final_tokens(encoded, "token_mean_std", norm)
    assert torch.equal(tokens, norm(encoded))
    pooled = pool_tokens(tokens, "token_mean_std", norm)
    assert pooled.shape == (3, 16) and pooled_dim("token_mean_std", 8) == 16 and pooled_dim("token_mean", 8) == 8
    torch.testing.assert_close(pooled[:, :8], tokens.mean(dim=1))
    torch.testing.assert_close(pooled[:, 8:], torch.from_numpy(tokens.detach().numpy().std(axis=1)))
    # one patch: no spread, and no NaN (a sample standard deviation of one value would be)
    one = pool_tokens(tokens[:, :1], "token_mean_std", norm)
    assert torch.equal(one[:, 8:], torch.zeros(3, 8))
    # bfloat16 tokens (a bf16 forward pass) give bfloat16 embeddings, the spread taken in float32
    assert pool_tokens(tokens.bfloat16(), "token_mean_std", norm).dtype == torch.bfloat16


@pytest.mark.parametrize("pooling", POOLINGS)
def test_both_backbone_families_pool_through_the_one_function(pooling):
    x = torch.randn(2, 13, 32, 32)
    ofa = create_model(dataclasses.replace(CONFIGS["ofa_test"], pooling=pooling)).eval()
    dofa = create_dofa(dataclasses.replace(DOFA_CONFIGS["dofa_small"], depth=1, pooling=pooling)).eval()
    with torch.inference_mode():
        for model, norm in ((ofa, ofa.norm), (dofa, dofa.fc_norm)):
            encoded = model.blocks(model.embed_tokens(x, "sentinel2_l1c"))
            encoded = encoded[:, 1:] if model is dofa else encoded  # DOFA's class token is not pooled
            expected = pool_tokens(final_tokens(encoded, pooling, norm), pooling, norm)
            assert torch.equal(model(x, "sentinel2_l1c"), expected)
            assert model.pooling == POOLING_DESCRIPTIONS[pooling]
            assert model(x, "sentinel2_l1c").shape == (2, model.embedding_dim)
            assert model.embedding_dim == (2 if pooling == "token_mean_std" else 1) * model.embed_dim


def test_dofa_pools_with_fc_norm_of_the_token_mean_by_default():
    model = create_dofa(dataclasses.replace(DOFA_CONFIGS["dofa_small"], depth=1)).eval()
    x = torch.randn(2, 4, 32, 32)
    with torch.inference_mode():
        assert torch.equal(model(x, "rgbn"), model.fc_norm(model.forward_features(x, "rgbn").mean(dim=1)))
