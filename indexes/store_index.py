"""A faiss index beside a store: build, update, open (refusing stale indexes) and filtered search.

``STORE/_index/`` holds ``index.faiss`` and ``manifest.json`` (see ``manifest.py``). Building streams
the store in blocks (IVF-PQ trains on a strided sample first), so the store is never loaded whole;
files are replaced atomically.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import geopandas as gpd
import numpy as np

from ofa_embed.atomic import atomic_target
from ofa_embed.cluster import dask_client
from ofa_embed.errors import ConfigError, IndexStateError, first_line
from ofa_embed.indexes import faiss_index
from ofa_embed.indexes.config import IndexConfig, IVFPQConfig, make_config
from ofa_embed.indexes.filters import FilterTable, SearchFilter
from ofa_embed.indexes.manifest import (
    SINGLE_INDEX_FILE,
    Manifest,
    check_fresh,
    index_dir,
    read_manifest,
    shard_of,
    write_manifest,
)
from ofa_embed.indexes.vectors import iter_blocks, l2_normalise, strided_sample
from ofa_embed.location import AnyPath, RemotePath, as_location, change_stamp
from ofa_embed.progress import ProgressCallback
from ofa_embed.store import RESULT_COLUMNS, StoreFile, describe_store, take_rows, tiles_frame

logger = logging.getLogger(__name__)

# filters admitting at most this many rows are ranked exactly (see faiss_index.search_subset)
EXACT_SUBSET_MAX_ROWS = 100_000
ALLOWED_CACHE_SIZE = 16
# the exact vectors of the last filters' allowed rows, kept up to 20,000 rows each: 4 x 15 MB at D = 192
SUBSET_CACHE_SIZE, SUBSET_CACHE_ROWS = 4, 20_000
# filters remembered as searched once, so that their second search gathers and keeps their vectors
SEARCHED_ONCE_SIZE = 64
OPENED_CACHE_SIZE = 2  # opened indexes kept per process (an HNSW index of 1M vectors holds ~1 GB)


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

    store: AnyPath
    config: IndexConfig
    reason: str
    rows: int
    added: int
    seconds: float



def _add(index: faiss.Index, files: list[StoreFile], on_progress: ProgressCallback | None) -> int:
    added, total = 0, sum(f.rows for f in files)
    for block in iter_blocks([f.path for f in files]):
        index.add(block)
        added += len(block)
        if on_progress:
            on_progress("indexing", added, total)
    return added


def build_shard(paths: list[AnyPath], config: IndexConfig, dim: int, target: AnyPath,
                start: bytes | AnyPath | None = None) -> int:
    """One shard: the vectors of ``paths`` (in order) added to a new index of ``config``, or to ``start`` (an
    index file to update, or a serialised trained empty index), written atomically to ``target``; returns
    the shard's vector count.

    A plain function of paths, so that a Dask worker can run it where the store is mounted.
    """
    if isinstance(start, (Path, RemotePath)):
        index = faiss_index.load(start)
    elif start is not None:
        index = faiss.deserialize_index(np.frombuffer(start, np.uint8))
    else:
        index = faiss_index.create(config, dim)
    for block in iter_blocks(paths):
        index.add(block)
    with atomic_target(target) as tmp:
        faiss_index.save(index, tmp)
    return int(index.ntotal)


def _write(store: AnyPath, index: faiss.Index, manifest: Manifest) -> None:
    folder = index_dir(store)
    folder.mkdir(exist_ok=True)
    with atomic_target(folder / SINGLE_INDEX_FILE) as tmp:
        faiss_index.save(index, tmp)
    manifest.shard_files = [SINGLE_INDEX_FILE]
    _commit(store, manifest)


def _commit(store: AnyPath, manifest: Manifest) -> None:
    """Write the manifest (the index readers see from then on), then remove faiss files it no longer names."""
    write_manifest(store, manifest)
    for stale in index_dir(store).glob("*.faiss"):
        if stale.name not in manifest.shard_files:
            stale.unlink(missing_ok=True)


# one shard to build or update: its store files, the faiss file to write, and what to start from (see build_shard)
ShardJob = tuple[list[StoreFile], AnyPath, bytes | AnyPath | None]


def _run_shards(jobs: list[ShardJob], config: IndexConfig, dim: int, client: Any, on_progress: ProgressCallback | None,
                total: int) -> None:
    """Build or update shards: as Dask tasks on ``client`` (a ``distributed.Client``), else one after another."""
    done = 0
    if client is None:
        for files, target, start in jobs:
            build_shard([f.path for f in files], config, dim, target, start)
            done += sum(f.rows for f in files)
            if on_progress:
                on_progress("indexing", done, total)
        return
    from distributed import as_completed

    futures = {client.submit(build_shard, [f.path for f in files], config, dim, target, start, pure=False):
               sum(f.rows for f in files) for files, target, start in jobs}
    try:
        for future in as_completed(futures):
            future.result()  # re-raises a shard's error here
            done += futures[future]
            if on_progress:
                on_progress("indexing", done, total)
    except BaseException:
        client.cancel(list(futures))  # no shard task goes on writing after the build has failed
        raise


def _shard_names(shards: int) -> list[str]:
    # a new name per build: the manifest written last switches readers from the old files to the new
    token = uuid.uuid4().hex[:8]
    return [f"shard-{i:03d}-{token}.faiss" for i in range(shards)]


def build(
    store: str | AnyPath, kind: str = "auto", *, shards: int = 1, client: Any = None,
    on_progress: ProgressCallback | None = None, **params: int | bool,
) -> BuildReport:
    """Build the index of a store from scratch, replacing any existing one.

    Args:
        store: store directory.
        kind: ``auto``, ``flat``, ``hnsw`` or ``ivfpq``.
        shards: split the index into this many shard indexes (each store file in one, by a hash of its
            name), built in parallel on ``client``; a search queries every shard and merges the top-k.
        client: a ``distributed.Client``, a scheduler address or ``"local"`` to build the shards on (default:
            one after another here).
        on_progress: called as ``("indexing", vectors_added, vectors_total)``.
        params: parameters of the kind's config (e.g. ``m=32``, ``nlist=4096``).

    Raises:
        StoreError: missing or empty store, mixed models.
        ConfigError: unknown kind or parameter, or fewer than one shard.
    """
    start = time.perf_counter()
    store = as_location(store).resolve()  # shard tasks may run on other machines, in other working directories
    if shards < 1:
        raise ConfigError(f"--shards must be at least 1, got {shards}")
    files = describe_store(store)
    rows, dim = sum(f.rows for f in files), files[0].dimension
    if shards == 1:
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
    per_shard: list[list[StoreFile]] = [[] for _ in range(shards)]
    for f in files:
        per_shard[shard_of(f.name, shards)].append(f)
    largest = max(sum(f.rows for f in part) for part in per_shard)
    config, reason = make_config(kind, largest, dim, **params)
    manifest = Manifest(dim, files[0].weights_hash, config, f"{shards} shards of at most {largest} vectors; {reason}",
                        faiss.__version__, shard_files=_shard_names(shards))
    manifest.append(files)
    logger.info("%s: %s index in %d shards over %d vectors", store, manifest.config.kind, shards, rows)
    index_dir(store).mkdir(exist_ok=True)
    start_from = None
    if isinstance(manifest.config, IVFPQConfig):
        # one quantiser for every shard, trained on a sample of the whole store: an empty or small shard
        # gets the same coarse cells as the others, and a file added later lands in trained cells
        trained = faiss_index.create(manifest.config, dim)
        faiss_index.train(trained, manifest.config, strided_sample([f.path for f in files], rows, manifest.config.train_size))
        start_from = faiss.serialize_index(trained).tobytes()
    jobs: list[ShardJob] = [(part, index_dir(store) / name, start_from)
                            for part, name in zip(per_shard, manifest.shard_files, strict=True)]
    with dask_client(client) as connected:
        _run_shards(jobs, manifest.config, dim, connected, on_progress, rows)
    _commit(store, manifest)
    return BuildReport(store, manifest.config, manifest.reason, rows, rows, time.perf_counter() - start)


def update(store: str | AnyPath, *, client: Any = None, on_progress: ProgressCallback | None = None) -> BuildReport:
    """Add the scene files extracted since the index was built, without a rebuild; in a sharded index,
    each to the shard its name hashes to (the shards that gain files are rewritten, on ``client`` if given).

    Raises:
        IndexStateError: no index, or indexed files changed or disappeared (a rebuild is needed).
    """
    start = time.perf_counter()
    store = as_location(store).resolve()  # shard tasks may run on other machines, in other working directories
    manifest = read_manifest(store)
    new = check_fresh(store, manifest, describe_store(store), allow_new=True)
    if not new:
        return BuildReport(store, manifest.config, "up to date", manifest.rows, 0, time.perf_counter() - start)
    added = sum(f.rows for f in new)
    if manifest.shards == 1:
        index = faiss_index.on_gpu(faiss_index.load(index_dir(store) / manifest.shard_files[0]))
        _add(index, new, on_progress)
        manifest.append(new)
        _write(store, index, manifest)
        return BuildReport(store, manifest.config, "update", manifest.rows, added, time.perf_counter() - start)
    before = len(manifest.files)
    manifest.append(new)
    grown = sorted({entry.shard for entry in manifest.files[before:]})
    renamed = dict(zip(grown, _shard_names(len(grown)), strict=True))
    jobs: list[ShardJob] = [
        ([f for f, e in zip(new, manifest.files[before:], strict=True) if e.shard == shard],
         index_dir(store) / renamed[shard], index_dir(store) / manifest.shard_files[shard]) for shard in grown]
    with dask_client(client) as connected:
        _run_shards(jobs, manifest.config, manifest.dimension, connected, on_progress, added)
    manifest.shard_files = [renamed.get(i, name) for i, name in enumerate(manifest.shard_files)]
    _commit(store, manifest)
    return BuildReport(store, manifest.config, "update", manifest.rows, added, time.perf_counter() - start)


def merge_top_k(similarities: list[np.ndarray], positions: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of several ``(q, k_i)`` result sets, per query: by similarity, ties by position (so the
    merge of exact shard results equals one exact search); -1 / -inf where fewer than ``k`` were found.

    faiss's ``IndexShards`` merges the same way, but only over indexes whose ids it owns and without a
    per-shard filter; here each shard maps its ids to store positions and is filtered by its own rows.
    """
    sims = np.concatenate(similarities, axis=1)
    ids = np.concatenate(positions, axis=1)
    sims = np.where(ids >= 0, sims, -np.inf)
    order = np.lexsort((np.where(ids >= 0, ids, np.iinfo(np.int64).max), -sims), axis=1)[:, :k]
    best_sims, best_ids = np.take_along_axis(sims, order, 1), np.take_along_axis(ids, order, 1)
    if best_ids.shape[1] < k:
        pad = k - best_ids.shape[1]
        best_sims = np.pad(best_sims, ((0, 0), (0, pad)), constant_values=-np.inf)
        best_ids = np.pad(best_ids, ((0, 0), (0, pad)), constant_values=-1)
    return best_sims.astype(np.float32), best_ids


class StoreIndex:
    """An opened, fresh index of a store. Use :func:`open_index`."""

    def __init__(self, store: AnyPath, manifest: Manifest, shards: list[faiss.Index]) -> None:
        self.store = store
        self.manifest = manifest
        # each shard's faiss index and the store position of each of its vector ids (ascending); one shard's
        # ids are the positions themselves (None: no 8-bytes-a-vector table for the common case)
        self.shards: list[tuple[faiss.Index, np.ndarray | None]] = [
            (index, manifest.shard_positions(i) if len(shards) > 1 else None) for i, index in enumerate(shards)]
        self._offsets = np.array([f.offset for f in manifest.files], dtype=np.int64)
        self._filter_table: FilterTable | None = None
        self._allowed_cache: dict[SearchFilter, np.ndarray] = {}
        self._subsets: dict[tuple[SearchFilter | None, int], np.ndarray] = {}
        self._searched_once: dict[tuple[SearchFilter | None, int], None] = {}  # insertion-ordered, bounded

    @property
    def kept_filters(self) -> set[SearchFilter | None]:
        """The filters whose allowed vectors are kept for their next searches (those searched more than once)."""
        return {key[0] for key in self._subsets}

    @property
    def index(self) -> faiss.Index:
        """The faiss index of a one-shard index (vector ids are store positions)."""
        if len(self.shards) != 1:
            raise IndexStateError(f"{self.store}: a {len(self.shards)}-shard index has no single faiss index")
        return self.shards[0][0]

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

        Resolved with the in-memory pre-index (``filters.py``) once per filter and opened index (the last
        :data:`ALLOWED_CACHE_SIZE` filters are kept): a session of queries under one filter pays the resolution once.
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
        key = None if search_filter is None or search_filter.is_empty else search_filter
        return self._search_allowed(self._checked(queries, k), k, self.allowed(search_filter), key=key, **knobs)

    def search_among(
        self, queries: np.ndarray, positions: np.ndarray, k: int = 10, **knobs: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw search restricted to the store ``positions`` (e.g. the labelled tiles), as :meth:`search_vectors`."""
        positions = np.unique(np.asarray(positions, dtype=np.int64))
        return self._search_allowed(self._checked(queries, k), k, positions, key=None, **knobs)

    def _checked(self, queries: np.ndarray, k: int) -> np.ndarray:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.dimension:
            raise ValueError(f"query has dimension {queries.shape[1]}, the index {self.dimension}")
        return queries

    def _search_allowed(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None, *, key: SearchFilter | None = None,
        **knobs: int | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        empty = np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        if allowed is not None and len(allowed) == 0:
            return empty
        queries = l2_normalise(queries)
        found = []
        for shard, (index, positions) in enumerate(self.shards):
            if positions is None:
                return self._search_shard(index, queries, k, allowed, (key, shard), **knobs)
            if not len(positions):
                continue  # a shard no file hashed to
            local = None
            if allowed is not None:
                # the allowed rows of this shard, as its own ids (positions are ascending)
                slot = np.minimum(np.searchsorted(positions, allowed), len(positions) - 1)
                local = slot[positions[slot] == allowed]
                if not len(local):
                    continue
            similarities, ids = self._search_shard(index, queries, k, local, (key, shard), **knobs)
            found.append((similarities, np.where(ids >= 0, positions[np.maximum(ids, 0)], -1)))
        if not found:
            return empty
        if len(found) == 1:
            return found[0]
        return merge_top_k([f[0] for f in found], [f[1] for f in found], k)

    def _search_shard(self, index: faiss.Index, queries: np.ndarray, k: int, allowed: np.ndarray | None,
                      key: tuple[SearchFilter | None, int], **knobs: int | None) -> tuple[np.ndarray, np.ndarray]:
        if allowed is not None and len(allowed) <= EXACT_SUBSET_MAX_ROWS:
            # a filter's exact vectors are gathered and kept from its second search on (a session of queries
            # under one filter); a filter searched once is ranked in place, gathering nothing
            subset = self._subsets.get(key) if key[0] is not None else None
            if subset is None and key in self._searched_once and len(allowed) <= SUBSET_CACHE_ROWS:
                subset = faiss_index.exact_vectors(index, self.config, allowed)
                if subset is not None:
                    if len(self._subsets) >= SUBSET_CACHE_SIZE:
                        self._subsets.pop(next(iter(self._subsets)))
                    self._subsets[key] = subset
            if subset is not None:
                return faiss_index.search_subset(subset, allowed, queries, k)
            if key[0] is not None:
                self._searched_once[key] = None
                while len(self._searched_once) > SEARCHED_ONCE_SIZE:
                    self._searched_once.pop(next(iter(self._searched_once)))
            ranked = faiss_index.search_exact(index, self.config, allowed, queries, k)
            if ranked is not None:
                return ranked
        return faiss_index.search(index, self.config, queries, k, allowed, **knobs)

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

    def index_positions(self, positions: np.ndarray, files: list[StoreFile]) -> np.ndarray:
        """The vector ids of rows numbered in ``files`` order (``read_tiles``' ``position``; files sorted by
        name), which differ from the index's (files in the order they were indexed) after an ``--update``
        added a file whose name sorts earlier.
        """
        starts = np.cumsum([0] + [f.rows for f in files])
        offset_of = {entry.name: entry.offset for entry in self.manifest.files}
        offsets = np.array([offset_of[f.name] for f in files], dtype=np.int64)
        positions = np.asarray(positions, dtype=np.int64)
        which = np.searchsorted(starts, positions, side="right") - 1
        return offsets[which] + (positions - starts[which])

    def rows(self, positions: np.ndarray) -> gpd.GeoDataFrame:
        """Store rows at ``positions`` (in that order), with :data:`~ofa_embed.store.RESULT_COLUMNS`."""
        paths = [self.store / entry.name for entry in self.manifest.files]
        return tiles_frame(take_rows(paths, self._offsets, positions, list(RESULT_COLUMNS)))


_opened: dict[AnyPath, tuple[tuple[object, ...], StoreIndex]] = {}


def open_index(store: str | AnyPath) -> StoreIndex:
    """Open the index of a store after checking that it matches the store exactly.

    The freshness check runs on every call; the loaded index (and its cached filters) is reused while
    neither the store's files nor the index file have changed, so a loop of ``ofa_embed.search``
    calls loads a large index once.

    Raises:
        StoreError: missing or empty store.
        IndexStateError: no index, or a stale one (the message names what differs and the fix).
    """
    store = as_location(store)
    described = describe_store(store)
    manifest = read_manifest(store)
    check_fresh(store, manifest, described)
    paths = [index_dir(store) / name for name in manifest.shard_files]
    try:
        stamps = tuple(change_stamp(path) for path in paths)
    except FileNotFoundError as exc:
        raise IndexStateError(f"{store}: index file {Path(str(exc.filename)).name} missing; rebuild it") from None
    key = (stamps, tuple(f.fingerprint for f in described))
    resolved = store.resolve()
    cached = _opened.get(resolved)
    if cached is not None and cached[0] == key:
        return cached[1]
    _opened.pop(resolved, None)  # before loading the new one: two large indexes need not coexist
    shards = []
    for shard, path in enumerate(paths):
        try:
            index = faiss_index.load(path)
        except RuntimeError as exc:
            raise IndexStateError(f"{store}: index file {path.name} unreadable ({first_line(exc)}); rebuild it") from None
        expected = manifest.shard_rows(shard)
        if index.ntotal != expected:
            raise IndexStateError(f"{store}: {path.name} holds {index.ntotal} vectors, the manifest {expected}; rebuild it")
        shards.append(faiss_index.on_gpu(index))
    opened = StoreIndex(store, manifest, shards)
    if len(_opened) >= OPENED_CACHE_SIZE:
        _opened.pop(next(iter(_opened)))
    _opened[resolved] = (key, opened)
    return opened


__all__ = ["BuildReport", "StoreIndex", "build", "build_shard", "merge_top_k", "update", "open_index"]
