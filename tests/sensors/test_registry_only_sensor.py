"""A sensor added by one registry entry, in this test alone: its band files are found, named, grouped, dated,
checked and embedded with no code of its own anywhere in the package."""

from datetime import UTC, datetime

import geopandas as gpd
import numpy as np
import pytest

import ofa_embed
from ofa_embed.errors import ModalityError
from ofa_embed.raster.files import group_band_files
from ofa_embed.raster.opening import open_scene
from ofa_embed.sensors import (
    MODALITIES,
    Band,
    Modality,
    band_name_from_filename,
    register_modality,
    registered_modality,
    unregister_modality,
)
from ofa_embed.store import read_metadata
from tests.helpers import write_raster

# a fictitious 4-band sensor: files XSAT_<date>_T<tile>_XB<n>.tif, digital numbers = reflectance x 10,000
XSAT = Modality(
    "xsat", "XSat multispectral imager (fictitious, tests only)",
    (Band("XB1", 0.49, 10, 0.10, 0.05, ("blue",)), Band("XB2", 0.56, 10, 0.11, 0.05, ("green",)),
     Band("XB3", 0.665, 10, 0.12, 0.06, ("red",)), Band("XB4", 0.842, 10, 0.25, 0.08, ("nir",))),
    1e-4, 0.0, "TOA reflectance", 32, "made up for the test", (r"^XSAT_",),
    band_file_token=r"XB[1-4]",
    not_band_files=(r"_XQA$",),
    date_patterns=(r"^XSAT_(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})_",),
)


@pytest.fixture
def xsat():
    with registered_modality(XSAT) as modality:
        yield modality
    assert "xsat" not in MODALITIES


def xsat_folder(folder, size=64):
    folder.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(4):
        values = 1000 + 400 * i + 300 * np.sin(xx / 7.0 + i) * np.cos(yy / 11.0) + rng.normal(0, 20, (size, size))
        write_raster(folder / f"XSAT_20240101_T01_XB{i + 1}.tif", values[None].astype(np.uint16))
    write_raster(folder / "XSAT_20240101_T01_XQA.tif", np.zeros((1, size, size), np.uint8))  # quality layer
    return folder


def test_a_registered_sensor_is_extracted_end_to_end(tmp_path, xsat):
    folder = xsat_folder(tmp_path / "XSAT_20240101_T01")
    store = tmp_path / "store"
    report = ofa_embed.extract([folder], store, model="ofa_test", tile_size=32)
    assert [s.tiles for s in report.scenes] == [4]  # 64 x 64 px in 32 px tiles
    path = report.scenes[0].path
    meta = read_metadata(path)
    assert meta["modality"]["name"] == "xsat" and meta["modality"]["bands"] == ["XB1", "XB2", "XB3", "XB4"]
    assert meta["model_input"]["bands"] == ["XB1", "XB2", "XB3", "XB4"]
    frame = gpd.read_parquet(path)
    assert len(frame) == 4 and np.isfinite(np.stack(frame["embedding"].to_numpy())).all()
    with open_scene(folder) as scene:  # the quality layer is left out, the date read from the name
        assert [s.path.stem[-3:] for s in scene.sources] == ["XB1", "XB2", "XB3", "XB4"]
        assert scene.acquired == datetime(2024, 1, 1, tzinfo=UTC) and scene.missing_bands == ()


def test_its_band_files_given_together_are_one_scene_and_its_rules_leave_with_it(tmp_path, xsat):
    files = sorted(xsat_folder(tmp_path / "x").glob("*_XB*.tif"))
    assert band_name_from_filename(files[0].stem) == "XB1"
    assert group_band_files(files) == [files]
    with open_scene(files[:3]) as scene:  # a subset: the missing band is filled
        assert scene.modality.name == "xsat" and scene.name == "XSAT_20240101_T01"
        assert scene.missing_bands == ("XB4",)
    unregister_modality("xsat")
    try:
        assert band_name_from_filename(files[0].stem) is None
        with pytest.raises(ModalityError, match="cannot tell which band"):
            open_scene(files)
    finally:
        register_modality(XSAT)


def test_registration_refuses_what_would_make_detection_ambiguous():
    with pytest.raises(ModalityError, match="already registered"):
        register_modality(MODALITIES["rgb"])
    with pytest.raises(ModalityError, match="rgbn is already the default for 4 band"):
        register_modality(Modality("x4", "", XSAT.bands, 1e-4, 0.0, "", 32, "test", default_for_band_count=True))
    with pytest.raises(ModalityError, match="lacks the group"):
        register_modality(Modality("x5", "", XSAT.bands, 1e-4, 0.0, "", 32, "test", date_patterns=(r"(\d{8})",)))
    with pytest.raises(ModalityError, match="built in"):
        unregister_modality("rgb")
    assert "x4" not in MODALITIES and "x5" not in MODALITIES
