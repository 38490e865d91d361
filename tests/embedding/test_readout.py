"""A backbone whose readout is the mean and spread of its tokens (``token_mean_std``): embeddings twice a
token's width everywhere a store, a dense run, a search and the metadata see them."""

from __future__ import annotations

import dataclasses

import geopandas as gpd
import numpy as np
import pytest

import ofa_embed
from ofa_embed import indexes
from ofa_embed.errors import ConfigError, IndexStateError, StoreError
from ofa_embed.field_files import read_field
from ofa_embed.model import CONFIGS, create_model
from ofa_embed.model.checkpoint import read_out_as, save_checkpoint
from ofa_embed.pretraining.config import DinoIBotOptions, MaskedSiameseOptions
from ofa_embed.pretraining.objective import build_objective
from ofa_embed.store import read_metadata

WIDTH = CONFIGS["ofa_test"].embed_dim


@pytest.fixture
def mean_std_weights(tmp_path):
    path = tmp_path / "mean_std.safetensors"
    save_checkpoint(create_model(dataclasses.replace(CONFIGS["ofa_test"], pooling="token_mean_std"), seed=3), path)
    return path


def test_mean_std_embeddings_fill_the_store_and_the_dense_run_pools_the_same(tmp_path, s2_tif, mean_std_weights):
    run = {"weights": mean_std_weights, "tile_size": 64, "precision": "fp32", "stride": 32}
    pooled = ofa_embed.extract(s2_tif, tmp_path / "pooled", **run)
    dense = ofa_embed.extract(s2_tif, tmp_path / "dense", dense=True, **run)
    a = gpd.read_parquet(pooled.scenes[0].path)
    b = gpd.read_parquet(dense.scenes[0].path)
    vectors = np.stack(a.embedding.to_numpy())
    assert vectors.shape[1] == 2 * WIDTH and (vectors[:, WIDTH:] > 0).all()  # every tile has some spread
    np.testing.assert_allclose(vectors, np.stack(b.embedding.to_numpy()), atol=1e-5)
    assert read_field(tmp_path / "dense", s2_tif.stem).shape[0] == WIDTH  # a field holds tokens, not readouts
    meta = read_metadata(pooled.scenes[0].path)
    assert meta["model"]["pooling"] == "mean and standard deviation of final-normed patch tokens"
    assert meta["model"]["config"]["pooling"] == "token_mean_std"
    indexes.build(tmp_path / "pooled", "flat")
    hits = ofa_embed.search(tmp_path / "pooled", like=s2_tif, weights=mean_std_weights, k=3)
    assert len(hits) == 3 and hits.similarity.is_monotonic_decreasing and hits.similarity.iloc[0] > 0.9


def test_dino_ibot_refuses_a_readout_wider_than_a_token():
    encoder = create_model(dataclasses.replace(CONFIGS["ofa_test"], pooling="token_mean_std"))
    with pytest.raises(ConfigError, match="train with token_mean"):
        build_objective("dino_ibot", encoder, DinoIBotOptions(global_crop_min=32, global_crop_max=48))
    assert build_objective("masked_siamese", encoder, MaskedSiameseOptions()).projector[0].in_features == 2 * WIDTH


def test_the_same_weights_read_out_another_way_are_refused_by_a_store(tmp_path, s2_tif):
    """The weights hash covers the weights only: a checkpoint of the same weights under another pooling makes
    other vectors, so a store refuses its scenes and its queries."""
    mean = tmp_path / "mean.safetensors"
    norm = tmp_path / "mean_norm.safetensors"
    encoder = create_model("ofa_test", seed=3)
    same = read_out_as(encoder, "mean_norm")
    assert same is not encoder and same.config.pooling == "mean_norm" and read_out_as(encoder, "token_mean") is encoder
    assert save_checkpoint(encoder, mean) == save_checkpoint(same, norm)  # one hash, two readouts
    store = tmp_path / "store"
    ofa_embed.extract(s2_tif, store, weights=mean, tile_size=64, precision="fp32")
    indexes.build(store, "flat")
    with pytest.raises(StoreError, match="read out as 'mean of final-normed patch tokens', not 'final norm"):
        ofa_embed.extract(s2_tif, store, weights=norm, tile_size=64, precision="fp32")
    with pytest.raises(IndexStateError, match="reads its tokens out as 'final norm of the mean of patch tokens'"):
        ofa_embed.search(store, like=s2_tif, weights=norm)
    assert len(ofa_embed.search(store, like=s2_tif, weights=mean, k=2)) == 2
