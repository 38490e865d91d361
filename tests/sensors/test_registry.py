import numpy as np
import pytest

from ofa_embed.errors import ModalityError
from ofa_embed.sensors import (
    MODALITIES,
    band_name_from_filename,
    detect_band_file_modality,
    detect_modality,
    get_modality,
)


@pytest.mark.parametrize("modality", MODALITIES.values(), ids=list(MODALITIES))
def test_registry_entries_are_complete(modality):
    names = modality.band_names
    assert len(set(names)) == len(names)
    assert np.all(modality.std > 0) and np.all(np.isfinite(modality.mean))
    assert np.all(modality.wavelengths_um > 0)
    assert modality.default_tile_size % 16 == 0
    assert modality.stats_source


def test_sentinel2_band_sets():
    assert get_modality("sentinel2_l1c").num_bands == 13
    assert get_modality("sentinel2_l2a").num_bands == 12
    assert "B10" not in get_modality("sentinel2_l2a").band_names
    assert get_modality("sentinel2_9band").band_names == ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12")
    assert get_modality("landsat_oli").band_names == tuple(f"B{i}" for i in range(1, 8))


def test_band_labels_match_names_aliases_and_padding():
    s2 = get_modality("sentinel2_l1c")
    assert s2.band_index("B2") == s2.band_index("b02") == s2.band_index("blue") == 1
    assert s2.band_index("B8A") == 8
    assert s2.band_index("VV") is None


@pytest.mark.parametrize(
    ("stem", "band"),
    [("s2_B02", "B02"), ("T33TWM_20200518T101031_B8A_20m", "B8A"), ("LC08_L1TP_224078_20200518_B4", "B4"),
     ("l8_BQA", None), ("scene", None), ("S1A_IW_GRDH_20170613T165043_VV", "VV"), ("x__b8a_20m", "B8A")],
)
def test_band_token_from_filename(stem, band):
    assert band_name_from_filename(stem) == band


def test_detection_prefers_descriptions_then_name_then_count():
    assert detect_modality(2, descriptions=["VV", "VH"]).name == "sentinel1_grd"
    assert detect_modality(13, name="anything").name == "sentinel2_l1c"
    assert detect_modality(12, name="S2B_MSIL2A_20170924").name == "sentinel2_l2a"
    assert detect_modality(7, name="LC08_L1TP_224078_20200518").name == "landsat_oli"
    assert detect_modality(50, has_wavelengths=True).name == "hyperspectral"


def test_detection_errors_are_actionable():
    with pytest.raises(ModalityError, match="5 band.*--modality"):
        detect_modality(5, name="odd.tif")
    with pytest.raises(ModalityError, match="say landsat_oli.*--bands"):
        detect_modality(3, name="LC08_L1TP_224078_20200518_20200518_01_RT")


def test_resolve_bands_rejects_foreign_and_duplicate_bands():
    s2 = get_modality("sentinel2_l1c")
    assert s2.resolve_bands(["B04", "B03", "B02"], source="--bands") == [3, 2, 1]
    with pytest.raises(ModalityError, match="'VV' is not a sentinel2_l1c band"):
        s2.resolve_bands(["VV"], source="--bands")
    with pytest.raises(ModalityError, match="given twice"):
        s2.resolve_bands(["B02", "blue"], source="--bands")


@pytest.mark.parametrize(
    ("names", "texts", "expected"),
    [(["B02", "B03", "B04", "B08"], [], "sentinel2_l2a"), (["B01", "B10", "B8A"], [], "sentinel2_l1c"),
     (["B2", "B3", "B4"], ["l8_B4"], "landsat_oli"), (["B2", "B3"], ["LC08_L2SP_224078_20200518_20200820_02_T1_SR_B2"],
                                                       "landsat_oli_sr"), (["VV", "VH"], [], "sentinel1_grd")],
)
def test_band_file_naming_tells_the_sensor(names, texts, expected):
    assert detect_band_file_modality(names, texts=texts).name == expected


def test_band_file_naming_of_no_sensor_is_an_error():
    with pytest.raises(ModalityError, match="band files red, B02 fit no known modality; pass --modality"):
        detect_band_file_modality(["red", "B02"], source="scene")
