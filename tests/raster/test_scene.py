import threading
import time

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from ofa_embed.errors import ModalityError, NoGeoreferenceError, SceneNotFoundError, SceneReadError
from ofa_embed.raster.opening import open_scene
from ofa_embed.sensors import get_modality
from tests.helpers import s2_values, write_raster

S2 = get_modality("sentinel2_l1c")


def expected_normalised(raw: np.ndarray, modality=S2) -> np.ndarray:
    physical = raw.astype(np.float64) * modality.scale + modality.offset
    return (physical - modality.mean[:, None, None]) / modality.std[:, None, None]


def test_multiband_read_is_scaled_and_normalised(s2_tif):
    with open_scene(s2_tif) as scene:
        assert scene.modality.name == "sentinel2_l1c"
        assert (scene.width, scene.height) == (300, 260)
        assert scene.acquired.isoformat() == "2020-05-18T10:10:31+00:00"
        data, valid = scene.read(Window(10, 20, 64, 32))
    with rasterio.open(s2_tif) as src:
        raw = src.read(window=Window(10, 20, 64, 32))
    assert data.shape == (13, 32, 64) and valid.all()
    np.testing.assert_allclose(data, expected_normalised(raw), rtol=1e-5, atol=1e-5)


def test_band_descriptions_in_any_order_are_put_in_canonical_order(tmp_path):
    raw = s2_values(64, 64)
    shuffled = list(range(13))[::-1]
    path = write_raster(tmp_path / "shuffled.tif", raw[shuffled], descriptions=[S2.band_names[i] for i in shuffled])
    with open_scene(path) as scene:
        data, _ = scene.read(Window(0, 0, 64, 64))
    np.testing.assert_allclose(data, expected_normalised(raw), rtol=1e-5, atol=1e-5)


def test_band_subset_fills_missing_bands_with_the_mean(tmp_path):
    raw = s2_values(64, 64)[[3, 2, 1]]  # B04, B03, B02 = an RGB export of Sentinel-2
    path = write_raster(tmp_path / "rgb_of_s2.tif", raw)
    with open_scene(path, modality="sentinel2_l1c", bands=["B04", "B03", "B02"]) as scene:
        assert len(scene.missing_bands) == 10 and "B08" in scene.missing_bands
        data, _ = scene.read(Window(0, 0, 64, 64))
    full = np.zeros((13, 64, 64), np.uint16)
    full[[3, 2, 1]] = raw
    expected = expected_normalised(full)
    np.testing.assert_allclose(data[[3, 2, 1]], expected[[3, 2, 1]], rtol=1e-5, atol=1e-5)
    assert np.all(data[[0, 4, 5, 6, 7, 8, 9, 10, 11, 12]] == 0)


def test_band_folder_is_stacked_onto_the_finest_grid(s2_band_folder):
    with open_scene(s2_band_folder) as scene:
        assert scene.name == "T33TWM_20200518T101031"
        assert scene.modality.name == "sentinel2_l1c"
        assert (scene.width, scene.height) == (256, 256) and scene.transform.a == 10
        assert sorted(scene.source_labels) == sorted(S2.band_names)  # TCI is not a band
        data, valid = scene.read(Window(0, 0, 256, 256))
    assert valid.all()
    full = s2_values(258, 258)[:, :256, :256]
    b02, b05 = S2.band_index("B02"), S2.band_index("B05")
    np.testing.assert_allclose(data[b02], expected_normalised(full)[b02], rtol=1e-5, atol=1e-5)
    # the 20 m band is resampled: same level as its 10 m source, smoothly interpolated
    assert abs(data[b05].mean() - expected_normalised(full)[b05].mean()) < 0.2


def test_nodata_pixels_are_masked_and_zeroed(tmp_path):
    raw = s2_values(64, 64)
    raw[:, :10, :] = 0
    path = write_raster(tmp_path / "holes.tif", raw, nodata=0)
    with open_scene(path) as scene:
        data, valid = scene.read(Window(0, 0, 64, 64))
    assert not valid[:10].any() and valid[10:].all()
    assert np.all(data[:, :10] == 0)


def test_nodata_override(tmp_path):
    raw = s2_values(64, 64)
    raw[:, :, :8] = 65000  # above any value s2_values makes
    with open_scene(write_raster(tmp_path / "flagged.tif", raw), nodata=65000) as scene:
        _, valid = scene.read(Window(0, 0, 64, 64))
    assert valid[:, 8:].all() and not valid[:, :8].any()


def test_hyperspectral_bands_are_resampled_by_wavelength(tmp_path):
    wavelengths = np.linspace(0.5, 2.0, 40)
    reflectance = (wavelengths * 1000).astype(np.uint16)[:, None, None] * np.ones((40, 32, 32), np.uint16)
    band_tags = [{"wavelength": f"{w * 1000:.1f}", "wavelength_units": "Nanometers"} for w in wavelengths]
    path = write_raster(tmp_path / "enmap_like.tif", reflectance, band_tags=band_tags)
    with open_scene(path) as scene:
        assert scene.modality.name == "hyperspectral"
        grid = scene.modality.wavelengths_um
        outside = [b.name for b, w in zip(scene.modality.bands, grid, strict=True) if w < 0.5 or w > 2.0]
        assert set(scene.missing_bands) == set(outside)
        data, _ = scene.read(Window(0, 0, 32, 32))
    inside = (grid >= 0.5) & (grid <= 2.0)
    physical = data[inside, 0, 0] * scene.modality.std[inside] + scene.modality.mean[inside]
    np.testing.assert_allclose(physical, grid[inside] * 1000 * 1e-4, atol=2e-4)


def test_missing_path(tmp_path):
    with pytest.raises(SceneNotFoundError, match="nope.tif: no such file"):
        open_scene(tmp_path / "nope.tif")


def test_not_a_raster(tmp_path):
    path = tmp_path / "notes.tif"
    path.write_text("hello")
    with pytest.raises(SceneReadError, match="notes.tif: not a readable raster"):
        open_scene(path)


def test_no_georeferencing(tmp_path):
    path = write_raster(tmp_path / "plain.tif", s2_values(64, 64), crs=None)
    with pytest.raises(NoGeoreferenceError, match="plain.tif: no georeferencing"):
        open_scene(path)


def test_band_count_mismatch_with_modality(tmp_path):
    path = write_raster(tmp_path / "five.tif", s2_values(32, 32)[:5])
    with pytest.raises(ModalityError, match="five.tif: 5 band"):
        open_scene(path)
    with pytest.raises(ModalityError, match="5 band.*sentinel2_l1c has 13.*--bands"):
        open_scene(path, modality="sentinel2_l1c")


def test_safe_folder_takes_each_band_once_at_its_finest_resolution(tmp_path):
    granule = tmp_path / "S2B_MSIL2A_20210319T101031_N0212_R022_T33TWM.SAFE" / "GRANULE" / "L2A_T33TWM" / "IMG_DATA"
    full = s2_values(128, 128)
    l2a = get_modality("sentinel2_l2a")
    for i, band in enumerate(l2a.bands):
        for res in (10, 20, 60):
            if res < band.gsd_m:
                continue
            step = res // 10
            folder = granule / f"R{res}m"
            folder.mkdir(parents=True, exist_ok=True)
            values = np.ascontiguousarray(full[i : i + 1, ::step, ::step])
            write_raster(folder / f"T33TWM_20210319T101031_{band.name}_{res}m.jp2".replace(".jp2", ".tif"), values, res=res)
    write_raster(granule / "R20m" / "T33TWM_20210319T101031_SCL_20m.tif", np.zeros((1, 64, 64), np.uint8), res=20)
    with open_scene(granule.parents[2]) as scene:
        assert scene.modality.name == "sentinel2_l2a"
        assert sorted(scene.source_labels) == sorted(l2a.band_names)
        assert scene.transform.a == 10 and scene.width == 128
        assert scene.acquired.year == 2021 and scene.name == "S2B_MSIL2A_20210319T101031_N0212_R022_T33TWM"


def test_sensor_tags_identify_the_modality(tmp_path):
    path = write_raster(tmp_path / "export.tif", s2_values(32, 32)[:12], tags={"PRODUCT_TYPE": "S2MSI2A"})
    with open_scene(path) as scene:
        assert scene.modality.name == "sentinel2_l2a"
    landsat = write_raster(tmp_path / "rgb.tif", s2_values(32, 32)[:3], tags={"SPACECRAFT_ID": "LANDSAT_8"})
    with pytest.raises(ModalityError, match="sensor tags say landsat_oli but it has 3"):
        open_scene(landsat)


def test_gdal_block_cache_is_held_for_a_run_only_and_import_changes_nothing(tmp_path, s2_tif, monkeypatch):
    import os
    import subprocess
    import sys

    from rasterio.env import get_gdal_config

    import ofa_embed
    from ofa_embed.raster.source import DEFAULT_GDAL_CACHE_MB

    env = {k: v for k, v in os.environ.items() if k != "GDAL_CACHEMAX"}
    probe = "import os, ofa_embed.raster.scene, ofa_embed.embedding.extract; print(os.environ.get('GDAL_CACHEMAX'))"
    assert subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True).stdout.strip() == "None"
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    before = get_gdal_config("GDAL_CACHEMAX")
    during: list[int] = []
    ofa_embed.extract(s2_tif, tmp_path / "store", model="ofa_test", tile_size=64,
                      on_progress=lambda *_: during.append(get_gdal_config("GDAL_CACHEMAX")))
    assert set(during) == {DEFAULT_GDAL_CACHE_MB * 2**20}
    assert get_gdal_config("GDAL_CACHEMAX") == before
    monkeypatch.setenv("GDAL_CACHEMAX", "32")  # the user's choice wins
    chosen: list[int] = []
    ofa_embed.extract(s2_tif, tmp_path / "store2", model="ofa_test", tile_size=64,
                      on_progress=lambda *_: chosen.append(get_gdal_config("GDAL_CACHEMAX")))
    assert DEFAULT_GDAL_CACHE_MB * 2**20 not in chosen


def test_landsat_level_2_band_files_are_surface_reflectance_not_level_1_dn(tmp_path):
    values = np.full((1, 32, 32), 10000, np.uint16)
    level1 = [write_raster(tmp_path / f"LC08_L1TP_224078_20200518_20200518_01_T1_B{b}.TIF", values) for b in (2, 3)]
    level2 = [write_raster(tmp_path / f"LC08_L2SP_224078_20200518_20200820_02_T1_SR_B{b}.TIF", values) for b in (2, 3)]
    with open_scene(level1) as l1, open_scene(level2) as l2:
        assert (l1.modality.name, l2.modality.name) == ("landsat_oli", "landsat_oli_sr")
        # the same DN is 0.1 TOA reflectance in Level-1 and 0.075 surface reflectance in Level-2
        assert l1.modality.scale * 10000 + l1.modality.offset == pytest.approx(0.1)
        assert l2.modality.scale * 10000 + l2.modality.offset == pytest.approx(0.075)


def test_a_released_scene_holds_no_file_open_and_reads_the_same_once_reopened(s2_band_folder):
    with open_scene(s2_band_folder) as scene:
        before, _ = scene.read(Window(30, 40, 96, 64))
        before = before.copy()
        scene.release()
        assert all(source.dataset.closed for source in scene.sources) and not scene.sample_held
        with scene.reading():
            after, _ = scene.read(Window(30, 40, 96, 64))
            assert not any(source.dataset.closed for source in scene.sources)
        assert all(source.dataset.closed for source in scene.sources)
    np.testing.assert_array_equal(after, before)


def test_reopening_refuses_a_file_changed_since_it_was_checked(tmp_path):
    path = write_raster(tmp_path / "s2.tif", s2_values(64, 64), descriptions=S2.band_names)
    scene = open_scene(path)
    scene.release()
    write_raster(path, s2_values(64, 80), descriptions=S2.band_names)
    with pytest.raises(SceneReadError, match=r"s2\.tif: changed since it was opened and checked"):
        scene.reopen()
    assert scene.sources[0].dataset.closed
    scene.close()


def test_own_handles_read_a_released_scene_beside_its_reader_and_refuse_a_changed_file(s2_band_folder, tmp_path):
    with open_scene(s2_band_folder) as scene:
        expected = scene.sample_raw().copy()
        scene.release()
        with scene.reading():  # as the reader holds it
            with scene.own_handles() as own:
                assert all(a.dataset is not b.dataset for a, b in zip(own.sources, scene.sources, strict=True))
                np.testing.assert_array_equal(own.sample_raw(), expected)
            assert not own.sources and not any(source.dataset.closed for source in scene.sources)
    path = write_raster(tmp_path / "s2.tif", s2_values(64, 64), descriptions=S2.band_names)
    changed = open_scene(path)
    changed.release()
    write_raster(path, s2_values(64, 80), descriptions=S2.band_names)
    with pytest.raises(SceneReadError, match=r"s2\.tif: changed since it was opened and checked"):
        with changed.own_handles():
            pass
    changed.close()


def test_value_checks_made_unbegun_wait_for_begin_and_closing_unbegun_checks_nothing(tmp_path):
    from ofa_embed.raster.checks import ValueChecks
    from ofa_embed.raster.opening import open_scenes

    paths = [write_raster(tmp_path / f"s2_{i}.tif", s2_values(64, 64, seed=i), descriptions=S2.band_names)
             for i in range(2)]
    scenes = open_scenes(paths, check_values=False)
    with ValueChecks(scenes, begun=False):
        time.sleep(0.3)  # ample for two 64 px scenes' checks, had they begun
        assert not any(s.input_values for s in scenes)
    assert not any(s.input_values for s in scenes)  # closed before begun: none ran
    assert not [t for t in threading.enumerate() if t.name == "ofa-embed-value-checks"]
    with ValueChecks(scenes, begun=False) as checks:
        checks.begin()
        checks.wait()
    assert all(s.input_values["p50"] > 100 for s in scenes)
    with ValueChecks(scenes, begun=False) as checks:
        for s in scenes:
            s.input_values = {}
        checks.wait()  # begins them
    assert all(s.input_values["p50"] > 100 for s in scenes)
    for s in scenes:
        s.close()


def test_value_checks_run_in_order_beside_the_caller_and_report_the_first_failure(tmp_path):
    from ofa_embed.raster.checks import ValueChecks
    from ofa_embed.raster.opening import open_scenes

    good = write_raster(tmp_path / "S2A_MSIL1C_20200518T101031_good.tif", s2_values(64, 64), descriptions=S2.band_names)
    reflectance = (s2_values(64, 64) / 10_000).astype(np.float32)
    bad = write_raster(tmp_path / "S2A_MSIL1C_20200518T101031_refl.tif", reflectance, descriptions=S2.band_names)
    scenes = open_scenes([good, bad, good], check_values=False)
    assert not any(s.input_values for s in scenes)  # opened, not checked
    with ValueChecks(scenes) as checks:
        with pytest.raises(ModalityError, match=r"_refl\.tif: .* look like reflectance"):
            checks.wait()
        with pytest.raises(ModalityError):  # and again, at the caller's next poll
            checks.raise_failure()
    assert scenes[0].input_values["p50"] > 100 and not scenes[2].input_values  # stopped at the failure
    # the checks read through handles of their own: the scenes' are as open_scenes left them (3 files: all open)
    assert not any(source.dataset.closed for s in scenes for source in s.sources)
    assert not [t for t in threading.enumerate() if t.name == "ofa-embed-value-checks"]
    for s in scenes:
        s.close()


def test_open_scenes_keeps_scenes_open_up_to_the_file_budget_and_closes_them_all_when_one_fails(
        tmp_path, monkeypatch, s2_band_folder):
    from ofa_embed.raster import opening as scene_module

    good = [write_raster(tmp_path / f"s2_{i}.tif", s2_values(64, 64, seed=i), descriptions=S2.band_names)
            for i in range(3)]
    monkeypatch.setattr(scene_module, "KEPT_OPEN_FILES", 2)
    opened = scene_module.open_scenes(good)
    assert [s.name for s in opened] == ["s2_0", "s2_1", "s2_2"]
    assert not any(source.dataset.closed for s in opened[:2] for source in s.sources)  # 2 files: kept open
    assert all(source.dataset.closed for source in opened[2].sources)  # past the budget: released
    assert all(s.input_values["p99"] > 0 for s in opened)  # checked before release
    for s in opened:
        s.close()
    # the first scene stays open whatever its file count; a scene that would pass the budget is released
    folder, single = scene_module.open_scenes([s2_band_folder, good[0]], check_values=False)
    assert len(folder.sources) > 2 and not any(source.dataset.closed for source in folder.sources)
    assert all(source.dataset.closed for source in single.sources)
    for s in (folder, single):
        s.close()

    seen = []
    real_open = scene_module.open_scene

    def recording(item, **kwargs):
        seen.append(real_open(item, **kwargs))
        return seen[-1]

    monkeypatch.setattr(scene_module, "open_scene", recording)
    with pytest.raises(SceneNotFoundError, match="missing.tif"):
        scene_module.open_scenes([good[0], tmp_path / "missing.tif", good[1]])
    assert len(seen) == 1 and not seen[0].sources  # closed, and the scene after the failure never opened


def test_pooled_sample_statistics_equal_those_of_the_concatenated_samples(tmp_path):
    from ofa_embed.raster.checks import sample_statistics

    paths = [write_raster(tmp_path / f"s2_{i}.tif", s2_values(70 + 40 * i, 90, seed=i) + 300 * i,
                          descriptions=S2.band_names) for i in range(3)]
    scenes = [open_scene(p) for p in paths]
    pooled = np.concatenate([s.sample_raw() for s in scenes], axis=1).astype(np.float64)
    for s in scenes:
        s.sample_moments()
        s.release()  # the moments outlive the samples
    mean, std, source = sample_statistics(scenes)
    np.testing.assert_allclose(mean, pooled.mean(axis=1), rtol=1e-9)
    np.testing.assert_allclose(std, pooled.std(axis=1), rtol=1e-7)
    assert source == f"{pooled.shape[1]} valid pixels sampled from 3 scenes"
    for s in scenes:
        s.close()


def test_the_value_sample_reads_every_band_file_at_its_own_resolution(s2_band_folder):
    with open_scene(s2_band_folder) as scene:
        sample = scene.value_sample()
    edge = {10: 128, 20: 64, 60: 21}  # 128 scene px of each band's own pixels
    assert sample.size == sum(9 * edge[int(band.gsd_m)] ** 2 for band in S2.bands)
    # nothing interpolated: every value is one the files hold
    held = []
    for path in sorted(s2_band_folder.glob("*_B*.tif")):
        with rasterio.open(path) as dataset:
            held.append(dataset.read().ravel())
    assert np.isin(np.unique(sample), np.concatenate(held)).all()
