"""Inputs as users have them: band descriptions decide band identity, value ranges are checked, band files
are grouped by product, chips are one tile."""

import logging

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

import ofa_embed
from ofa_embed.errors import ModalityError, SceneReadError, TilingError
from ofa_embed.raster.files import group_band_files
from ofa_embed.raster.opening import open_scene
from ofa_embed.raster.reader import plan_tiles
from ofa_embed.sensors import get_modality
from ofa_embed.store import read_metadata
from tests.helpers import s2_values, write_raster


def test_descriptions_decide_band_identity_in_any_order_and_subset(tmp_path):
    rng = np.random.default_rng(0)
    chips = write_raster(tmp_path / "chip.tif", rng.integers(0, 255, (3, 32, 32), dtype=np.uint8),
                         descriptions=["nir", "red", "green"])
    with open_scene(chips) as scene:
        assert scene.modality.name == "rgbn" and scene.missing_bands == ("blue",)
        data, _ = scene.read(Window(0, 0, 32, 32))
        raw = scene.read_raw(Window(0, 0, 32, 32))
    rgbn = get_modality("rgbn")
    gain, bias = rgbn.normalising_affine()
    # file band 0 (nir) lands in the model's nir slot (3), file band 1 (red) in slot 0
    np.testing.assert_allclose(data[3], raw[0] * gain[3] + bias[3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(data[0], raw[1] * gain[0] + bias[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ModalityError, match="not a rgb band"):
        open_scene(chips, modality="rgb")


def test_descriptions_that_name_no_band_or_fit_several_sensors_are_errors(tmp_path):
    data = np.full((3, 16, 16), 900, np.uint16)
    odd = write_raster(tmp_path / "odd.tif", data, descriptions=["red", "swamp", "green"])
    with pytest.raises(ModalityError, match=r"odd\.tif: band description\(s\) 'swamp' name no known band"):
        open_scene(odd)
    ambiguous = write_raster(tmp_path / "export.tif", data, descriptions=["B4", "B3", "B2"])
    # Landsat's names, and Sentinel-2's once unpadded: both sensors are named
    with pytest.raises(ModalityError, match=r"fit landsat_oli, landsat_oli_sr and, read as B04, B03, B02, sentinel2_l1c, "
                                            r"sentinel2_l2a.*--modality sentinel2_l1c --bands B04,B03,B02\); pass --modality"):
        open_scene(ambiguous)
    generic = write_raster(tmp_path / "generic.tif", np.full((4, 16, 16), 90, np.uint8),
                           descriptions=["Band 1", "Band 2", "Band 3", "Band 4"])
    with open_scene(generic) as scene:  # descriptions that say nothing: the band count decides, as before
        assert scene.modality.name == "rgbn"


def test_16_bit_values_are_not_read_as_8_bit_rgb(tmp_path):
    landsat = np.random.default_rng(1).integers(7_000, 20_000, (3, 64, 64)).astype(np.uint16)
    path = write_raster(tmp_path / "l8_rgb.tif", landsat)
    with pytest.raises(ModalityError, match=r"l8_rgb\.tif: values .* \(1st-99th percentile, uint16\) are not 8-bit "
                                            r"rgb.*--modality landsat_oli"):
        open_scene(path)
    with open_scene(path, modality="landsat_oli", bands=["B4", "B3", "B2"]) as scene:
        assert scene.input_values["p50"] > 7_000 and scene.input_values["warning"] is None


def test_reflectance_floats_and_8_bit_renderings_are_not_digital_numbers(tmp_path):
    reflectance = (s2_values(32, 32) / 10_000).astype(np.float32)
    floats = write_raster(tmp_path / "S2A_MSIL1C_20200518T101031_refl.tif", reflectance)
    with pytest.raises(ModalityError, match="look like reflectance, not sentinel2_l1c digital numbers.*--wavelengths"):
        open_scene(floats)
    rendering = write_raster(tmp_path / "S2A_MSIL1C_20200518T101031_png.tif", (reflectance * 255).astype(np.uint8))
    with pytest.raises(ModalityError, match="8-bit values cannot be sentinel2_l1c digital numbers"):
        open_scene(rendering)


def test_linear_sar_is_refused_as_db_and_converted_on_request(tmp_path):
    power = np.random.default_rng(2).gamma(2.0, 0.02, (2, 32, 32)).astype(np.float32)
    path = write_raster(tmp_path / "S1A_IW_GRDH_linear.tif", power, descriptions=["VV", "VH"])
    with pytest.raises(ModalityError, match="none negative: not backscatter in dB.*--sar-scale power"):
        open_scene(path)
    with open_scene(path, sar_scale="power") as scene:
        data, valid = scene.read(Window(0, 0, 32, 32))
    s1 = get_modality("sentinel1_grd")
    expected = (10 * np.log10(power[0]) - s1.bands[0].mean) / s1.bands[0].std
    np.testing.assert_allclose(data[0][valid], expected[valid], rtol=1e-4, atol=1e-4)
    db = write_raster(tmp_path / "S1A_IW_GRDH_db.tif", 10 * np.log10(power), descriptions=["VV", "VH"])
    with pytest.raises(ModalityError, match="already in dB, not linear power; drop --sar-scale"):
        open_scene(db, sar_scale="power")


def test_values_plausible_either_way_warn_and_are_recorded(tmp_path, caplog):
    eight_bit_in_16 = write_raster(tmp_path / "rgb16.tif", np.full((3, 64, 64), 120, np.uint16))
    store = tmp_path / "store"
    with caplog.at_level(logging.WARNING):
        ofa_embed.extract(eight_bit_in_16, store, model="ofa_test", tile_size=64)
    assert "uint16 file with values" in caplog.text
    recorded = read_metadata(store / "rgb16.parquet")["input_values"]
    assert recorded["dtype"] == "uint16" and "read as 8-bit rgb" in recorded["warning"]


def landsat_band_files(folder, product="LC08_L1TP_224077_20200518_20200527_01_T1"):
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(3)
    paths = [write_raster(folder / f"{product}_B{b}.TIF", rng.integers(7_000, 20_000, (1, 64, 64)).astype(np.uint16),
                          res=30) for b in (2, 3, 4)]
    write_raster(folder / f"{product}_BQA.TIF", np.zeros((1, 64, 64), np.uint16), res=30)
    return paths


def test_band_files_given_together_are_one_scene_per_product(tmp_path):
    first = landsat_band_files(tmp_path / "a")
    second = landsat_band_files(tmp_path / "a", product="LC08_L1TP_224077_20200603_20200608_01_T1")
    quality = tmp_path / "a" / "LC08_L1TP_224077_20200518_20200527_01_T1_BQA.TIF"
    scenes = group_band_files([*first, quality, *second])
    assert scenes == [first, second]
    store = tmp_path / "store"
    report = ofa_embed.extract([*first, quality, *second], store, model="ofa_test", tile_size=32)
    assert [s.scene for s in report.scenes] == ["LC08_L1TP_224077_20200518_20200527_01_T1",
                                                 "LC08_L1TP_224077_20200603_20200608_01_T1"]
    meta = read_metadata(report.scenes[0].path)
    assert meta["modality"]["name"] == "landsat_oli" and meta["missing_bands"] == ["B1", "B5", "B6", "B7"]


def test_a_lone_band_file_gets_the_right_hint(tmp_path):
    lone = landsat_band_files(tmp_path / "a")[0]
    with pytest.raises(ModalityError, match=r"one band \(B2\) of a band-per-file product; give all its band files"):
        open_scene(lone)


def test_a_chip_smaller_than_the_default_tile_is_one_padded_tile(tmp_path):
    chip = write_raster(tmp_path / "chip.tif", s2_values(120, 120), descriptions=get_modality("sentinel2_l1c").band_names)
    with open_scene(chip) as scene:
        plan = plan_tiles(scene, None, None, 16)
        bounds = scene.footprint_bounds()
    assert plan.tile_size == 128 and len(plan.tiles) == 1 and plan.tiles[0].padded
    store = tmp_path / "store"
    ofa_embed.extract(chip, store, model="ofa_test")
    frame = gpd.read_parquet(store / "chip.parquet")
    assert len(frame) == 1 and bool(frame.padded[0])
    with rasterio.open(chip) as src:
        assert src.bounds == pytest.approx(bounds)
    with open_scene(write_raster(tmp_path / "tiny.tif", s2_values(8, 8))) as tiny:
        with pytest.raises(TilingError, match="8 x 8 px, smaller than one 16 px patch"):
            plan_tiles(tiny, None, None, 16)


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_archives_are_read_in_place_like_their_folder(s2_band_folder, tmp_path, kind):
    import tarfile
    import zipfile

    archive = tmp_path / f"S2A_MSIL1C_20200518T101031.SAFE.{kind}"
    members = sorted(s2_band_folder.iterdir())
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as handle:
            for path in members:
                handle.write(path, f"S2A.SAFE/GRANULE/L1C_T33TWM/IMG_DATA/{path.name}")
    else:
        with tarfile.open(archive, "w") as handle:
            for path in members:
                handle.add(path, f"S2A.SAFE/GRANULE/L1C_T33TWM/IMG_DATA/{path.name}")
    window = Window(64, 64, 64, 64)
    with open_scene(s2_band_folder) as folder, open_scene(archive) as packed:
        assert packed.name == "S2A_MSIL1C_20200518T101031" and packed.modality.name == folder.modality.name
        np.testing.assert_array_equal(packed.read(window)[0], folder.read(window)[0])
    report = ofa_embed.extract(archive, tmp_path / "store", model="ofa_test", tile_size=64)
    assert report.scenes[0].tiles == 16
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    with pytest.raises(SceneReadError, match=r"broken\.zip: not a readable archive"):
        open_scene(broken)


def test_tutorial_style_band_files_and_db_values_in_an_rgb_file(tmp_path):
    # names like open-geo-tutorial's exports: "2018-10-13, Sentinel-2B L1C, B08.tiff"
    files = [write_raster(tmp_path / f"2018-10-13, Sentinel-2B L1C, {b}.tiff", s2_values(32, 32)[i : i + 1])
             for i, b in ((1, "B02"), (2, "B03"), (3, "B04"), (7, "B08"))]
    assert group_band_files(files) == [files]
    with pytest.raises(ModalityError, match=r"one band \(B08\) of a band-per-file product"):
        open_scene(files[-1])
    with open_scene(files) as scene:
        assert scene.name == "2018-10-13, Sentinel-2B L1C" and scene.modality.name.startswith("sentinel2")
    db = np.random.default_rng(4).normal(-12, 4, (4, 32, 32)).astype(np.float32)
    with pytest.raises(ModalityError, match="negative: not 8-bit rgbn imagery.*--modality sentinel1_grd"):
        open_scene(write_raster(tmp_path / "sar_masked.tif", db))


def test_sentinel1_polarisation_files_given_together_are_one_scene_named_without_the_polarisation(tmp_path):
    db = np.random.default_rng(5).normal(-12, 3, (2, 32, 32)).astype(np.float32)
    files = [write_raster(tmp_path / f"S1A_IW_GRDH_20200518T101031_{p}.tif", db[i : i + 1])
             for i, p in enumerate(("VV", "VH"))]
    assert group_band_files(files) == [files]
    with open_scene(files) as scene:
        assert scene.modality.name == "sentinel1_grd" and scene.source_labels == ["VV", "VH"]
        assert scene.name == "S1A_IW_GRDH_20200518T101031"
