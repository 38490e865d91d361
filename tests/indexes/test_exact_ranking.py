"""Exact ranking of a filter's allowed rows: in place over their span of stored rows, or gathered, equal to numpy."""

import numpy as np
import pytest

from ofa_embed.indexes import faiss_index
from ofa_embed.indexes.config import FlatConfig, HNSWConfig, IVFPQConfig


@pytest.mark.parametrize("config", [FlatConfig(), HNSWConfig(m=8)])
def test_ranking_in_place_equals_numpy(config):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((5000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = faiss_index.create(config, 16)
    index.add(vectors)
    queries = rng.standard_normal((3, 16)).astype(np.float32)
    clustered = np.sort(rng.choice(np.arange(1000, 1400), 200, replace=False))  # span 2x its rows: in place
    scattered = np.sort(rng.choice(5000, 50, replace=False))  # span 100x: gathered first
    for allowed in (clustered, scattered, clustered[:4]):
        similarities, positions = faiss_index.search_exact(index, config, allowed, queries, 10)
        scores = queries @ vectors[allowed].T
        best = np.argsort(-scores, axis=1)[:, :10]
        found = min(10, len(allowed))
        np.testing.assert_array_equal(positions[:, :found], allowed[best[:, :found]])
        np.testing.assert_allclose(similarities[:, :found], np.take_along_axis(scores, best, 1)[:, :found], atol=1e-5)
        assert (positions[:, found:] == -1).all() and np.isneginf(similarities[:, found:]).all()


def test_no_exact_vectors_no_ranking():
    config = IVFPQConfig(nlist=4, m=4, nbits=4, refine=False)
    index = faiss_index.create(config, 16)
    sample = np.random.default_rng(1).standard_normal((400, 16)).astype(np.float32)
    faiss_index.train(index, config, sample)
    index.add(sample)
    assert faiss_index.search_exact(index, config, np.arange(10), sample[:1], 5) is None
