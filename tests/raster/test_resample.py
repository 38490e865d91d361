"""Coarse band files upsampled onto the finest grid (ofa_embed.raster.resample) against GDAL's resampled reads."""

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from ofa_embed.raster.opening import open_scene
from ofa_embed.raster.resample import aligned_grid
from tests.helpers import ORIGIN, UTM33

FINE = Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1])
NODATA = -9999.0


def write_band(path, values, res, col_offset=0, row_offset=0, nodata=None):
    """A one-band float32 GeoTIFF whose origin is ``col_offset`` / ``row_offset`` 10 m pixels right of /
    below the fixture origin."""
    transform = Affine(res, 0, ORIGIN[0] + 10 * col_offset, 0, -res, ORIGIN[1] - 10 * row_offset)
    with rasterio.open(
        path, "w", driver="GTiff", width=values.shape[1], height=values.shape[0], count=1, dtype="float32",
        crs=UTM33, transform=transform, nodata=nodata,
    ) as dst:
        dst.write(values.astype(np.float32), 1)
    return path


def band_files(tmp_path, coarse, res, col_offset, row_offset, nodata=None, size=(96, 120)):
    """Sentinel-2 L2A band files: B02-B04 on the 10 m grid, B8A from ``coarse`` on a ``res`` m grid."""
    rng = np.random.default_rng(1)
    paths = [write_band(tmp_path / f"T_{b}.tif", rng.random(size) * 1000, 10) for b in ("B02", "B03", "B04")]
    return paths + [write_band(tmp_path / "T_B8A.tif", coarse, res, col_offset, row_offset, nodata)]


def both_reads(paths, window):
    """``(upsampled, gdal)``: the B8A window read on the fast path and through GDAL's resampling."""
    with open_scene(paths, modality="sentinel2_l2a") as scene:
        source = next(s for s in scene.sources if s.aligned is not None)
        assert source.aligned.source_window(
            int(window.row_off), int(window.col_off), int(window.height), int(window.width)
        ) is not None, "the window is served by upsampling, not by GDAL"
        fast = np.empty((1, int(window.height), int(window.width)), np.float32)
        source.read(window, fast)
        source.aligned = None
        gdal = np.empty_like(fast)
        source.read(window, gdal)
    return fast[0], gdal[0]


def test_aligned_grid_needs_an_integer_factor_and_corner_alignment():
    grid = aligned_grid(Affine(20, 0, ORIGIN[0] - 10, 0, -20, ORIGIN[1] + 20), 50, 40, FINE)
    assert (grid.factor, grid.col_offset, grid.row_offset, grid.width, grid.height) == (2, -1, -2, 50, 40)
    assert aligned_grid(Affine(60, 0, ORIGIN[0], 0, -60, ORIGIN[1]), 9, 9, FINE).factor == 6
    assert aligned_grid(FINE, 9, 9, FINE) is None  # same grid: read directly
    assert aligned_grid(Affine(25, 0, ORIGIN[0], 0, -25, ORIGIN[1]), 9, 9, FINE) is None  # 2.5x
    assert aligned_grid(Affine(20, 0, ORIGIN[0] + 5, 0, -20, ORIGIN[1]), 9, 9, FINE) is None  # half-pixel shift
    assert aligned_grid(Affine(20, 0, ORIGIN[0], 0, -30, ORIGIN[1]), 9, 9, FINE) is None  # non-square
    assert aligned_grid(Affine(20, 1, ORIGIN[0], 0, -20, ORIGIN[1]), 9, 9, FINE) is None  # rotated


# an odd factor has a phase that sits on a source pixel centre (no neighbour weight)
@pytest.mark.parametrize(
    ("res", "col_offset", "row_offset"), [(20, 0, 0), (20, -1, -2), (30, 0, -1), (60, -1, -2)]
)
def test_upsampled_band_equals_gdal_bilinear(tmp_path, res, col_offset, row_offset):
    factor = res // 10
    coarse = np.random.default_rng(2).random((96 // factor + 2, 120 // factor + 2)) * 3000 + 100
    paths = band_files(tmp_path, coarse, res, col_offset, row_offset)
    for window in (Window(0, 0, 120, 96), Window(7, 13, 50, 29), Window(64, 32, 56, 64)):
        fast, gdal = both_reads(paths, window)
        np.testing.assert_allclose(fast, gdal, rtol=1e-5)


def test_nodata_takes_no_part_and_stays_nodata(tmp_path):
    coarse = np.random.default_rng(3).random((50, 62)) * 1000 + 500
    coarse[10:14, 20:25] = NODATA  # a hole: its inner pixels have no valid neighbour
    coarse[30, 7] = NODATA  # a single pixel: every output pixel near it has valid neighbours
    paths = band_files(tmp_path, coarse, 20, 0, 0, nodata=NODATA)
    fast, gdal = both_reads(paths, Window(4, 6, 100, 80))
    assert (fast == NODATA).sum() > 0
    assert np.array_equal(fast == NODATA, gdal == NODATA)
    # pixels whose bilinear support holds no nodata are untouched; nearer ones are renormalised over
    # their valid neighbours (GDAL does it one axis at a time, so values there differ a little)
    bad = np.pad(coarse == NODATA, 1)
    near_coarse = np.zeros(coarse.shape, bool)  # a coarse pixel with a nodata pixel among its 3 x 3
    for dy in range(3):
        for dx in range(3):
            near_coarse |= bad[dy : dy + coarse.shape[0], dx : dx + coarse.shape[1]]
    near = np.kron(near_coarse, np.ones((2, 2), bool))[6:86, 4:104]
    np.testing.assert_allclose(fast[~near], gdal[~near], rtol=1e-5)
    valid = fast != NODATA
    assert fast[valid].min() >= coarse[coarse != NODATA].min() - 1e-3  # convex combinations of valid values
    assert fast[valid].max() <= coarse.max() + 1e-3


def test_scene_edge_past_the_coarse_band_holds_its_edge_value(tmp_path):
    # like Sentinel-2 crops: the 10 m grid reaches 10 m (a sixth of a 60 m pixel) past the 60 m band
    coarse = np.random.default_rng(4).random((16, 20)) * 1000 + 500
    paths = band_files(tmp_path, coarse, 60, 0, 0, size=(97, 121))
    fast, _ = both_reads(paths, Window(0, 0, 121, 97))
    assert np.isfinite(fast).all()
    np.testing.assert_allclose(fast[-1, -4:], coarse[-1, -1], rtol=1e-5)
    np.testing.assert_allclose(fast[:, -1], fast[:, -2], rtol=1e-5)
