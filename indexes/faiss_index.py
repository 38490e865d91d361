"""Free functions over faiss indexes: create, train, add, search with an id selector, save, load.

Vectors are L2-normalised float32 and compared by inner product (cosine). Vector ids are positions in
the store (see ``manifest.py``), assigned by faiss in insertion order. When faiss sees a GPU, flat and
IVF indexes are searched and filled on it; HNSW has no GPU implementation and stays on the CPU.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np

from ofa_embed.indexes.config import FlatConfig, HNSWConfig, IndexConfig, IVFPQConfig
from ofa_embed.location import AnyPath, RemotePath

logger = logging.getLogger(__name__)

# faiss k-means wants 39 points per centroid; fewer still trains, with a warning of our own instead
_POINTS_PER_CENTROID = 39


def create(config: IndexConfig, dim: int) -> faiss.Index:
    """An empty index for ``config`` (IVF-PQ still needs :func:`train`)."""
    if isinstance(config, FlatConfig):
        return faiss.IndexFlatIP(dim)
    if isinstance(config, HNSWConfig):
        index = faiss.IndexHNSWFlat(dim, config.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.ef_construction
        index.hnsw.efSearch = config.ef_search
        return index
    if dim % config.m:
        raise ValueError(f"IVF-PQ m={config.m} must divide the embedding dimension {dim}")
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFPQ(quantizer, dim, config.nlist, config.m, config.nbits, faiss.METRIC_INNER_PRODUCT)
    ivf.nprobe = config.nprobe
    for clustering in (ivf.cp, ivf.pq.cp):
        clustering.min_points_per_centroid = 1
    if not config.refine:
        return ivf
    refined = faiss.IndexRefineFlat(ivf)
    refined.k_factor = config.refine_factor
    return refined


def needs_training(index: faiss.Index) -> bool:
    """Whether ``index`` must be trained before vectors can be added (untrained IVF-PQ)."""
    return not index.is_trained


def train(index: faiss.Index, config: IVFPQConfig, sample: np.ndarray) -> None:
    """Train the IVF-PQ ``index`` in place on ``sample``, ``(n, D)`` L2-normalised float32.

    Logs a warning when ``sample`` has fewer than 39 vectors per coarse or PQ centroid.
    """
    wanted = _POINTS_PER_CENTROID * max(config.nlist, 2**config.nbits)
    if len(sample) < wanted:
        logger.warning("training IVF-PQ on %d vectors; %d or more give better centroids", len(sample), wanted)
    index.train(sample)


def on_gpu(index: faiss.Index) -> faiss.Index:
    """A GPU copy of a flat or IVF index when faiss sees a GPU, else the index itself."""
    if faiss.get_num_gpus() == 0 or isinstance(index, faiss.IndexHNSW):
        return index
    return faiss.index_cpu_to_all_gpus(index)


GPU_MAX_K = 2048
HIGH_K_CANDIDATES = 4  # vectors visited per result wanted, for IVF searches of large k


def is_gpu(index: faiss.Index) -> bool:
    """Whether ``index`` lives on a GPU."""
    return hasattr(faiss, "GpuIndex") and isinstance(index, faiss.GpuIndex)


def to_cpu(index: faiss.Index) -> faiss.Index:
    """A CPU copy of ``index`` when faiss sees a GPU (HNSW excepted), else the index itself."""
    return faiss.index_gpu_to_cpu(index) if faiss.get_num_gpus() and not isinstance(index, faiss.IndexHNSW) else index


def search_parameters(
    index: faiss.Index, config: IndexConfig, allowed: np.ndarray | None, *, k: int = 1, ef_search: int | None = None,
    nprobe: int | None = None,
) -> faiss.SearchParameters | None:
    """Per-search parameters: the id selector of the allowed rows and the recall knobs of the kind."""
    selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64)) if allowed is not None else None
    if isinstance(config, HNSWConfig):
        # the candidate list must hold k results: high-k searches (thousands) widen it
        return faiss.SearchParametersHNSW(efSearch=max(ef_search or config.ef_search, k), sel=selector)
    if isinstance(config, IVFPQConfig):
        probes = nprobe or config.nprobe
        if k > 10 and index.ntotal:
            # a high-k search must visit lists holding several times k vectors, or it cannot fill k slots
            # (k = 10,000 over 100,000 vectors in 316 lists at nprobe 16 found 32 % of the true top-k)
            lists = _nlist(index)
            probes = max(probes, min(lists, math.ceil(HIGH_K_CANDIDATES * k * lists / index.ntotal)))
        ivf = faiss.SearchParametersIVF(nprobe=probes, sel=selector)
        if config.refine:
            return faiss.IndexRefineSearchParameters(k_factor=config.refine_factor, base_index_params=ivf)
        return ivf
    return faiss.SearchParameters(sel=selector) if selector is not None else None


def _nlist(index: faiss.Index) -> int:
    """The inverted lists of an IVF index, refined, wrapped or on a GPU."""
    try:
        return int(faiss.extract_index_ivf(index).nlist)
    except RuntimeError:  # a GPU IVF index is no faiss.IndexIVF, but has the attribute
        return int(index.nlist)


def search(
    index: faiss.Index, config: IndexConfig, queries: np.ndarray, k: int, allowed: np.ndarray | None = None,
    **knobs: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` cosine similarities and positions per query; -1 positions pad missing results.

    Args:
        index: the faiss index, as made by :func:`create` (CPU or GPU).
        config: the configuration ``index`` was made with; supplies the default recall knobs.
        queries: ``(q, D)`` L2-normalised float32.
        k: results per query.
        allowed: positions the results may come from (None: all), applied inside the search.
        knobs: ``ef_search`` (HNSW) or ``nprobe`` (IVF) for this search only.

    Returns:
        ``(similarities, positions)``, each ``(q, k)``: float32 cosine similarities (-inf where padded)
        and int64 store positions (-1 where padded).
    """
    if k > GPU_MAX_K and is_gpu(index):
        index = to_cpu(index)  # faiss's GPU kernels return at most 2,048 results per query
    params = search_parameters(index, config, allowed, k=k, **knobs)
    with _threads_for(len(queries)):
        similarities, positions = index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
    similarities[positions < 0] = -np.inf  # faiss pads with -FLT_MAX; every path here pads with -inf
    return similarities, positions


# Below this many queries a search runs on one OpenMP thread: a single query is too small to share,
# and waking the other threads costs more than the search (flat and IVF-PQ alike; benchmarks/search.py).
SINGLE_THREAD_MAX_QUERIES = 8


@contextmanager
def _threads_for(queries: int) -> Iterator[None]:
    if queries > SINGLE_THREAD_MAX_QUERIES or faiss.omp_get_max_threads() == 1:
        yield
        return
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


def exact_matrix(index: faiss.Index) -> np.ndarray | None:
    """A zero-copy ``(N, D)`` float32 view of the vectors ``index`` keeps exactly: a flat index's own, an
    HNSW-flat's storage, a refined IVF-PQ's refinement; None for any other index (IVF-PQ without
    refinement, GPU indexes). The view lives only as long as ``index``: copy what must outlive it.
    """
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexHNSWFlat):
        index = faiss.downcast_index(index.storage)
    elif isinstance(index, faiss.IndexRefine):
        index = faiss.downcast_index(index.refine_index)
    if not isinstance(index, faiss.IndexFlat):
        return None
    if not index.ntotal:
        return np.empty((0, index.d), np.float32)
    return faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)


def exact_vectors(index: faiss.Index, config: IndexConfig, positions: np.ndarray) -> np.ndarray | None:
    """The stored vectors at ``positions`` (a copy) when the index keeps them exactly (flat, HNSW-flat,
    IVF-PQ with refinement), else None.
    """
    if isinstance(config, IVFPQConfig) and not config.refine:
        return None
    positions = np.ascontiguousarray(positions, dtype=np.int64)
    matrix = exact_matrix(index)
    # a gather from the index's own memory: faster than reconstruct_batch, which copies row by row
    return matrix[positions] if matrix is not None else index.reconstruct_batch(positions)


def search_subset(subset: np.ndarray, allowed: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` among the ``allowed`` positions, whose vectors are ``subset`` (``(len(allowed), D)``,
    from :func:`exact_vectors`).

    Graph and inverted-list searches with a selector that admits few rows fill few result slots (on
    1 % of a million vectors, HNSW found a third of the exact top-10); ranking a small allowed set
    exactly costs a few milliseconds and finds all of it.
    """
    with _threads_for(len(queries)):
        similarities, local = faiss.knn(np.ascontiguousarray(queries, dtype=np.float32), subset, min(k, len(allowed)),
                                        metric=faiss.METRIC_INNER_PRODUCT)
    return _padded(similarities, np.where(local >= 0, allowed[np.maximum(local, 0)], -1), k)


def _padded(similarities: np.ndarray, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(q, k)`` results from ``(q, n <= k)`` ones: -inf similarities and -1 positions in the missing slots."""
    if positions.shape[1] < k:
        pad = k - positions.shape[1]
        similarities = np.pad(similarities, ((0, 0), (0, pad)), constant_values=-np.inf)
        positions = np.pad(positions, ((0, 0), (0, pad)), constant_values=-1)
    return similarities, positions


# ranking an allowed set through its span of the stored rows reads at most this many times its rows, and
# at most this many scores a call; beyond either, its rows are gathered first
SPAN_READ_FACTOR = 8
SPAN_MAX_SCORES = 4_000_000


def search_exact(index: faiss.Index, config: IndexConfig, allowed: np.ndarray, queries: np.ndarray,
                 k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Exact top-``k`` among the sorted ``allowed`` positions without keeping their vectors (a filter seen
    once), or None when ``index`` keeps no exact vectors.

    A filter's rows usually lie close together (a scene's file, a bbox in Z-ordered rows: 10,000 rows of a
    1M store within 12,352), so the queries are scored against the contiguous span of stored rows from
    the first allowed to the last, in sequence, and the allowed columns picked from that; a scattered
    set is gathered first (:func:`exact_vectors`).
    """
    matrix = exact_matrix(index)  # None for an IVF-PQ without refinement: exact_vectors refuses it too
    if matrix is None:
        subset = exact_vectors(index, config, allowed)
        return None if subset is None else search_subset(subset, allowed, queries, k)
    span = int(allowed[-1] - allowed[0] + 1)
    if span > SPAN_READ_FACTOR * len(allowed) or span * len(queries) > SPAN_MAX_SCORES:
        return search_subset(np.ascontiguousarray(matrix[allowed]), allowed, queries, k)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    scores = (queries @ matrix[allowed[0] : allowed[-1] + 1].T)[:, allowed - allowed[0]]
    found = min(k, len(allowed))
    top = np.argpartition(-scores, found - 1, axis=1)[:, :found] if found < len(allowed) else \
        np.broadcast_to(np.arange(len(allowed)), (len(queries), len(allowed)))
    best = np.take_along_axis(scores, top, 1)
    order = np.argsort(-best, axis=1, kind="stable")
    positions = allowed[np.take_along_axis(top, order, 1)].astype(np.int64)
    return _padded(np.take_along_axis(best, order, 1).astype(np.float32), positions, k)


def save(index: faiss.Index, path: Path) -> None:
    """Write ``index`` to ``path`` in faiss's format (a GPU index is copied to the CPU first)."""
    faiss.write_index(to_cpu(index), str(path))


def load(path: AnyPath) -> faiss.Index:
    """The CPU index written by :func:`save` at ``path``, local or remote (see :func:`on_gpu` to move it)."""
    if isinstance(path, RemotePath):
        return faiss.deserialize_index(np.frombuffer(path.read_bytes(), np.uint8))
    return faiss.read_index(str(path))
