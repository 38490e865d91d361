"""k-nearest-neighbour prediction over labelled tiles, searched through FAISS (``indexes/``).

Neighbours are ranked by cosine similarity of the embeddings. When the store has a fresh index
(``ofa-embed index``), neighbours are searched in it, restricted to the labelled (training) tiles;
otherwise an exact in-memory flat index over the labelled embeddings is used. The store index ranks
up to 100,000 allowed rows exactly when it keeps the vectors (flat, HNSW, IVF-PQ with refinement),
so both paths find the same neighbours; beyond that, or for IVF-PQ without refinement, it is the
index's approximate filtered search.

Votes are uniform over the ``k`` neighbours: classify predicts the most frequent class (ties go to
the class with the larger summed similarity), multilabel every label held by at least half of the
neighbours, regress the mean target. Scores are vote fractions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from ofa_embed.downstream.metrics import class_codes
from ofa_embed.indexes import faiss_index
from ofa_embed.indexes.config import FlatConfig
from ofa_embed.indexes.store_index import StoreIndex
from ofa_embed.indexes.vectors import l2_normalise

__all__ = ["NeighbourSearch", "knn_vote", "flat_search", "store_search"]

# (queries (q, D), allowed training positions (n,), k) -> similarities (q, k), indices into the allowed set (q, k)
NeighbourSearch = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def flat_search(vectors: np.ndarray) -> NeighbourSearch:
    """Exact search among rows of ``vectors`` (``(N, D)``, e.g. the labelled embeddings) with a FAISS flat index."""
    normalised = l2_normalise(vectors)
    built: list[tuple[np.ndarray, faiss.Index]] = []  # the last allowed set: prediction asks file after file

    def search(queries: np.ndarray, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not built or not np.array_equal(built[0][0], allowed):
            index = faiss_index.create(FlatConfig(), normalised.shape[1])
            index.add(normalised[allowed])
            built[:] = [(allowed, index)]
        return built[0][1].search(l2_normalise(queries), min(k, len(allowed)))

    return search


def store_search(index: StoreIndex, positions: np.ndarray) -> NeighbourSearch:
    """Search in the store's own index; ``positions[i]`` is the store row of labelled sample ``i``."""
    def search(queries: np.ndarray, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        similarities, found = index.search_among(queries, positions[allowed], min(k, len(allowed)))
        order = np.argsort(positions[allowed])
        local = order[np.searchsorted(positions[allowed], found.clip(0), sorter=order)]
        return similarities, np.where(found >= 0, local, -1)

    return search


@dataclass
class KNNVote:
    """Predictions and vote fractions of one kNN query batch."""

    predicted: np.ndarray
    scores: np.ndarray | None


def knn_vote(similarities: np.ndarray, neighbours: np.ndarray, targets: np.ndarray, task: str,
             classes: list[Any]) -> KNNVote:
    """Aggregate the targets of ``neighbours`` (``(q, k)`` indices into ``targets``, -1 = none)."""
    valid = neighbours >= 0
    counts = valid.sum(axis=1, keepdims=True).clip(min=1)
    safe = neighbours.clip(min=0)
    if task == "regress":
        return KNNVote((np.where(valid, targets[safe], 0.0).sum(axis=1) / counts[:, 0]), None)
    if task == "multilabel":
        fractions = (targets[safe] * valid[..., None]).sum(axis=1) / counts
        return KNNVote(fractions >= 0.5, fractions)
    codes = class_codes(targets, classes)[safe]
    one_hot = np.eye(len(classes))[codes] * valid[..., None]
    fractions = one_hot.sum(axis=1) / counts
    tie_break = (one_hot * np.where(valid, similarities, 0.0)[..., None]).sum(axis=1) * 1e-6
    predicted = np.asarray(classes, dtype=object)[(fractions + tie_break).argmax(axis=1)]
    return KNNVote(predicted, fractions)
