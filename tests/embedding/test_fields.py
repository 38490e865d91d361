"""Embedding fields: one pass over overlapping tiles, cropped, equals each tile's tokens embedded alone;
grid aligned with the scene; COG readable as is; quantisation error bounded; bad input refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch

import ofa_embed
from ofa_embed.embedding.fields import field_stride
from ofa_embed.embedding.forward import embed
from ofa_embed.errors import ConfigError, StoreError, TilingError
from ofa_embed.field_files import dequantise, quantise, read_field
from ofa_embed.model.weights import load_weights
from ofa_embed.raster.opening import open_scene
from ofa_embed.sensors import get_modality
from ofa_embed.store import read_metadata
from tests.helpers import s2_values, write_raster

FAST = {"model": "ofa_test", "tile_size": 64, "precision": "fp32"}
PATCH = 16


def field_file(store, scene):
    return store / "fields" / f"{scene}.tif"


def test_field_equals_each_tiles_tokens_in_its_interior(tmp_path, s2_tif):
    store = tmp_path / "store"
    # min_valid 0.3 keeps every tile (the corner tile is 39 % inside the scene); a tile skipped leaves its
    # pixels to its neighbours, tested below
    ofa_embed.extract(s2_tif, store, dense=True, min_valid=0.3, **FAST)
    field = read_field(store, s2_tif.stem)
    values = field.values
    model = load_weights(None, "ofa_test", None).model
    stride = field_stride(64, PATCH)
    margin = (64 - stride) // 2 // PATCH  # patches cropped from each inner tile edge
    checked = np.zeros(values.shape[1:], bool)
    with open_scene(s2_tif) as scene:
        height, width = scene.height, scene.width
        rows = range(0, max(height - 64, 0) + stride, stride)
        cols = range(0, max(width - 64, 0) + stride, stride)
        for top in rows:
            for left in cols:
                h, w = min(64, height - top), min(64, width - left)
                tile = np.zeros((1, 13, 64, 64), np.float32)
                _, valid = scene.read(rasterio.windows.Window(left, top, w, h), tile[0, :, :h, :w])
                tokens = embed(model, tile, "sentinel2_l1c", torch.device("cpu"), tokens=True, precision="fp32")[0]
                grid = tokens.reshape(4, 4, -1).transpose(2, 0, 1)
                r0, c0 = top // PATCH, left // PATCH
                lo_r = 0 if top == 0 else margin
                hi_r = 4 if top + 64 >= height else 4 - margin
                lo_c = 0 if left == 0 else margin
                hi_c = 4 if left + 64 >= width else 4 - margin
                for i in range(lo_r, hi_r):
                    for j in range(lo_c, hi_c):
                        if r0 + i >= values.shape[1] or c0 + j >= values.shape[2]:
                            continue
                        pixel = values[:, r0 + i, c0 + j]
                        if np.isnan(pixel).all():
                            assert valid[i * PATCH : (i + 1) * PATCH, j * PATCH : (j + 1) * PATCH].mean() < 0.5 or \
                                (i + 1) * PATCH > h
                            continue
                        np.testing.assert_allclose(pixel, grid[:, i, j], atol=1e-5, rtol=1e-5)
                        checked[r0 + i, c0 + j] = True
    # every valid field pixel lies in some tile's interior
    assert checked[~np.isnan(values).all(axis=0)].all()


def test_field_grid_is_aligned_with_the_scene_and_read_as_a_cog(tmp_path, s2_tif):
    store = tmp_path / "store"
    ofa_embed.extract(s2_tif, store, dense=True, **FAST)
    with rasterio.open(s2_tif) as scene, rasterio.open(field_file(store, s2_tif.stem)) as field:
        assert field.crs == scene.crs
        assert field.transform == scene.transform @ rasterio.Affine.scale(PATCH)
        assert (field.width, field.height) == (-(-scene.width // PATCH), -(-scene.height // PATCH))
        # every field pixel edge is a scene patch edge: whole multiples of the patch from the scene's origin
        col, row = ~scene.transform @ (field.transform @ (3, 5))
        assert (col, row) == (3 * PATCH, 5 * PATCH)
        assert field.count == 32 and field.descriptions[0] == "emb_000" and field.descriptions[-1] == "emb_031"
        assert field.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert field.overviews(1) and np.isnan(field.nodata)
        record = json.loads(field.tags()["OFA_EMBED_FIELD"])
    assert record["model"]["weights_hash"] and "farthest from a tile edge" in record["pixel"]
    meta = read_metadata(store / f"{s2_tif.stem}.parquet")
    assert meta["field"]["path"] == f"fields/{s2_tif.stem}.tif" and meta["field"]["stride"] == 32
    da = read_field(store, s2_tif.stem)
    assert da.dims == ("band", "y", "x") and da.dtype == np.float32
    assert da.x.values[0] == 500_000 + PATCH * 10 / 2 and da.y.values[0] == 5_000_000 - PATCH * 10 / 2
    assert rasterio.crs.CRS.from_wkt(da.attrs["crs"]).to_epsg() == 32633
    assert not list((store / "fields").glob(".*"))  # no temporary file left


def test_dense_rows_equal_pooled_rows_of_the_same_tiling(tmp_path, s2_tif):
    import geopandas as gpd

    a = gpd.read_parquet(ofa_embed.extract(s2_tif, tmp_path / "a", dense=True, stride=32, **FAST).scenes[0].path)
    b = gpd.read_parquet(ofa_embed.extract(s2_tif, tmp_path / "b", stride=32, **FAST).scenes[0].path)
    assert a.id.tolist() == b.id.tolist()
    np.testing.assert_allclose(np.stack(a.embedding.to_numpy()), np.stack(b.embedding.to_numpy()), atol=1e-5)


def test_nodata_in_the_scene_is_nodata_in_the_field(tmp_path):
    values = s2_values(128, 128)
    values[:, :64, :64] = 0
    tif = write_raster(tmp_path / "S2A_MSIL1C_20200518T101031_nd.tif", values, nodata=0,
                       descriptions=get_modality("sentinel2_l1c").band_names)
    store = tmp_path / "store"
    ofa_embed.extract(tif, store, dense=True, min_valid=0.1, **FAST)
    field = read_field(store, tif.stem).values
    assert np.isnan(field[:, :4, :4]).all() and not np.isnan(field[:, 4:, 4:]).any()


def test_quantised_fields_stay_within_their_error_bound(tmp_path, s2_tif):
    rng = np.random.default_rng(0)
    values = rng.normal(0, 3, (32, 7, 9)).astype(np.float32) * rng.uniform(0.01, 100, (1, 7, 9)).astype(np.float32)
    values[:, 2, 3] = np.nan
    back = dequantise(quantise(values))
    assert np.isnan(back[:, 2, 3]).all()
    peak = np.nanmax(np.abs(values), axis=0)
    error = np.abs(back - values)
    assert (np.nan_to_num(error) <= np.nan_to_num(1.0905 * peak / 254) + 1e-7).all()
    store32, store8, store16 = tmp_path / "f32", tmp_path / "i8", tmp_path / "f16"
    ofa_embed.extract(s2_tif, store32, dense=True, **FAST)
    ofa_embed.extract(s2_tif, store8, dense=True, field_dtype="int8", **FAST)
    ofa_embed.extract(s2_tif, store16, dense=True, field_dtype="float16", **FAST)
    exact = read_field(store32, s2_tif.stem).values
    for store, bound in ((store8, 1.0905 / 254), (store16, 2**-11)):
        got = read_field(store, s2_tif.stem).values
        assert np.array_equal(np.isnan(got), np.isnan(exact))
        peak = np.nanmax(np.abs(exact), axis=0)
        assert np.nanmax(np.abs(got - exact) - bound * peak) <= 1e-6
    with rasterio.open(field_file(store8, s2_tif.stem)) as src:
        assert src.count == 33 and src.dtypes[0] == "int8" and src.descriptions[-1] == "scale_exponent"
        assert src.nodata == -128


def test_bad_field_options_are_refused_before_writing(tmp_path, s2_tif):
    store = tmp_path / "store"
    with pytest.raises(ConfigError, match="field dtype 'int4'"):
        ofa_embed.extract(s2_tif, store, dense=True, field_dtype="int4", **FAST)
    with pytest.raises(TilingError, match="multiple of the model's 16 px patch"):
        ofa_embed.extract(s2_tif, store, dense=True, stride=40, **FAST)
    with pytest.raises(ConfigError, match="local runs only"):
        ofa_embed.extract(s2_tif, store, dense=True, client="local", **FAST)
    assert not store.exists()
    ofa_embed.extract(s2_tif, store, **FAST)
    with pytest.raises(StoreError, match="no field of scene .* extract with --dense"):
        read_field(store, s2_tif.stem)


def test_a_scene_without_its_field_is_redone_by_a_dense_run(tmp_path, s2_tif):
    store = tmp_path / "store"
    ofa_embed.extract(s2_tif, store, **FAST)
    report = ofa_embed.extract(s2_tif, store, dense=True, **FAST)
    assert not report.scenes[0].skipped_existing and field_file(store, s2_tif.stem).is_file()
    again = ofa_embed.extract(s2_tif, store, dense=True, **FAST)
    assert again.scenes[0].skipped_existing


def test_a_field_staged_on_disk_equals_one_staged_in_memory(tmp_path, s2_tif, monkeypatch):
    from ofa_embed import field_files

    ofa_embed.extract(s2_tif, tmp_path / "mem", dense=True, **FAST)
    monkeypatch.setattr(field_files, "FIELD_MEM_BYTES", 0)
    ofa_embed.extract(s2_tif, tmp_path / "disk", dense=True, **FAST)
    a, b = field_file(tmp_path / "mem", s2_tif.stem), field_file(tmp_path / "disk", s2_tif.stem)
    with rasterio.open(a) as x, rasterio.open(b) as y:
        assert x.overviews(1) == y.overviews(1) and x.tags() == y.tags() and x.descriptions == y.descriptions
        assert y.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert np.array_equal(x.read(), y.read(), equal_nan=True)


def _threads_named(prefix):
    import threading

    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def test_a_failing_field_write_is_raised_and_leaves_no_thread_and_no_scene(tmp_path, s2_tif, monkeypatch):
    from ofa_embed.embedding import scene_files

    def fail(*args, **kwargs):
        raise StoreError("disk full")

    monkeypatch.setattr(scene_files, "write_field", fail)
    store = tmp_path / "store"
    with pytest.raises(StoreError, match="disk full"):
        ofa_embed.extract(s2_tif, store, dense=True, **FAST)
    assert not _threads_named("ofa-embed-") and not list(store.glob("*.parquet"))


def test_an_interrupt_stops_and_joins_the_field_writer(tmp_path, s2_tif, monkeypatch):
    from ofa_embed.embedding import pipeline

    real = pipeline.dense_batches

    def interrupted(*args, **kwargs):
        for i, item in enumerate(real(*args, **kwargs)):
            if i == 2:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(pipeline, "dense_batches", interrupted)
    store = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        ofa_embed.extract(s2_tif, store, dense=True, batch_size=2, **FAST)
    assert not _threads_named("ofa-embed-")
    assert not list(store.glob("*.parquet")) and not list(store.glob("fields/*"))


def test_the_field_writer_raises_its_threads_error_in_the_caller():
    from ofa_embed.embedding.fields import FieldWriter

    def broken(number):
        raise ValueError(f"no field for scene {number}")

    tokens = np.zeros((1, 16, 8), np.float32)
    with pytest.raises(ValueError, match="no field for scene 3"), FieldWriter(broken, depth=1) as writer:
        for _ in range(50):  # the thread fails on the first; a later add raises once it has
            writer.add(3, [], np.zeros((1, 4, 4)), tokens)
    assert not _threads_named("ofa-embed-fields")
