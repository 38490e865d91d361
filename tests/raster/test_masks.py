"""Validity masks: an alpha band and GDAL masks (internal, ``.msk`` sidecar) mark pixels invalid as nodata does: never
fed as a band, counted in each tile's valid fraction, tiles under ``min_valid`` skipped, left out of the value check."""

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp
from rasterio.windows import Window

import ofa_embed
from ofa_embed.raster.opening import open_scene
from ofa_embed.raster.source import Source
from ofa_embed.sensors import get_modality
from ofa_embed.store import read_metadata
from tests.helpers import ORIGIN, UTM33, s2_values, write_raster

FAST = {"model": "ofa_test", "tile_size": 64}
S2_BANDS = get_modality("sentinel2_l1c").band_names


def _profile(data: np.ndarray, res: float = 10.0) -> dict[str, object]:
    count, height, width = data.shape
    return {"driver": "GTiff", "width": width, "height": height, "count": count, "dtype": data.dtype.name,
            "crs": UTM33, "transform": Affine(res, 0, ORIGIN[0], 0, -res, ORIGIN[1])}


def write_masked(path, data, mask, *, internal=True, descriptions=None, res=10.0):
    """``data`` with a GDAL mask (``mask`` 0 invalid, 255 valid): internal, or a ``.msk`` sidecar."""
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK="YES" if internal else "NO"), \
            rasterio.open(path, "w", **_profile(data, res)) as dst:
        dst.write(data)
        dst.write_mask(mask)
        if descriptions:
            dst.descriptions = tuple(descriptions)
    return path


def write_rgba(path, rgb, alpha):
    """A PlanetScope "visual"-like file: 3 uint8 colour bands and an alpha band (0 transparent, 255 opaque)."""
    data = np.concatenate([rgb, alpha[None]]).astype(np.uint8)
    with rasterio.open(path, "w", **_profile(data), photometric="RGB", alpha="YES") as dst:
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
        dst.write(data)
    return path


def rgb_values(height, width, seed=0):
    return np.random.default_rng(seed).integers(20, 230, (3, height, width)).astype(np.uint8)


def transparent_quarters():
    """Alpha of 128 x 128 px whose tiles of 64 are 1, 1, 0.5 and 0 opaque (row-major)."""
    alpha = np.full((128, 128), 255, np.uint8)
    alpha[:64, 96:] = 0
    alpha[64:, 64:] = 0
    return alpha


def test_an_rgba_file_is_rgb_and_its_alpha_band_masks_the_tiles(tmp_path):
    rgb = rgb_values(128, 128)
    alpha = transparent_quarters()
    rgb[:, alpha == 0] = 7  # what a transparent pixel holds does not matter
    path = write_rgba(tmp_path / "visual.tif", rgb, alpha)
    with open_scene(path) as scene:
        assert scene.modality.name == "rgb" and scene.sources[0].indexes == [1, 2, 3]
        assert scene.mask == "alpha band 4" and not any("alpha" in line for line in scene.assumed)  # a fact, no guess
        data, valid = scene.read(Window(0, 0, 128, 128))
        np.testing.assert_array_equal(valid, alpha > 0)
        assert not data[:, ~valid].any()
        assert (scene.sample_raw() != 7).all()
        assert scene.input_values["p1"] >= 20  # the value check's sample leaves the transparent pixels out
    report = ofa_embed.extract(path, tmp_path / "store", **FAST)
    assert report.scenes[0].tiles == 3 and report.scenes[0].skipped_tiles == 1
    tiles = gpd.read_parquet(report.scenes[0].path).sort_values(["row", "col"])
    assert tiles[["row", "col"]].values.tolist() == [[0, 0], [0, 64], [64, 0]]
    assert tiles.valid_fraction.tolist() == [1.0, 0.5, 1.0]
    meta = read_metadata(report.scenes[0].path)
    assert meta["input_values"]["mask"] == "alpha band 4"
    assert meta["model_input"]["bands"] == ["red", "green", "blue"] and meta["source_bands"] == ["red", "green", "blue"]


def test_a_band_tagged_alpha_by_gdal_default_but_holding_image_values_is_a_band(tmp_path):
    # GDAL writes a 4-band 8-bit GeoTIFF as RGB plus alpha unless told otherwise: an RGB-NIR file's NIR included
    values = np.random.default_rng(1).integers(10, 240, (4, 64, 64)).astype(np.uint8)
    path = write_raster(tmp_path / "rgbn.tif", values)
    with rasterio.open(path) as dataset:
        assert dataset.colorinterp[3] == ColorInterp.alpha
    with open_scene(path) as scene:
        assert scene.modality.name == "rgbn" and scene.mask is None
        assert sum("band 4 is tagged alpha but holds image values" in line for line in scene.assumed) == 1
        assert scene.read(Window(0, 0, 64, 64))[1].all()
    rgba = write_rgba(tmp_path / "visual.tif", rgb_values(64, 64), np.full((64, 64), 255, np.uint8))
    with open_scene(rgba, bands=["red", "green", "blue", "nir"]) as scene:  # --bands naming every band feeds all
        assert scene.modality.name == "rgbn" and scene.mask is None


@pytest.mark.parametrize(("internal", "said"), [(True, "internal mask"), (False, ".msk sidecar")])
def test_a_gdal_mask_marks_pixels_invalid_and_skips_tiles(tmp_path, internal, said):
    raw = s2_values(128, 128)
    mask = transparent_quarters()
    raw[:, mask == 0] = 60_000  # out of any Sentinel-2 range: the value check would refuse them if it saw them
    path = write_masked(tmp_path / "S2A_MSIL1C_20200518T101031_masked.tif", raw, mask, internal=internal,
                        descriptions=S2_BANDS)
    assert (tmp_path / "S2A_MSIL1C_20200518T101031_masked.tif.msk").exists() != internal
    with open_scene(path) as scene:
        assert scene.mask == said and scene.modality.name == "sentinel2_l1c"
        assert not any("mask" in line for line in scene.assumed)  # a fact of the file, not a guess
        _, valid = scene.read(Window(0, 0, 128, 128))
        np.testing.assert_array_equal(valid, mask > 0)
        assert scene.sample_raw().max() < 60_000 and scene.value_sample().max() < 60_000
    report = ofa_embed.extract(path, tmp_path / "store", **FAST)
    tiles = gpd.read_parquet(report.scenes[0].path).sort_values(["row", "col"])
    assert report.scenes[0].skipped_tiles == 1 and tiles.valid_fraction.tolist() == [1.0, 0.5, 1.0]
    assert read_metadata(report.scenes[0].path)["input_values"]["mask"] == said


def test_a_masked_band_file_masks_the_pixels_of_its_grid(tmp_path):
    folder = tmp_path / "T33TWM_20200518T101031"
    folder.mkdir()
    full = s2_values(256, 256)
    for i, band in enumerate(get_modality("sentinel2_l1c").bands):
        step = int(band.gsd_m // 10)
        values = np.ascontiguousarray(full[i : i + 1, ::step, ::step])
        path = folder / f"T33TWM_20200518T101031_{band.name}.tif"
        if band.name == "B11":  # 20 m: its top left 32 x 32 px cover the scene's first tile of 64 x 64 (10 m) px
            mask = np.full(values.shape[1:], 255, np.uint8)
            mask[:32, :32] = 0
            write_masked(path, values, mask, res=band.gsd_m)
        else:
            write_raster(path, values, res=band.gsd_m)
    with open_scene(folder) as scene:
        assert scene.mask == "internal mask of T33TWM_20200518T101031_B11.tif"
        _, valid = scene.read(Window(32, 32, 64, 64))
        expected = np.ones((64, 64), bool)
        expected[:32, :32] = False
        np.testing.assert_array_equal(valid, expected)
    report = ofa_embed.extract(folder, tmp_path / "store", **FAST)
    tiles = gpd.read_parquet(report.scenes[0].path)
    assert report.scenes[0].skipped_tiles == 1 and len(tiles) == 15 and (tiles.valid_fraction == 1.0).all()
    assert [0, 0] not in tiles[["row", "col"]].values.tolist()


def test_a_file_without_a_mask_reads_no_mask_and_an_all_valid_mask_changes_nothing(tmp_path, monkeypatch):
    raw = s2_values(128, 128)
    plain = write_raster(tmp_path / "S2A_MSIL1C_20200518T101031_plain.tif", raw, descriptions=S2_BANDS)
    opaque = write_masked(tmp_path / "S2A_MSIL1C_20200518T101031_opaque.tif", raw, np.full((128, 128), 255, np.uint8),
                          descriptions=S2_BANDS)
    with_mask = ofa_embed.extract(opaque, tmp_path / "masked", **FAST)

    def no_mask_read(*args, **kwargs):
        raise AssertionError("a mask read for a file without one")

    monkeypatch.setattr(Source, "native_mask", no_mask_read)
    monkeypatch.setattr(rasterio.io.DatasetReader, "read_masks", no_mask_read)
    with open_scene(plain) as scene:
        assert scene.mask is None and scene.sources[0].mask is None
        data, valid = scene.read(Window(0, 0, 128, 128))
        assert valid.all()
    without = ofa_embed.extract(plain, tmp_path / "plain", **FAST)
    assert "mask" not in read_metadata(without.scenes[0].path)["input_values"]
    a = gpd.read_parquet(with_mask.scenes[0].path).sort_values(["row", "col"])
    b = gpd.read_parquet(without.scenes[0].path).sort_values(["row", "col"])
    np.testing.assert_array_equal(np.stack(a.embedding), np.stack(b.embedding))
    assert a.valid_fraction.tolist() == b.valid_fraction.tolist() == [1.0] * 4
