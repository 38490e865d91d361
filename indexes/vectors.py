"""Embeddings streamed from a store in blocks: memory depends on the block size, not the store size."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from ofa_embed.location import AnyPath
from ofa_embed.store import embedding_columns, embedding_matrix, open_parquet

__all__ = ["BLOCK_ROWS", "embedding_matrix", "iter_blocks", "l2_normalise", "strided_sample"]

BLOCK_ROWS = 65_536


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32, C-contiguous."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def iter_blocks(paths: Sequence[AnyPath], block_rows: int = BLOCK_ROWS) -> Iterator[np.ndarray]:
    """L2-normalised embedding blocks of at most ``block_rows`` rows, files in order."""
    for path in paths:
        with open_parquet(path) as parquet:
            for batch in parquet.iter_batches(batch_size=block_rows, columns=embedding_columns(parquet.schema_arrow)):
                yield l2_normalise(embedding_matrix(batch))


def strided_sample(paths: Sequence[AnyPath], total_rows: int, size: int) -> np.ndarray:
    """About ``size`` rows spread evenly over the whole store (every ``total/size``-th row), streamed."""
    step = max(1, total_rows // max(size, 1))
    parts, seen = [], 0
    for block in iter_blocks(paths):
        first = (-seen) % step
        parts.append(block[first::step])
        seen += len(block)
    return np.concatenate(parts)[:size] if parts else np.zeros((0, 0), np.float32)
