"""Every guess of band identity from the band count is said (Scene.assumed, the log, the footer); where the values
contradict the guess, the file is refused; a scene smaller than a tile is told so."""

import logging

import numpy as np
import pytest

import ofa_embed
from ofa_embed.errors import ModalityError, TilingError
from ofa_embed.raster.opening import open_scene
from ofa_embed.store import read_metadata
from tests.helpers import write_raster


def test_an_8_bit_4_band_file_read_as_rgbn_says_so_and_names_the_blue_first_order(tmp_path, caplog):
    values = np.random.default_rng(0).integers(10, 240, (4, 64, 64)).astype(np.uint8)
    path = write_raster(tmp_path / "pleiades.tif", values, nodata=0)
    with caplog.at_level(logging.INFO), open_scene(path) as scene:
        assert scene.modality.name == "rgbn"
        said = [line for line in scene.assumed if "the guess for 4 bands" in line]
        assert len(said) == 1 and "read as rgbn (red, green, blue, nir)" in said[0]
        assert "pass --bands blue,green,red,nir if your file is blue, green, red, nir" in said[0]
    assert any(said[0] == r.getMessage() for r in caplog.records)
    report = ofa_embed.extract(path, tmp_path / "store", model="ofa_test", tile_size=64)
    assert said[0] in read_metadata(report.scenes[0].path)["assumed"]
    with open_scene(path, bands=["blue", "green", "red", "nir"]) as scene:  # named: nothing guessed
        assert not any("the guess" in line for line in scene.assumed)


def test_two_unnamed_sar_bands_say_the_vv_vh_guess(tmp_path):
    db = np.random.default_rng(1).normal(-14, 3, (2, 32, 32)).astype(np.float32)
    with open_scene(write_raster(tmp_path / "s1.tif", db)) as scene:
        assert scene.modality.name == "sentinel1_grd"
        assert any("read as sentinel1_grd (VV, VH)" in line and "--bands VH,VV" in line for line in scene.assumed)


def test_a_normalised_index_is_not_sar_backscatter(tmp_path):
    ndvi = np.random.default_rng(2).uniform(-0.3, 0.9, (2, 32, 32)).astype(np.float32)
    path = write_raster(tmp_path / "ndvi_ndwi.tif", ndvi)
    with pytest.raises(ModalityError, match=r"ndvi_ndwi\.tif: values .* all within -1 to 1: a normalised index "
                                            r"\(NDVI, NDWI, \.\.\.\) or reflectance, not SAR backscatter in dB"):
        open_scene(path)


def test_a_landsat_guess_for_7_bands_is_said(tmp_path):
    dn = np.random.default_rng(3).integers(8_000, 20_000, (7, 32, 32)).astype(np.uint16)
    with open_scene(write_raster(tmp_path / "seven.tif", dn)) as scene:
        assert scene.modality.name == "landsat_oli"
        assert any("the guess for 7 bands" in line and "landsat_oli_sr" in line and "modis_sr" in line
                   for line in scene.assumed)


def test_a_scene_smaller_than_a_tile_is_told_so_not_all_nodata(tmp_path):
    values = np.random.default_rng(4).integers(10, 240, (3, 20, 40)).astype(np.uint8)
    path = write_raster(tmp_path / "small.tif", values)
    with pytest.raises(TilingError, match=r"small\.tif: the scene \(40 x 20 px\) fills \d+% of one \d+ px tile, the "
                                          r"rest is padding.*pass --tile-size 16"):
        ofa_embed.extract(path, tmp_path / "store", model="ofa_test")
