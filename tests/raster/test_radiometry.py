"""Radiometry from the file's own metadata before the registry's: GDAL scale/offset, Sentinel-2 product metadata and
processing baselines; negative reflectance refused; HLS and MODIS products read as themselves."""

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from ofa_embed.errors import ModalityError
from ofa_embed.raster.opening import open_scene
from ofa_embed.sensors import get_modality
from tests.helpers import write_raster

WINDOW = Window(0, 0, 32, 32)


def set_scaling(path, scale, offset):
    with rasterio.open(path, "r+") as dst:
        dst.scales = (scale,) * dst.count
        dst.offsets = (offset,) * dst.count
    return path


def reflectance_of(scene):
    """Physical values the scene read, from its normalised ones and the modality's mean/std."""
    data, _ = scene.read(WINDOW)
    m = scene.modality
    return data * m.std[:, None, None] + m.mean[:, None, None]


def s2_l2a_dn(reflectance=0.2, offset=1000):
    return np.full((12, 32, 32), reflectance * 10_000 + offset, np.uint16)


def test_gdal_offset_of_a_baseline_4_stack_is_honoured_per_band_and_recorded(tmp_path):
    path = set_scaling(write_raster(tmp_path / "S2B_MSIL2A_20230101T101031_stack.tif", s2_l2a_dn()), 1e-4, -0.1)
    with open_scene(path) as scene:
        assert scene.modality.name == "sentinel2_l2a"
        np.testing.assert_allclose(reflectance_of(scene), 0.2, atol=1e-4)  # not 0.3: the offset is applied
        record = scene.input_values["radiometry"]
        assert record["offset"] == [pytest.approx(-0.1)] * 12 and set(record["source"]) == {"GDAL scale/offset"}


def test_safe_metadata_offsets_and_product_name_baselines(tmp_path):
    safe = tmp_path / "S2B_MSIL2A_20230101T101031_N0509_R022_T33UUP_20230101T120000.SAFE"
    img = safe / "GRANULE" / "L2A_T33UUP_A030000_20230101T101031" / "IMG_DATA" / "R10m"
    img.mkdir(parents=True)
    for band in ("B02", "B03", "B04", "B08"):
        write_raster(img / f"T33UUP_20230101T101031_{band}_10m.tif", s2_l2a_dn()[:1])
    offsets = "".join(f'<BOA_ADD_OFFSET band_id="{i}">-1000</BOA_ADD_OFFSET>' for i in range(13))
    (safe / "MTD_MSIL2A.xml").write_text(
        '<?xml version="1.0"?><n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/'
        'User_Product_Level-2A.xsd"><General_Info><Product_Image_Characteristics>'
        f"<QUANTIFICATION_VALUES_LIST><BOA_QUANTIFICATION_VALUE>10000</BOA_QUANTIFICATION_VALUE>"
        f"</QUANTIFICATION_VALUES_LIST><BOA_ADD_OFFSET_VALUES_LIST>{offsets}</BOA_ADD_OFFSET_VALUES_LIST>"
        "</Product_Image_Characteristics></General_Info></n1:Level-2A_User_Product>")
    with open_scene(safe) as scene:
        np.testing.assert_allclose(reflectance_of(scene)[[1, 2, 3, 7]], 0.2, atol=1e-4)
        assert set(scene.radiometry.sources) == {"MTD_MSIL2A.xml"}
    # without the metadata the product name's baseline N0509 (>= 04.00) says the same
    (safe / "MTD_MSIL2A.xml").unlink()
    with open_scene(safe) as scene:
        np.testing.assert_allclose(reflectance_of(scene)[[1, 2, 3, 7]], 0.2, atol=1e-4)
        assert "04.00" not in scene.radiometry.sources[0] and "05.09" in scene.radiometry.sources[0]
    # a baseline before 04.00 has no offset
    old = safe.rename(tmp_path / "S2B_MSIL2A_20210101T101031_N0214_R022_T33UUP_20210101T120000.SAFE")
    for f in old.rglob("*.tif"):
        f.rename(f.with_name(f.name.replace("2023", "2021")))
        write_raster(f.with_name(f.name.replace("2023", "2021")), s2_l2a_dn(offset=0)[:1])
    with open_scene(old) as scene:
        np.testing.assert_allclose(reflectance_of(scene)[[1, 2, 3, 7]], 0.2, atol=1e-4)


def test_a_post_2022_sentinel2_file_with_nothing_to_tell_its_offset_by_is_said(tmp_path):
    path = write_raster(tmp_path / "T33UUP_20230101T101031_stack.tif", s2_l2a_dn(),
                        tags={"SPACECRAFT_NAME": "Sentinel-2B", "PRODUCT_TYPE": "S2MSI2A"})
    with open_scene(path) as scene:
        assert any("read without it" in line and "gdal_edit" in line for line in scene.assumed)


def test_landsat_sr_scaling_selects_the_level_2_product_and_contradicts_level_1(tmp_path):
    dn = np.full((7, 32, 32), int((0.15 + 0.2) / 2.75e-5), np.uint16)
    path = set_scaling(write_raster(tmp_path / "stack7.tif", dn), 2.75e-5, -0.2)
    with open_scene(path) as scene:
        assert scene.modality.name == "landsat_oli_sr"
        np.testing.assert_allclose(reflectance_of(scene), 0.15, atol=1e-4)
        assert "its GDAL scale/offset (2.75e-05, -0.2) are that product's" in scene.assumed[0]
    with pytest.raises(ModalityError, match=r"stack7\.tif: the file's GDAL scale/offset \(2\.75e-05, -0\.2\) are "
                                            r"landsat_oli_sr's .*pass --modality landsat_oli_sr"):
        open_scene(path, modality="landsat_oli")


def test_modis_values_are_not_landsat_and_modis_is_read_by_name_or_scaling(tmp_path):
    rng = np.random.default_rng(0)
    mod09 = rng.integers(200, 3_000, (7, 32, 32)).astype(np.int16)
    mod09[:, :2] = -28672  # fill, not declared
    unnamed = write_raster(tmp_path / "stack7.tif", mod09)
    with pytest.raises(ModalityError, match=r"stack7\.tif: .* as landsat_oli .*well below 0.*they fit modis_sr: "
                                            r"pass --modality modis_sr"):
        open_scene(unnamed)
    named = write_raster(tmp_path / "MOD09A1.A2021033.h18v04.061.2021042.tif", mod09)
    with open_scene(named) as scene:
        assert scene.modality.name == "modis_sr" and scene.nodata == -28672
        assert scene.acquired.strftime("%Y-%m-%d") == "2021-02-02"
        assert any("fill value -28672" in line for line in scene.assumed)
    scaled = set_scaling(write_raster(tmp_path / "export.tif", mod09, nodata=-28672), 1e-4, 0.0)
    with open_scene(scaled) as scene:
        assert scene.modality.name == "modis_sr"


def test_hls_band_files_are_hls_not_sentinel2(tmp_path):
    stem = "HLS.L30.T18SUJ.2021001T153020.v2.0"
    files = []
    for band in ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B09", "B10", "B11", "Fmask"):
        files.append(write_raster(tmp_path / f"{stem}.{band}.tif", np.full((1, 32, 32), 1500, np.int16), res=30.0))
    with open_scene(tmp_path) as scene:
        assert scene.modality.name == "hls_l30"
        assert scene.source_labels == ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B09"]  # no thermal, no Fmask
        nir = scene.modality.bands[scene.modality.band_index("B05")]
        assert nir.wavelength_um == pytest.approx(0.8646)  # Landsat's NIR, not Sentinel-2's red edge
        assert scene.nodata == -9999 and scene.acquired.strftime("%Y-%m-%d %H:%M") == "2021-01-01 15:30"
        np.testing.assert_allclose(reflectance_of(scene), 0.15, atol=1e-4)
    s30 = tmp_path / "s30"
    s30.mkdir()
    for band in ("B02", "B03", "B04", "B8A"):
        write_raster(s30 / f"HLS.S30.T18SUJ.2021001T153020.v2.0.{band}.tif", np.full((1, 32, 32), 900, np.int16),
                     res=30.0, nodata=-9999)
    with open_scene(s30) as scene:
        assert scene.modality.name == "hls_s30" and "B8A" in scene.source_labels


def test_hls_extracts_with_the_default_model(tmp_path):
    import ofa_embed
    from ofa_embed.store import read_metadata

    for band in ("B02", "B03", "B04", "B05"):
        write_raster(tmp_path / f"HLS.L30.T18SUJ.2021001T153020.v2.0.{band}.tif",
                     np.full((1, 64, 64), 1200, np.int16), res=30.0, nodata=-9999)
    report = ofa_embed.extract(tmp_path, tmp_path / "store", tile_size=32)
    meta = read_metadata(report.scenes[0].path)
    assert meta["modality"]["name"] == "hls_l30"
    assert meta["input_values"]["radiometry"]["source"] == ["registry"] * 4
    assert get_modality("hls_l30").band_names[:4] == ("B01", "B02", "B03", "B04")


def test_the_footers_model_input_records_the_files_own_scaling(tmp_path):
    import ofa_embed
    from ofa_embed.store import read_metadata

    values = (np.random.default_rng(0).uniform(0.05, 0.4, (12, 64, 64)) * 10_000 + 1000).astype(np.uint16)
    path = set_scaling(write_raster(tmp_path / "S2B_MSIL2A_20230101T101031_stack.tif", values), 1e-4, -0.1)
    report = ofa_embed.extract(path, tmp_path / "store", model="ofa_test", tile_size=32)
    fed = read_metadata(report.scenes[0].path)["model_input"]
    assert fed["offset"] == [pytest.approx(-0.1)] * len(fed["bands"]) and fed["scale"][0] == pytest.approx(1e-4)
