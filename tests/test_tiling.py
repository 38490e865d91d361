import numpy as np
import pytest
from affine import Affine

from ofa_embed.errors import TilingError
from ofa_embed.tiling import footprints, tile_windows, validate_tiling


@pytest.mark.parametrize(("width", "height", "tile", "stride"), [(300, 260, 128, 128), (256, 256, 64, 32), (128, 128, 128, 128)])
def test_tiles_cover_every_pixel_once_per_stride(width, height, tile, stride):
    tiles = tile_windows(width, height, tile, stride)
    covered = np.zeros((height, width), int)
    for t in tiles:
        assert t.height > 0 and t.width > 0
        covered[t.row : t.row + t.height, t.col : t.col + t.width] += 1
    assert covered.min() >= 1
    expected = (np.ceil(max(width - tile, 0) / stride) + 1) * (np.ceil(max(height - tile, 0) / stride) + 1)
    assert len(tiles) == expected


def test_edge_tiles_are_padded_not_dropped():
    tiles = tile_windows(300, 260, 128, 128)
    edge = [t for t in tiles if t.padded]
    assert len(tiles) == 9 and len(edge) == 5
    assert tiles[-1].row == 256 and tiles[-1].height == 4 and tiles[-1].width == 44


def test_invalid_tiling_is_refused():
    with pytest.raises(TilingError, match="multiple of the model patch size 16"):
        validate_tiling(100, 100, 16, width=500, height=500, name="x.tif")
    with pytest.raises(TilingError, match="stride"):
        validate_tiling(128, 200, 16, width=500, height=500, name="x.tif")
    with pytest.raises(TilingError, match="x.tif: scene is 100 x 500 px, smaller than one 128 px tile"):
        validate_tiling(128, 128, 16, width=100, height=500, name="x.tif")


def test_footprints_follow_the_transform():
    tiles = tile_windows(256, 256, 128, 128)
    native, lonlat = footprints(tiles, Affine(10, 0, 500_000, 0, -10, 5_000_000), "EPSG:32633")
    assert native[0, 0].tolist() == [500_000, 5_000_000]
    assert native[-1, 2].tolist() == [502_560, 4_997_440]
    # UTM 33N false easting 500 km is the central meridian 15 E; 5,000 km north (scale 0.9996) is 45.15 N
    assert lonlat[0, 0, 0] == pytest.approx(15.0, abs=1e-9)
    assert lonlat[0, 0, 1] == pytest.approx(45.1535, abs=1e-3)
