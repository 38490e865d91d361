"""Band orders that differ between distributions: 13 unnamed Sentinel-2 L1C bands in ESA's order (B8A after B08)
or EuroSAT's (B8A last) are read in the order their values fit, said in one line and in the store's footer, and
refused where the values cannot tell."""

import numpy as np
import pytest

import ofa_embed
from ofa_embed.errors import ModalityError
from ofa_embed.raster.opening import open_scene
from ofa_embed.sensors import choose_file_order, get_modality
from ofa_embed.store import read_metadata
from tests.helpers import s2_values, write_raster

L1C = get_modality("sentinel2_l1c")
ESA, EUROSAT = L1C.file_orders
FAST = {"model": "ofa_test", "tile_size": 64}


def in_order(values: np.ndarray, order) -> np.ndarray:
    """``values`` in ESA's band order, stored in ``order``."""
    return np.ascontiguousarray(values[[L1C.band_names.index(b) for b in order.bands]])


def test_eurosat_ordered_chips_are_read_in_their_own_order_and_the_footer_says_so(tmp_path, caplog):
    values = s2_values(128, 128)
    chip = write_raster(tmp_path / "AnnualCrop_1.tif", in_order(values, EUROSAT))
    with open_scene(chip) as scene:
        assert scene.source_labels == list(EUROSAT.bands)
        assert scene.source_labels[-1] == "B8A" and scene.band_positions[-1] == L1C.band_names.index("B8A")
    # read in EuroSAT's order, the file gives the same model input as the same values stored in ESA's order
    esa_file = write_raster(tmp_path / "esa.tif", in_order(values, ESA))
    with open_scene(chip) as a, open_scene(esa_file) as b:
        from rasterio.windows import Window

        window = Window(0, 0, 128, 128)
        np.testing.assert_array_equal(a.read(window)[0], b.read(window)[0])
        assert b.source_labels == list(ESA.bands) and "(esa)" in b.assumed[-1]
        assert "the guess for 13 bands" in b.assumed[0]  # the sensor itself is a guess too, and said
    caplog.clear()
    with caplog.at_level("INFO"):
        report = ofa_embed.extract(chip, tmp_path / "store", **FAST)
    said = [r.getMessage() for r in caplog.records if "without names" in r.getMessage()]
    assert len(said) == 1 and "EuroSAT-MS chips (B8A last) order (eurosat)" in said[0]
    meta = read_metadata(report.scenes[0].path)
    assert meta["source_bands"] == list(EUROSAT.bands) and meta["assumed"][1:] == said
    given = ofa_embed.extract(chip, tmp_path / "given", bands=list(EUROSAT.bands), **FAST)
    assert read_metadata(given.scenes[0].path)["assumed"] == []


def test_each_cue_decides_alone_where_the_other_is_unclear_and_disagreeing_cues_refuse():
    esa = np.array(get_modality("sentinel2_l1c").mean) * 10_000
    # water: the shortwave infrared as dark as cirrus, so only the two near-infrared bands alike tell
    water = esa.copy()
    water[[L1C.band_names.index(b) for b in ("B10", "B11", "B12", "B09")]] = [9, 11, 10, 12]
    water[[L1C.band_names.index(b) for b in ("B08", "B8A")]] = [100, 104]
    assert choose_file_order(L1C, in_order(water, EUROSAT), source="w")[0] is EUROSAT
    assert choose_file_order(L1C, water, source="w")[0] is ESA
    # bare soil: B12 as bright as B08, so only the cirrus band's place tells
    soil = esa.copy()
    soil[L1C.band_names.index("B12")] = soil[L1C.band_names.index("B08")]
    order, said = choose_file_order(L1C, soil, source="s.tif")
    assert order is ESA and "band 11 is far the darkest" in said and "alike" not in said
    # nothing clear: every band at one level
    with pytest.raises(ModalityError, match=r"flat.tif: 13 sentinel2_l1c bands without names.*no cue is clear.*"
                                            r"--bands B01,B02,B03,B04,B05,B06,B07,B08,B09,B10,B11,B12,B8A"):
        choose_file_order(L1C, np.full(13, 1000.0), source="flat.tif")
    # the cirrus band where ESA has it, the near-infrared twins where EuroSAT has them
    mixed = in_order(esa, EUROSAT)
    mixed[L1C.band_names.index("B10")], mixed[9] = mixed[9], mixed[L1C.band_names.index("B10")]
    with pytest.raises(ModalityError, match="the cues disagree"):
        choose_file_order(L1C, mixed, source="mixed.tif")


def test_a_file_whose_values_cannot_tell_is_refused_with_the_orders_to_choose_from(tmp_path):
    flat = write_raster(tmp_path / "flat.tif", np.full((13, 64, 64), 1000, np.uint16))
    with pytest.raises(ModalityError, match="name them in file order"):
        open_scene(flat)
    with open_scene(flat, bands=list(ESA.bands)) as scene:
        assert scene.assumed == []
