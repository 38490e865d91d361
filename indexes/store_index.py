"""A faiss index beside a store: build, update, open (refusing stale indexes) and filtered search.

``STORE/_index/`` holds ``index.faiss`` and ``manifest.json`` (see ``manifest.py``). Building streams
the store in blocks (IVF-PQ trains on a strided sample first), so the store is never loaded whole;
files are replaced atomically.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faiss
import geopandas as gpd
import numpy as np

from ofa_embed.atomic import atomic_target
from ofa_embed.errors import IndexStateError, first_line
from ofa_embed.indexes import faiss_index
from ofa_embed.indexes.config import IndexConfig, IVFPQConfig, make_config
from ofa_embed.indexes.filters import FilterTable, SearchFilter
from ofa_embed.indexes.manifest import Manifest, check_fresh, index_dir, read_manifest, write_manifest
from ofa_embed.indexes.vectors import iter_blocks, l2_normalise, strided_sample
from ofa_embed.store import StoreFile, describe_store, take_rows, tiles_frame

logger = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
# filters admitting at most this many rows are ranked exactly (see faiss_index.search_subset)
EXACT_SUBSET_MAX_ROWS = 100_000
ALLOWED_CACHE_SIZE = 16
OPENED_CACHE_SIZE = 2  # opened indexes kept per process (an HNSW index of 1M vectors holds ~1 GB)
RESULT_COLUMNS = ["id", "scene", "modality", "datetime", "xmin", "ymin", "xmax", "ymax", "geometry"]


@dataclass(frozen=True)
class BuildReport:
    """The outcome of :func:`build` or :func:`update`.

    Attributes:
        store: the store directory.
        config: the index configuration.
        reason: why ``config`` was chosen; ``update`` or ``up to date`` for :func:`update`.
        rows: vectors in the index afterwards.
        added: vectors added by this call.
        seconds: wall time of the call, in seconds.
    """

    store: Path
    config: IndexConfig
    reason: str
    rows: int
    added: int
    seconds: float


ProgressCallback = Callable[[str, int, int], None]


def _add(index: faiss.Index, files: list[StoreFile], on_progress: ProgressCallback | None) -> int:
    added, total = 0, sum(f.rows for f in files)
    for block in iter_blocks([f.path for f in files]):
        index.add(block)
        added += len(block)
        if on_progress:
            on_progress("indexing", added, total)
    return added


def _write(store: Path, index: faiss.Index, manifest: Manifest) -> None:
    folder = index_dir(store)
    folder.mkdir(exist_ok=True)
    with atomic_target(folder / INDEX_FILE) as tmp:
        faiss_index.save(index, tmp)
    write_manifest(store, manifest)


def build(
    store: str | Path, kind: str = "auto", *, on_progress: ProgressCallback | None = None, **params: int | bool
) -> BuildReport:
    """Build the index of a store from scratch, replacing any existing one.

    Args:
        store: store directory.
        kind: ``auto``, ``flat``, ``hnsw`` or ``ivfpq``.
        on_progress: called as ``("indexing", vectors_added, vectors_total)`` after every block.
        params: parameters of the kind's config (e.g. ``m=32``, ``nlist=4096``).

    Raises:
        StoreError: missing or empty store, mixed models.
        ConfigError: unknown kind or parameter.
    """
    start = time.perf_counter()
    store = Path(store)
    files = describe_store(store)
    rows, dim = sum(f.rows for f in files), files[0].dimension
    config, reason = make_config(kind, rows, dim, **params)
    logger.info("%s: %s index over %d vectors (%s)", store, config.kind, rows, reason)
    index = faiss_index.on_gpu(faiss_index.create(config, dim))
    if isinstance(config, IVFPQConfig):
        faiss_index.train(index, config, strided_sample([f.path for f in files], rows, config.train_size))
    added = _add(index, files, on_progress)
    manifest = Manifest(dim, files[0].weights_hash, config, reason, faiss.__version__)
    manifest.append(files)
    _write(store, index, manifest)
    return BuildReport(store, config, reason, rows, added, time.perf_counter() - start)


def update(store: str | Path, *, on_progress: ProgressCallback | None = None) -> BuildReport:
    """Add the scene files extracted since the index was built, without a rebuild.

    Raises:
        IndexStateError: no index, or indexed files changed or disappeared (a rebuild is needed).
    """
    start = time.perf_counter()
    store = Path(store)
    manifest = read_manifest(store)
    new = check_fresh(store, manifest, describe_store(store), allow_new=True)
    if not new:
        return BuildReport(store, manifest.config, "up to date", manifest.rows, 0, time.perf_counter() - start)
    index = faiss_index.on_gpu(faiss_index.load(index_dir(store) / INDEX_FILE))
    added = _add(index, new, on_progress)
    manifest.append(new)
    _write(store, index, manifest)
    return BuildReport(store, manifest.config, "update", manifest.rows, added, time.perf_counter() - start)


class StoreIndex:
    """An opened, fresh index of a store. Use :func:`open_index`."""

    def __init__(self, store: Path, manifest: Manifest, index: faiss.Index) -> None:
        self.store = store
        self.manifest = manifest
        self.index = index
        self._offsets = np.array([f.offset for f in manifest.files], dtype=np.int64)
        self._filter_table: FilterTable | None = None
        self._allowed_cache: dict[SearchFilter, np.ndarray] = {}

    @property
    def config(self) -> IndexConfig:
        """The configuration the index was built with."""
        return self.manifest.config

    @property
    def dimension(self) -> int:
        """The embedding dimension D of the indexed vectors."""
        return self.manifest.dimension

    @property
    def weights_hash(self) -> str:
        """The hash of the model weights whose embeddings are indexed."""
        return self.manifest.weights_hash

    def allowed(self, search_filter: SearchFilter | None) -> np.ndarray | None:
        """Positions passing the filter, or None when there is no filter.

        Resolved with DuckDB once per filter and opened index (the last :data:`ALLOWED_CACHE_SIZE`
        filters are kept): a session of queries under one filter pays the resolution once.
        """
        if search_filter is None or search_filter.is_empty:
            return None
        if search_filter not in self._allowed_cache:
            if self._filter_table is None:
                self._filter_table = FilterTable(self.store, self.manifest)
            if len(self._allowed_cache) >= ALLOWED_CACHE_SIZE:
                self._allowed_cache.pop(next(iter(self._allowed_cache)))
            self._allowed_cache[search_filter] = self._filter_table.allowed(search_filter)
        return self._allowed_cache[search_filter]

    def search_vectors(
        self, queries: np.ndarray, k: int = 10, search_filter: SearchFilter | None = None, **knobs: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw search: ``(similarities, positions)``, each ``(q, k)``; -1 positions where fewer match.

        Raises:
            ValueError: ``k`` < 1 or a query of the wrong dimension.
        """
        return self._search_allowed(self._checked(queries, k), k, self.allowed(search_filter), **knobs)

    def search_among(
        self, queries: np.ndarray, positions: np.ndarray, k: int = 10, **knobs: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw search restricted to the store ``positions`` (e.g. the labelled tiles), as :meth:`search_vectors`."""
        positions = np.unique(np.asarray(positions, dtype=np.int64))
        return self._search_allowed(self._checked(queries, k), k, positions, **knobs)

    def _checked(self, queries: np.ndarray, k: int) -> np.ndarray:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.dimension:
            raise ValueError(f"query has dimension {queries.shape[1]}, the index {self.dimension}")
        return queries

    def _search_allowed(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None, **knobs: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if allowed is not None and len(allowed) == 0:
            return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        queries = l2_normalise(queries)
        if allowed is not None and len(allowed) <= EXACT_SUBSET_MAX_ROWS:
            exact = faiss_index.search_subset(self.index, self.config, queries, k, allowed)
            if exact is not None:
                return exact
        return faiss_index.search(self.index, self.config, queries, k, allowed, **knobs)

    def search(
        self, query: np.ndarray, k: int = 10, search_filter: SearchFilter | None = None, **knobs: int | None
    ) -> gpd.GeoDataFrame:
        """Top-``k`` rows of the store most similar (cosine) to one ``(D,)`` query vector.

        Returns:
            One row per hit, best first: ``rank``, ``id``, ``scene``, ``modality``, ``datetime``,
            ``similarity``, ``geometry`` (EPSG:4326 footprint), ``lon``, ``lat`` (bbox centre).
        """
        similarities, positions = self.search_vectors(np.asarray(query)[None], k, search_filter, **knobs)
        hits = positions[0] >= 0
        frame = self.rows(positions[0][hits])
        frame.insert(0, "rank", np.arange(1, len(frame) + 1))
        frame.insert(5, "similarity", similarities[0][hits])
        frame["lon"] = (frame.pop("xmin") + frame.pop("xmax")) / 2
        frame["lat"] = (frame.pop("ymin") + frame.pop("ymax")) / 2
        return frame

    def rows(self, positions: np.ndarray) -> gpd.GeoDataFrame:
        """Store rows at ``positions`` (in that order), with :data:`RESULT_COLUMNS`."""
        paths = [self.store / entry.name for entry in self.manifest.files]
        return tiles_frame(take_rows(paths, self._offsets, positions, RESULT_COLUMNS))


_opened: dict[Path, tuple[tuple[object, ...], StoreIndex]] = {}


def open_index(store: str | Path) -> StoreIndex:
    """Open the index of a store after checking that it matches the store exactly.

    The freshness check runs on every call; the loaded index (and its cached filters) is reused while
    neither the store's files nor the index file have changed, so a loop of ``ofa_embed.search``
    calls loads a large index once.

    Raises:
        StoreError: missing or empty store.
        IndexStateError: no index, or a stale one (the message names what differs and the fix).
    """
    store = Path(store)
    described = describe_store(store)
    manifest = read_manifest(store)
    check_fresh(store, manifest, described)
    stat = (index_dir(store) / INDEX_FILE).stat()
    key = (stat.st_mtime_ns, stat.st_size, tuple(f.fingerprint for f in described))
    resolved = store.resolve()
    cached = _opened.get(resolved)
    if cached is not None and cached[0] == key:
        return cached[1]
    _opened.pop(resolved, None)  # before loading the new one: two large indexes need not coexist
    try:
        index = faiss_index.load(index_dir(store) / INDEX_FILE)
    except RuntimeError as exc:
        raise IndexStateError(f"{store}: index file unreadable ({first_line(exc)}); rebuild it") from None
    if index.ntotal != manifest.rows:
        raise IndexStateError(f"{store}: index holds {index.ntotal} vectors, manifest {manifest.rows}; rebuild it")
    opened = StoreIndex(store, manifest, faiss_index.on_gpu(index))
    if len(_opened) >= OPENED_CACHE_SIZE:
        _opened.pop(next(iter(_opened)))
    _opened[resolved] = (key, opened)
    return opened


__all__ = ["BuildReport", "StoreIndex", "build", "update", "open_index"]
