"""Row layout of store files: Hilbert order of tile centres, row groups sized by rows, bbox statistics that prune."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from ofa_embed.store import ROW_GROUP_ROWS, TileRecords, row_group_rows, write_scene
from ofa_embed.store.hilbert import hilbert_index, spatial_order


@pytest.mark.parametrize("bits", [1, 2, 3, 6])
def test_hilbert_index_is_a_bijection_whose_every_step_is_to_an_edge_neighbour(bits):
    side = 1 << bits
    y, x = np.divmod(np.arange(side * side), side)
    d = hilbert_index(x, y, bits)
    assert d.dtype == np.uint64 and np.array_equal(np.sort(d), np.arange(side * side))
    order = np.argsort(d)
    steps = np.abs(np.diff(x[order])) + np.abs(np.diff(y[order]))
    assert np.all(steps == 1)
    assert (x[order[0]], y[order[0]]) == (0, 0) and (x[order[-1]], y[order[-1]]) == (side - 1, 0)


def test_hilbert_index_of_the_first_order_curve_and_of_a_full_order_grid_corner():
    assert hilbert_index(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 0]), 1).tolist() == [0, 1, 2, 3]
    corner = (1 << 16) - 1
    assert hilbert_index(np.array([corner]), np.array([0]))[0] == 4**16 - 1


def test_hilbert_index_refuses_cells_outside_the_grid():
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        hilbert_index(np.array([4]), np.array([0]), 2)
    with pytest.raises(ValueError, match="order"):
        hilbert_index(np.array([0]), np.array([0]), 0)


def test_spatial_order_keeps_neighbouring_tiles_together():
    r, c = np.divmod(np.arange(4096), 64)
    lon, lat = 8 + c * 0.004 + 0.002, 46 - r * 0.0029  # a 64 x 64 grid of tiles, wider than tall in degrees
    order = spatial_order(lon, lat)
    assert np.array_equal(np.sort(order), np.arange(4096))
    steps = np.abs(np.diff(r[order])) + np.abs(np.diff(c[order]))
    assert steps.mean() < 1.3 and np.mean(steps == 1) > 0.8  # row-major order: 1.98, a Z-order curve: 1.97
    assert len(spatial_order(np.empty(0), np.empty(0))) == 0
    assert spatial_order(np.zeros(3), np.zeros(3)).tolist() == [0, 1, 2]  # one point thrice: input order


def test_spatial_order_puts_both_sides_of_the_antimeridian_together():
    lon = np.array([179.9, -179.9, 179.8, -179.8, 0.0])
    order = spatial_order(lon, np.zeros(5))
    assert order[-1] == 4 or order[0] == 4  # the far point is at an end, the four near ±180 in one run
    near = [int(i) for i in order if i != 4]
    assert [lon[i] % 360 for i in near] == sorted(lon[i] % 360 for i in near) or \
        [lon[i] % 360 for i in near] == sorted((lon[i] % 360 for i in near), reverse=True)


@pytest.mark.parametrize(("rows", "size"), [(0, 1), (1, 1), (4096, 4096), (99_999, 99_999), (100_000, 50_000),
                                            (149_999, 75_000), (1_000_000, 50_000), (1_234_567, 51_441)])
def test_row_groups_hold_50_to_100_thousand_rows_and_a_smaller_file_is_one_group(rows, size):
    assert row_group_rows(rows) == size
    if rows >= 2 * ROW_GROUP_ROWS:
        assert ROW_GROUP_ROWS <= size < 2 * ROW_GROUP_ROWS


def grid_records(side: int, dim: int = 4) -> TileRecords:
    r, c = np.divmod(np.arange(side * side), side)
    d = 0.003
    x0, y0 = 8 + c * d, 46 - r * d
    corners = np.stack([np.stack(p, -1) for p in ((x0, y0), (x0 + d, y0), (x0 + d, y0 - d), (x0, y0 - d))], 1)
    n = side * side
    return TileRecords(rows=r * 16, cols=c * 16, heights=np.full(n, 16), widths=np.full(n, 16), padded=np.zeros(n, bool),
                       valid_fraction=np.ones(n, np.float32), lonlat=corners,
                       embeddings=np.arange(n * dim, dtype=np.float32).reshape(n, dim))


def test_a_large_file_is_written_in_compact_row_groups_that_a_bbox_prunes(tmp_path):
    side = 400  # 160,000 tiles: three row groups of 53,334 rows
    path = write_scene(tmp_path, "big", modality="sentinel2_l1c", acquired=None, tile_size=16, missing_bands=[],
                       records=grid_records(side), metadata={"model": {"weights_hash": "feedfacefeedface"}},
                       emb_metadata={"dimension": 4, "weights_hash": "feedfacefeedface"})
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [53_334, 53_334, 53_332]
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"
    names = [meta.schema.column(i).path for i in range(meta.num_columns)]
    assert {"bbox.xmin", "bbox.ymax", "xmin", "ymax"} <= set(names)  # the covering and the flat columns, both
    spans = []
    for g in range(meta.num_row_groups):
        stats = {k: meta.row_group(g).column(names.index(k)).statistics for k in ("xmin", "ymin", "xmax", "ymax")}
        spans.append((stats["xmax"].max - stats["xmin"].min) * (stats["ymax"].max - stats["ymin"].min))
    whole = (side * 0.003) ** 2
    assert max(spans) < 0.55 * whole  # each third of the curve lies in half the grid's bbox, not across all of it
    corner = (8.0, 44.8, 8.03, 44.83)  # 10 x 10 tiles in the south-west corner: one group's statistics hold it
    touching = [g for g in range(meta.num_row_groups) if all((
        meta.row_group(g).column(names.index("xmin")).statistics.min <= corner[2],
        meta.row_group(g).column(names.index("xmax")).statistics.max >= corner[0],
        meta.row_group(g).column(names.index("ymin")).statistics.min <= corner[3],
        meta.row_group(g).column(names.index("ymax")).statistics.max >= corner[1]))]
    assert len(touching) == 1
    # every row is still there, in a row order that is a permutation of the tiling
    tiles = pq.read_table(path, columns=["row", "col"]).to_pydict()
    assert sorted(zip(tiles["row"], tiles["col"], strict=True)) == sorted(
        zip(np.repeat(np.arange(side) * 16, side), np.tile(np.arange(side) * 16, side), strict=True))
