import threading
from collections import deque

import numpy as np
import pytest
from rasterio.windows import Window

from ofa_embed.raster.opening import open_scene
from ofa_embed.raster.reader import PREFETCH_DEPTH, TileRing, plan_tiles, read_tile_batches
from ofa_embed.sensors import get_modality
from tests.helpers import s2_values, write_raster

S2 = get_modality("sentinel2_l1c")


def test_scenes_sharing_a_ring_never_overwrite_a_batch_still_held(tmp_path):
    # 4 x 4 = 16 tiles (a multiple of the batch) and 3 x 5 = 15 tiles (a partial last batch), twice over
    sizes = [(128, 128), (96, 160), (128, 128), (96, 160)]
    scenes = [open_scene(write_raster(tmp_path / f"s2_{i}.tif", s2_values(h, w, seed=i), descriptions=S2.band_names))
              for i, (h, w) in enumerate(sizes)]
    held, batch_size = 3, 4
    ring = TileRing(held)
    # when a batch is yielded, the consumer may still hold `held` batches and the queue one more
    kept: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=held + PREFETCH_DEPTH + 1)
    tiles = 0
    for scene in scenes:
        plan = plan_tiles(scene, 32, None, 16)
        for batch in read_tile_batches(plan, batch_size, 0.0, threading.Event(), held, ring):
            kept.append((batch.data, batch.data.copy()))
            tiles += len(batch.tiles)
            for data, copy in kept:
                np.testing.assert_array_equal(data, copy)
        scene.close()
    assert tiles == 16 + 15 + 16 + 15
    assert ring.arrays == held + PREFETCH_DEPTH + 1  # one ring for all four scenes


def _tiles_read_one_by_one(scene, plan, min_valid):
    """``tile -> (zero-padded normalised tile, valid fraction)`` of the tiles at or above ``min_valid``."""
    size, expected = plan.tile_size, {}
    for tile in plan.tiles:
        data, valid = scene.read(Window(tile.col, tile.row, tile.width, tile.height))
        if valid.sum() < min_valid * size * size:
            continue
        padded = np.zeros((S2.num_bands, size, size), np.float32)
        padded[:, : tile.height, : tile.width] = data
        expected[tile] = (padded, valid.sum() / (size * size))
    return expected


@pytest.mark.parametrize(("stride", "hole"), [(None, False), (None, True), (16, False)],
                         ids=["whole windows", "a tile of nodata", "overlapping tiles"])
def test_batches_hold_the_tiles_read_one_by_one_and_whole_windows_are_views_of_the_ring(tmp_path, stride, hole):
    # 100 x 150 px in 32 px tiles: a last row of 4 px slivers (below min_valid before reading) and a last
    # column of 22 px padded tiles
    values = s2_values(100, 150, seed=3)
    if hole:
        values[:, 32:64, 64:88] = 0  # 3/4 of one inner tile is nodata: it alone is skipped
    path = write_raster(tmp_path / "s2.tif", values, nodata=0 if hole else None, descriptions=S2.band_names)
    with open_scene(path) as scene:
        plan = plan_tiles(scene, 32, stride, 16)
        expected = _tiles_read_one_by_one(scene, plan, 0.5)
        got, skipped, views, batches = {}, 0, 0, 0
        for batch in read_tile_batches(plan, 10, 0.5, threading.Event()):
            batches += 1
            skipped += batch.skipped
            views += not batch.data.flags.c_contiguous
            assert len(batch.tiles) <= 10
            for tile, data, fraction in zip(batch.tiles, batch.data, batch.valid_fraction, strict=True):
                got[tile] = (data.copy(), fraction)
    assert list(got) == sorted(got, key=lambda t: (t.row, t.col))  # row-major
    assert list(got) == list(expected)
    assert skipped == len(plan.tiles) - len(expected)
    for tile, (data, fraction) in expected.items():
        np.testing.assert_array_equal(got[tile][0], data)
        assert got[tile][1] == pytest.approx(fraction)
    if stride is None and not hole:
        assert views == batches  # no window packed: the model reads the tiles where they were read
    else:
        assert views < batches


def test_a_scene_whose_every_tile_is_below_min_valid_before_reading_yields_one_empty_batch(tmp_path):
    # a 40 x 20 px chip is one 48 px tile, 35 % inside the raster: below min_valid 0.5 whatever its pixels
    path = write_raster(tmp_path / "chip.tif", s2_values(20, 40), descriptions=S2.band_names)
    with open_scene(path) as scene:
        plan = plan_tiles(scene, None, None, 16)
        batches = list(read_tile_batches(plan, 8, 0.5, threading.Event()))
    assert [(len(b.tiles), b.skipped, b.data.shape) for b in batches] == [(0, 1, (0, S2.num_bands, 48, 48))]


def test_only_the_run_s_first_and_last_windows_are_read_in_halves(tmp_path):
    # 128 x 128 px in 32 px tiles, batches of 8: windows of 2 tile rows x 4 columns
    path = write_raster(tmp_path / "s2.tif", s2_values(128, 128), descriptions=S2.band_names)
    with open_scene(path) as scene:
        plan = plan_tiles(scene, 32, None, 16)
        sizes = {edges: [len(b.tiles) for b in read_tile_batches(plan, 8, 0.0, threading.Event(), run_edges=edges)]
                 for edges in [(True, True), (True, False), (False, True), (False, False)]}
    assert sizes == {(True, True): [4, 4, 4, 4], (True, False): [4, 4, 8], (False, True): [8, 4, 4],
                     (False, False): [8, 8]}
