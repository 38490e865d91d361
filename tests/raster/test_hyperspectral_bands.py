"""Hyperspectral bands that hold no valid value (water-vapour absorption bands, nodata in every pixel of EnMAP
products) are left out of the spectral resampling, said in one line, instead of leaving every pixel invalid."""

import numpy as np
import pytest
from rasterio.windows import Window

from ofa_embed.errors import ModalityError
from ofa_embed.raster.opening import open_scene
from tests.helpers import write_raster

NODATA = -32768.0


def enmap_like(path, empty=()):
    wavelengths = np.linspace(0.42, 2.40, 40)
    values = np.random.default_rng(0).uniform(500, 3000, (40, 48, 48)).astype(np.float32)
    values[list(empty)] = NODATA
    tags = [{"wavelength": f"{w * 1000:.1f}", "wavelength_units": "nanometers"} for w in wavelengths]
    return write_raster(path, values, nodata=NODATA, band_tags=tags), wavelengths


def test_absorption_bands_without_a_valid_pixel_are_left_out_and_the_rest_read(tmp_path):
    path, wavelengths = enmap_like(tmp_path / "ENMAP_L2A_tile.tif", empty=range(18, 22))
    with open_scene(path) as scene:
        data, valid = scene.read(Window(0, 0, 48, 48))
        assert valid.all() and np.isfinite(data).all() and len(scene.source_labels) == 36
        assert len(scene.assumed) == 1 and "4 band(s) at 1.3338-1.4862 µm hold no valid pixel" in scene.assumed[0]
    full, _ = enmap_like(tmp_path / "ENMAP_L2A_full.tif")
    with open_scene(full) as whole:
        assert whole.assumed == [] and len(whole.source_labels) == 40
        reference, _ = whole.read(Window(0, 0, 48, 48))
    # grid wavelengths far from the dropped bands resample from the same neighbours
    np.testing.assert_allclose(data[:5], reference[:5], rtol=1e-6)


def test_a_file_with_no_valid_band_is_refused(tmp_path):
    path, _ = enmap_like(tmp_path / "ENMAP_L2A_void.tif", empty=range(40))
    with pytest.raises(ModalityError, match="no band holds a valid value"):
        open_scene(path)
