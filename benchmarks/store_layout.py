"""Store file layout at 10^6 rows: a bbox query with DuckDB and with the index filter, before and after.

    python benchmarks/store_layout.py [--rows 1000000] [--files 1] [--queries 9] [--repeats 3] [--folder /tmp/ofa-layout]

Data: ``--rows`` tiles of 320 m (32 px at 10 m) on one square grid near 8 E, 46 N, split row-major into
``--files`` scene files; each tile's embedding is 192 seeded standard-normal float32 values (a bbox query
never looks at them, but it reads them, and random values compress as little as real embeddings do). The
same tiles are written once per layout, in the same run, under ``--folder`` (never the repository):

- ``before``: the writer as it was until this benchmark: rows on a Z-order (Morton) curve of tile centres,
  each axis quantised to 16 bits over its own extent (the removed ``_zorder``, copied below), row groups of
  1,024 rows, zstd, bbox covering; the library's table rewritten in that order;
- ``hilbert-1k``: the library's Hilbert order with the old 1,024-row groups (the two changes apart);
- ``after``: ``ofa_embed.store.write_scene`` as it is now (Hilbert order, row groups by file size:
  :func:`ofa_embed.store.row_group_rows`).

Queries: ``--queries`` bboxes at seeded random places for each of four sizes (a square covering 0.01 %,
0.1 %, 1 % and 10 % of the grid's area), the same for every layout. Measured per layout:

- row groups a reader that prunes by row-group statistics reads: those whose ``xmin/xmax/ymin/ymax``
  statistics overlap the bbox, and the rows in them (exact, from the footers);
- DuckDB through ``ofa_embed.sqlview.connect_store`` (the ``embeddings`` view, DuckDB's default threads,
  one connection per layout, one untimed warm-up query each); each query timed ``--repeats`` times and the
  best kept, the layouts taking turns in a rotating order within each bbox so that the machine's drift
  falls on all alike; p50 over the bboxes of a size: ``count`` is ``SELECT count(*) FROM embeddings
  WHERE xmin <= :maxx AND xmax >= :minx AND ymin <= :maxy AND ymax >= :miny``, ``fetch`` is ``SELECT id,
  embedding`` under the same predicate (all rows fetched as Arrow), ``covering`` is ``fetch`` with the
  predicate on the GeoParquet ``bbox`` struct (``bbox.xmin`` ...) instead of the flat columns;
- the index filter (``ofa_embed.indexes.filters.FilterTable``, what a filtered search resolves a bbox with):
  building it (reading the filter columns of every file: the first filtered search of an opened index),
  then ``allowed(SearchFilter(bbox=...))`` (best of ``--repeats``, p50), and where the allowed rows lie: the number of contiguous
  runs of store positions they form and the span (last - first + 1) over their count (the filtered
  search ranks a set in place when its span is under 8x its rows, ``indexes/store_index.py``);
- file size, seconds to write (``after``: ``write_scene`` end to end; the others: the rewrite only).

Every bbox's DuckDB result is checked to be the same row set in every layout. Runs hold no lock themselves:
run under ``flock /tmp/ofa-heavy.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ofa_embed.indexes.config import FlatConfig  # noqa: E402
from ofa_embed.indexes.filters import FilterTable, SearchFilter  # noqa: E402
from ofa_embed.indexes.manifest import Manifest  # noqa: E402
from ofa_embed.sqlview import connect_store  # noqa: E402
from ofa_embed.store import TileRecords, describe_store, store_files, write_scene  # noqa: E402
from ofa_embed.store.hilbert import spatial_order  # noqa: E402

DIM = 192
TILE_M = 320.0
WEST, NORTH = 8.0, 46.0
SEED = 0
AREA_FRACTIONS = (1e-4, 1e-3, 1e-2, 1e-1)
OLD_ROW_GROUP = 1024


def old_zorder(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The Morton code the writer sorted by before (copied from the removed ``geoparquet._zorder``)."""

    def quantise(v: np.ndarray) -> np.ndarray:
        span = v.max() - v.min()
        q = np.zeros_like(v) if span == 0 else (v - v.min()) / span * 65535
        return q.astype(np.uint64)

    def spread(v: np.ndarray) -> np.ndarray:
        v = (v | (v << 8)) & np.uint64(0x00FF00FF)
        v = (v | (v << 4)) & np.uint64(0x0F0F0F0F)
        v = (v | (v << 2)) & np.uint64(0x33333333)
        return (v | (v << 1)) & np.uint64(0x55555555)

    return spread(quantise(x)) | (spread(quantise(y)) << np.uint64(1))


def grid(rows: int) -> tuple[int, float, float]:
    """``(side, dlon, dlat)``: tiles along the square grid's edge and a tile's size in degrees."""
    dlat = TILE_M / 111_320
    return math.isqrt(rows - 1) + 1, dlat / math.cos(math.radians(NORTH)), dlat


def write_after(folder: Path, rows: int, files: int) -> float:
    """The library's store of ``rows`` tiles in ``files`` scene files; seconds spent in ``write_scene``."""
    side, dlon, dlat = grid(rows)
    rng = np.random.default_rng(SEED)
    seconds = 0.0
    bounds = np.linspace(0, rows, files + 1).astype(np.int64)
    for j in range(files):
        cells = np.arange(bounds[j], bounds[j + 1])
        r, c = np.divmod(cells, side)
        x0, x1 = WEST + c * dlon, WEST + (c + 1) * dlon
        y0, y1 = NORTH - r * dlat, NORTH - (r + 1) * dlat
        corners = np.stack([np.stack(p, -1) for p in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))], 1)
        n = len(cells)
        records = TileRecords(rows=r * 32, cols=c * 32, heights=np.full(n, 32), widths=np.full(n, 32),
                              padded=np.zeros(n, bool), valid_fraction=np.ones(n, np.float32), lonlat=corners,
                              embeddings=rng.standard_normal((n, DIM), np.float32))
        emb = {"version": "0.1.0", "column": "embedding", "model": "synthetic", "weights_hash": "synthetic",
               "dimension": DIM, "quantization": "float32", "l2_normalized": False,
               "datetime_range": ["2024-06-01T10:30:00+00:00"] * 2}
        start = time.perf_counter()
        write_scene(folder, f"scene-{j:02d}", modality="sentinel2_l1c", acquired=datetime(2024, 6, 1, 10, 30, tzinfo=UTC),
                    tile_size=32, missing_bands=[], records=records,
                    metadata={"model": {"name": "synthetic", "weights_hash": "synthetic"}}, emb_metadata=emb)
        seconds += time.perf_counter() - start
    return seconds


def rewrite(source: Path, target: Path, order: Callable[[pa.Table], np.ndarray], row_group: int) -> float:
    """Every file of ``source`` rewritten to ``target`` in ``order`` with row groups of ``row_group`` rows, as the
    library writes them otherwise (zstd, statistics, no dictionary on float embeddings, same metadata).
    """
    seconds = 0.0
    for path in store_files(source):
        table = pq.read_table(path)
        start = time.perf_counter()
        table = table.take(pa.array(order(table)))
        pq.write_table(table, target / path.name, row_group_size=row_group, compression="zstd", write_statistics=True,
                       use_dictionary=[c for c in table.column_names if c != "embedding"])
        seconds += time.perf_counter() - start
    return seconds


def centres(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    xmin, ymin, xmax, ymax = (table.column(k).to_numpy() for k in ("xmin", "ymin", "xmax", "ymax"))
    return (xmin + xmax) / 2, (ymin + ymax) / 2


def queries(rows: int, count: int) -> list[tuple[float, tuple[float, float, float, float]]]:
    """``(area fraction, bbox)``: ``count`` seeded squares per fraction of the grid's area, inside the grid."""
    side, dlon, dlat = grid(rows)
    rng = np.random.default_rng(SEED + 1)
    out = []
    for fraction in AREA_FRACTIONS:
        edge = math.sqrt(fraction) * side  # in tiles
        for _ in range(count):
            c, r = rng.uniform(0, side - edge, 2)
            out.append((fraction, (WEST + c * dlon, NORTH - (r + edge) * dlat, WEST + (c + edge) * dlon, NORTH - r * dlat)))
    return out


def pruned(folder: Path, bbox: tuple[float, float, float, float]) -> tuple[int, int, int]:
    """``(row groups, overlapping groups, rows in them)`` by the footers' statistics."""
    total = groups = rows = 0
    for path in store_files(folder):
        meta = pq.ParquetFile(path).metadata
        names = [meta.schema.column(i).path for i in range(meta.num_columns)]
        at = {k: names.index(k) for k in ("xmin", "ymin", "xmax", "ymax")}
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            s = {k: group.column(i).statistics for k, i in at.items()}
            total += 1
            if s["xmin"].min <= bbox[2] and s["xmax"].max >= bbox[0] and s["ymin"].min <= bbox[3] and s["ymax"].max >= bbox[1]:
                groups += 1
                rows += group.num_rows
    return total, groups, rows


def timed(call: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = call()
    return (time.perf_counter() - start) * 1000, result


def runs(positions: np.ndarray) -> tuple[int, float]:
    """Contiguous runs of sorted ``positions`` and their span over their count."""
    if not len(positions):
        return 0, 0.0
    return int(1 + np.count_nonzero(np.diff(positions) != 1)), float(positions[-1] - positions[0] + 1) / len(positions)


def measure(layouts: dict[str, Path], bboxes: list[tuple[float, tuple[float, float, float, float]]],
            repeats: int) -> dict[str, dict[str, list[float]]]:
    """Per layout and measurement, one value per bbox (the best of ``repeats`` timings). Layouts take turns
    within each bbox (a rotating order), so the machine's drift falls on every layout alike.
    """
    flat = "xmin <= ? AND xmax >= ? AND ymin <= ? AND ymax >= ?"
    covering = "bbox.xmin <= ? AND bbox.xmax >= ? AND bbox.ymin <= ? AND bbox.ymax >= ?"
    sql = {"count": f"SELECT count(*) FROM embeddings WHERE {flat}",
           "fetch": f"SELECT id, embedding FROM embeddings WHERE {flat}",
           "covering": f"SELECT id, embedding FROM embeddings WHERE {covering}"}
    names = list(layouts)
    out: dict[str, dict[str, list[float]]] = {n: {k: [] for k in (*sql, "allowed", "runs", "span", "groups", "group_rows",
                                                                  "hits", "filter_build", "total_groups")} for n in names}
    connections = {n: connect_store(layouts[n]) for n in names}
    tables = {}
    for n in names:
        manifest = Manifest(DIM, "synthetic", FlatConfig(), "benchmark", "none")
        manifest.append(describe_store(layouts[n]))
        ms, tables[n] = timed(lambda m=manifest, n=n: FilterTable(layouts[n], m))
        out[n]["filter_build"].append(ms)
        out[n]["total_groups"].append(pruned(layouts[n], bboxes[0][1])[0])
    for n in names:  # warm-up: DuckDB's first query of a connection
        connections[n].execute(sql["count"], params(bboxes[0][1])).fetchone()
    for i, (_, bbox) in enumerate(bboxes):
        turn = names[i % len(names):] + names[: i % len(names)]
        ids = {}
        for key, query in sql.items():
            best = {n: math.inf for n in names}
            for _ in range(repeats):
                for n in turn:
                    ms, result = timed(lambda n=n, q=query, b=bbox: connections[n].execute(q, params(b)).to_arrow_table())
                    best[n] = min(best[n], ms)
                    if key == "fetch":
                        ids[n] = frozenset(result.column("id").to_pylist())
            for n in names:
                out[n][key].append(best[n])
        if len(set(ids.values())) != 1:
            raise SystemExit(f"bbox {bbox}: the layouts' DuckDB queries returned different rows")
        for n in turn:
            best_ms, allowed = math.inf, np.empty(0, np.int64)
            for _ in range(repeats):
                ms, allowed = timed(lambda n=n, b=bbox: tables[n].allowed(SearchFilter(bbox=b)))
                best_ms = min(best_ms, ms)
            count, span = runs(np.asarray(allowed))
            _, groups, group_rows = pruned(layouts[n], bbox)
            for key, value in (("allowed", best_ms), ("runs", count), ("span", span), ("groups", groups),
                               ("group_rows", group_rows), ("hits", len(ids[n]))):
                out[n][key].append(value)
    for con in connections.values():
        con.close()
    return out


def params(b: tuple[float, float, float, float]) -> list[float]:
    """The flat predicate's parameters for bbox ``b``: xmin <= maxx, xmax >= minx, ymin <= maxy, ymax >= miny."""
    return [b[2], b[0], b[3], b[1]]


def size_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in store_files(folder)) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=1)
    parser.add_argument("--queries", type=int, default=9, help="bboxes per area fraction")
    parser.add_argument("--repeats", type=int, default=3, help="timings of each query, the best kept")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/ofa-layout"))
    args = parser.parse_args()
    shutil.rmtree(args.folder, ignore_errors=True)
    layouts = {name: args.folder / name for name in ("before", "hilbert-1k", "after")}
    for folder in layouts.values():
        folder.mkdir(parents=True)
    written = {"after": write_after(layouts["after"], args.rows, args.files)}

    def z(table: pa.Table) -> np.ndarray:
        return np.argsort(old_zorder(*centres(table)), kind="stable")

    def h(table: pa.Table) -> np.ndarray:
        return spatial_order(*centres(table))

    written["before"] = rewrite(layouts["after"], layouts["before"], z, OLD_ROW_GROUP)
    written["hilbert-1k"] = rewrite(layouts["after"], layouts["hilbert-1k"], h, OLD_ROW_GROUP)
    bboxes = queries(args.rows, args.queries)
    print(f"{args.rows:,} rows in {args.files} file(s), {DIM}-d float32 embeddings; {len(bboxes)} bboxes "
          f"({args.queries} per area fraction); DuckDB on its default {os.cpu_count()} threads; each figure the p50 "
          f"over the bboxes of the best of {args.repeats} timings, layouts taking turns")
    measured = measure(layouts, bboxes, args.repeats)
    fractions = np.array([f for f, _ in bboxes])
    print("\nlayout       MiB     write s  row groups  filter build ms")
    for name, m in measured.items():
        print(f"{name:<11}  {size_mib(layouts[name]):7.1f}  {written[name]:6.1f}  {m['total_groups'][0]:10,.0f}  "
              f"{m['filter_build'][0]:8.0f}")
    print("\narea     layout       hits p50  groups read  rows read  DuckDB count ms  fetch ms  covering ms  "
          "filter ms  runs  span/hits")
    for fraction in AREA_FRACTIONS:
        pick = fractions == fraction
        for name, m in measured.items():
            def p50(key: str, m: dict[str, list[float]] = m, pick: np.ndarray = pick) -> float:
                return float(np.median(np.asarray(m[key], dtype=float)[pick]))

            print(f"{fraction:<8.2%} {name:<11}  {p50('hits'):8,.0f}  {p50('groups'):11,.0f}  {p50('group_rows'):9,.0f}  "
                  f"{p50('count'):15.2f}  {p50('fetch'):8.2f}  {p50('covering'):11.2f}  {p50('allowed'):9.3f}  "
                  f"{p50('runs'):4,.0f}  {p50('span'):9.2f}")


if __name__ == "__main__":
    main()
