"""A sensor the registry does not know, given by its band wavelengths: extracted, recorded and queried."""

import numpy as np
import pytest
from rasterio.windows import Window

import ofa_embed
from ofa_embed import indexes
from ofa_embed.errors import ModalityError
from ofa_embed.model import OFAConfig, create_model
from ofa_embed.model.checkpoint import save_checkpoint
from ofa_embed.raster.opening import open_scene
from ofa_embed.store import read_metadata, tile_id
from tests.helpers import cut_tile, write_raster

WAVES = [0.45, 0.55, 0.65, 0.86, 1.65]


def five_band(path, seed=0, level=1000.0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:128, 0:128]
    data = level * (1 + np.arange(5))[:, None, None] + 200 * np.sin(xx / 9.0 + np.arange(5)[:, None, None]) * np.cos(yy / 13.0)
    return write_raster(path, (data + rng.normal(0, 20, data.shape)).astype(np.uint16))


def test_a_sensor_given_by_wavelengths_is_recorded_and_queried_with_the_stores_normalisation(tmp_path):
    first, second = five_band(tmp_path / "a.tif"), five_band(tmp_path / "b.tif", seed=1, level=1100)
    store = tmp_path / "store"
    ofa_embed.extract([first, second], store, wavelengths=WAVES, model="ofa_test", tile_size=32)
    meta = read_metadata(store / "a.parquet")
    assert meta["modality"]["name"] == "custom" and meta["model_input"]["wavelengths_um"] == WAVES
    assert meta["model_input"]["bands"] == ["450nm", "550nm", "650nm", "860nm", "1650nm"]
    # one normalisation for the store: pooled over both scenes, so their embeddings compare
    assert read_metadata(store / "b.parquet")["model_input"]["mean"] == meta["model_input"]["mean"]
    assert 1000 < meta["model_input"]["mean"][0] < 1100
    indexes.build(store, "flat")
    query = cut_tile(first, Window(64, 32, 32, 32), tmp_path / "q.tif")
    hits = ofa_embed.search(store, like=query, k=3)
    assert hits.id[0] == tile_id("a", 32, 64, 32) and hits.similarity[0] > 0.999


def test_wavelength_tags_in_the_file_stand_in_for_a_registered_sensor(tmp_path):
    tagged = write_raster(tmp_path / "t.tif", np.full((5, 32, 32), 500, np.uint16),
                          band_tags=[{"wavelength": str(w * 1000), "wavelength_units": "nanometers"} for w in WAVES])
    with open_scene(tagged) as scene:
        assert scene.modality.name == "custom" and scene.modality.wavelengths_um.tolist() == pytest.approx(WAVES)


def test_a_per_modality_model_or_a_wrong_count_refuses_given_wavelengths(tmp_path):
    scene = five_band(tmp_path / "a.tif")
    with pytest.raises(ModalityError, match="5 wavelength.*4 band|4 wavelength.*5 band"):
        ofa_embed.extract(scene, tmp_path / "s", wavelengths=WAVES[:4], model="ofa_test")
    v1 = create_model(OFAConfig("v1", embed_dim=32, depth=1, num_heads=2, patch_embed="per_modality"))
    save_checkpoint(v1, tmp_path / "v1.safetensors")
    with pytest.raises(ModalityError, match="needs a wavelength-conditioned model"):
        ofa_embed.extract(scene, tmp_path / "s", wavelengths=WAVES, weights=tmp_path / "v1.safetensors")
    with pytest.raises(ModalityError, match="not a centre wavelength in µm"):
        ofa_embed.extract(scene, tmp_path / "s", wavelengths=[450, 550, 650, 860, 1650], model="ofa_test")
    assert not (tmp_path / "s").exists()
