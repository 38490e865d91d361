"""Pixel products: TESSERA's Zarr store read as documented, and imported pixels kept as embedding fields."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import zarr
import zarr.storage
from typer.testing import CliRunner

import ofa_embed
from ofa_embed.change import change
from ofa_embed.cli.main import app
from ofa_embed.downstream.segmentation import segment
from ofa_embed.errors import ConfigError, ProductError
from ofa_embed.field_files import field_record, list_fields
from ofa_embed.interop import aef, product_fields
from ofa_embed.interop.stac import write_stac
from ofa_embed.store import read_metadata, read_tiles
from tests.interop import fixtures

runner = CliRunner()


def _embeddings(store, scene=None):
    frame = ofa_embed.sql(store, "SELECT scene, row, col, xmin, ymax, embedding FROM embeddings ORDER BY scene, row, col")
    if scene is not None:
        frame = frame[frame["scene"] == scene]
    return frame.reset_index(drop=True)


def test_tessera_zarr_imports_as_the_npy_tiles_of_each_year(tmp_path):
    """The Zarr store's year holding the .npy fixture's tile gives the .npy import's rows; each year is a scene."""
    npy = fixtures.write_tessera(tmp_path / "npy", year=2024)
    store = fixtures.write_tessera_zarr(tmp_path / "zarr", years=(2024, 2025))
    from_npy = ofa_embed.import_embeddings([npy], tmp_path / "s-npy", "tessera")
    from_zarr = ofa_embed.import_embeddings([store], tmp_path / "s-zarr", "tessera")
    assert from_zarr.identity == from_npy.identity and from_zarr.version == "v1"
    assert from_npy.rows == 9 and from_zarr.rows == 18  # the water (NaN) and unwritten (+inf) columns hold no tile
    a, b = _embeddings(tmp_path / "s-npy"), _embeddings(tmp_path / "s-zarr", "tessera_utm18_2024")
    assert len(a) == len(b) == 9
    assert np.allclose(a[["xmin", "ymax"]], b[["xmin", "ymax"]], atol=1e-9)
    assert np.allclose(np.stack(a["embedding"]), np.stack(b["embedding"]), atol=1e-6)
    tiles = read_tiles(tmp_path / "s-zarr", ("scene", "datetime", "geometry"))
    assert sorted(tiles["scene"].unique()) == ["tessera_utm18_2024", "tessera_utm18_2025"]
    assert set(tiles["datetime"].dt.year) == {2024, 2025}
    meta = read_metadata(next((tmp_path / "s-zarr").glob("*2025.parquet")))
    assert meta["imported"]["source"].endswith("tessera.zarr#utm18/time=2025")
    from datetime import UTC, datetime
    one = ofa_embed.import_embeddings([store], tmp_path / "s-2025", "tessera", start=datetime(2025, 1, 1, tzinfo=UTC))
    assert one.rows == 9 and one.files == ["tessera-tessera_utm18_2025.parquet"]


def test_tessera_zarr_bbox_reads_only_the_chunks_it_needs(tmp_path, monkeypatch):
    store = fixtures.write_tessera_zarr(tmp_path / "zarr", years=(2024, 2025))
    reads: list[tuple[str, str]] = []
    get = zarr.storage.LocalStore.get

    async def counting(self, key, prototype=None, byte_range=None):
        reads.append((key, type(byte_range).__name__))
        return await get(self, key, prototype, byte_range)

    monkeypatch.setattr(zarr.storage.LocalStore, "get", counting)

    def chunk_reads():  # inner chunks of the embeddings' shards (not the shard index, read from the shard's end)
        found = [k for k, kind in reads if "/embeddings/c/" in k and kind == "RangeByteRequest"]
        reads.clear()
        return len(found)

    every = ofa_embed.import_embeddings([store], tmp_path / "all", "tessera")
    assert chunk_reads() == 18  # the 3 x 3 chunks with data, two years; none of the water or unwritten columns
    tiles = read_tiles(tmp_path / "all", ("id", "geometry"))
    centre = tiles.geometry.iloc[4].centroid
    bbox = (centre.x - 1e-4, centre.y - 1e-4, centre.x + 1e-4, centre.y + 1e-4)
    one = ofa_embed.import_embeddings([store], tmp_path / "one", "tessera", bbox=bbox)
    assert chunk_reads() == 2 and one.rows == 2 and every.rows == 18
    assert set(read_tiles(tmp_path / "one", ("id", "geometry"))["id"]) <= set(tiles["id"])
    assert ofa_embed.import_embeddings([store], tmp_path / "none", "tessera", bbox=(10, 10, 11, 11)).rows == 0
    assert chunk_reads() == 0


@pytest.mark.parametrize("damage, says", [
    (lambda z: z["utm18"].attrs.__delitem__("proj:code"), "no spatial:transform"),
    (lambda z: z.attrs.update({"geoemb:dimensions": 64}), "not TESSERA's 128-d"),
    (lambda z: z["utm18"].attrs.update({"spatial:shape": [1, 1]}), "spatial:shape"),
])
def test_a_zarr_store_off_the_layout_is_one_line(tmp_path, damage, says):
    store = fixtures.write_tessera_zarr(tmp_path / "zarr", years=(2024,))
    damage(zarr.open_group(str(store), mode="r+"))
    with pytest.raises(ProductError, match=says) as caught:
        ofa_embed.import_embeddings([store], tmp_path / "s", "tessera")
    assert "\n" not in str(caught.value) and "tessera.zarr" in str(caught.value)
    assert not (tmp_path / "s").exists() or not list((tmp_path / "s").glob("*.parquet"))


@pytest.fixture(scope="module")
def aef_fields(tmp_path_factory):
    """Two years of one AEF tile imported with their fields (the second year's land cover changed in a block)."""
    root = tmp_path_factory.mktemp("aef-fields")
    first = fixtures.write_aef(root / "src", year=2023, size=96, seed=0)
    later = fixtures.write_aef(root / "src", year=2024, size=96, seed=0)
    with rasterio.open(later, "r+") as dst:  # a changed block: another place's vectors
        other = fixtures.aef_quantise(fixtures.unit_field(32, 32, 64, seed=9))
        dst.write(np.moveaxis(other, -1, 0), window=((40, 72), (40, 72)))
    report = ofa_embed.import_embeddings([root / "src"], root / "store", "aef", fields=True)
    return report, root / "store", {2023: first, 2024: later}


def test_an_imported_field_reads_back_as_the_dequantised_product(aef_fields):
    report, store, sources = aef_fields
    assert sorted(report.fields) == ["fields/xkcd2023_18N_aef.tif", "fields/xkcd2024_18N_aef.tif"]
    field = ofa_embed.read_field(store, "xkcd2024_18N_aef")
    with rasterio.open(sources[2024]) as src:
        q, transform, crs = src.read(), src.transform, src.crs
    expected = aef.dequantise(q)
    expected[:, (q == aef.NODATA).all(axis=0)] = np.nan
    assert field.shape == expected.shape and field.dtype == np.float32
    assert np.array_equal(np.isnan(field.values), np.isnan(expected))
    assert np.allclose(field.values, expected, equal_nan=True, rtol=0, atol=0)
    assert field.attrs["transform"] == tuple(transform)[:6]
    assert np.isclose(field["x"][0], transform.c + 5) and np.isclose(field["y"][0], transform.f - 5)
    record = field.attrs["record"]
    assert record["model"]["weights_hash"] == report.identity and record["patch_px"] == 1
    assert record["source_quantization"]["formula"] == aef.PRODUCT.quantization["formula"]
    with rasterio.open(store / "fields" / "xkcd2024_18N_aef.tif") as cog:
        assert cog.crs == crs and cog.count == 64 and cog.overviews(1)
    assert read_metadata(next(store.glob("*2024*.parquet")))["field"]["path"] == "fields/xkcd2024_18N_aef.tif"


def test_a_bottom_up_aef_field_is_written_north_up(tmp_path):
    top = fixtures.write_aef(tmp_path / "top", size=64, nodata_block=False)
    bottom = fixtures.write_aef(tmp_path / "bottom", size=64, bottom_up=True, nodata_block=False)
    ofa_embed.import_embeddings([top], tmp_path / "a", "aef", fields=True)
    ofa_embed.import_embeddings([bottom], tmp_path / "b", "aef", fields=True)
    a, b = (ofa_embed.read_field(tmp_path / s, "xkcd2024_18N_aef") for s in ("a", "b"))
    assert a.attrs["transform"] == b.attrs["transform"] and b.attrs["transform"][4] < 0
    assert np.array_equal(a.values, b.values)


def test_dense_probe_change_and_stac_on_imported_fields(aef_fields, tmp_path):
    _, store, _ = aef_fields
    field = ofa_embed.read_field(store, "xkcd2023_18N_aef")
    xs, ys = np.meshgrid(field["x"].values[::6], field["y"].values[::6])
    points = gpd.GeoDataFrame({"cls": np.where(xs.ravel() < np.median(xs), "west", "east")},
                              geometry=gpd.points_from_xy(xs.ravel(), ys.ravel()), crs=field.attrs["crs"])
    points.to_file(tmp_path / "points.gpkg")
    report = segment(store, tmp_path / "points.gpkg", "cls", folds=2, n_boot=20, block_size_m=300)
    assert sorted(report.fields) == ["xkcd2023_18N_aef", "xkcd2024_18N_aef"] and report.pixels > len(points)
    assert 0 <= report.miou.value <= 1
    result = runner.invoke(app, ["probe", str(store), "--labels", str(tmp_path / "points.gpkg"), "--target", "cls",
                                 "--dense", "--folds", "2", "--block-size", "300"])
    assert result.exit_code == 0, result.output
    moved = change(store, "xkcd2023_18N_aef", "xkcd2024_18N_aef", out=tmp_path / "change.parquet")
    (before, after, cog, pixels), = moved.fields
    assert pixels == 96 * 96 - 20 * 20
    with rasterio.open(cog) as src:
        distance = src.read(1)
    assert np.nanmin(distance[40:72, 40:72]) > 0.1  # the changed block
    outside = distance.copy()
    outside[40:72, 40:72] = np.nan
    assert np.nanmax(outside) < 1e-5  # the same vectors elsewhere
    assert moved.tiles["cosine_distance"].iloc[0] > 0.1 > moved.tiles["cosine_distance"].iloc[-1]
    out = write_stac(store, tmp_path / "stac")
    field_items = [json.loads(open(p).read()) for p in out.items if "field__" in p]
    assert len(field_items) == 2 and all(i["properties"]["emb:type"] == "pixel" for i in field_items)
    assert {i["properties"]["proj:code"] for i in field_items} == {"EPSG:32618"}


def test_int8_fields_and_tessera_zarr_fields(tmp_path):
    store = fixtures.write_tessera_zarr(tmp_path / "zarr", years=(2024,))
    report = ofa_embed.import_embeddings([store], tmp_path / "s", "tessera", fields=True, field_dtype="int8")
    field = ofa_embed.read_field(tmp_path / "s", "tessera_utm18_2024")
    q, scales = fixtures.tessera_values(96, 1)
    expected = np.where((scales > 0)[..., None], q.astype(np.float32) * scales[..., None], np.nan)
    got = np.moveaxis(field.values, 0, -1)[:96, :96]
    assert report.fields and field_record(list_fields(tmp_path / "s")["tessera_utm18_2024"])["dtype"] == "int8"
    assert np.array_equal(np.isnan(got).all(-1), np.isnan(expected).all(-1))
    valid = scales > 0
    peak = np.abs(expected[valid]).max(axis=-1, keepdims=True)
    assert (np.abs(got[valid] - expected[valid]) / peak).max() <= 1.0905 / 254 + 1e-6  # the field writer's int8 bound
    assert np.isnan(field.values[:, :, 96:]).all()  # water and unwritten land are nodata


def test_fields_are_refused_with_one_line_where_they_cannot_be(tmp_path, monkeypatch):
    clay = fixtures.write_clay(tmp_path / "clay.parquet")
    with pytest.raises(ConfigError, match="no pixels to keep as a field"):
        ofa_embed.import_embeddings([clay], tmp_path / "c", "clay", fields=True)
    with pytest.raises(ConfigError, match="field dtype"):
        ofa_embed.import_embeddings([clay], tmp_path / "c", "aef", field_dtype="int4")
    source = fixtures.write_aef(tmp_path / "aef", size=64)
    monkeypatch.setattr(product_fields, "FIELD_MAX_BYTES", 1000)
    with pytest.raises(ConfigError, match="select less with --bbox") as caught:
        ofa_embed.import_embeddings([source], tmp_path / "s", "aef", fields=True)
    assert "\n" not in str(caught.value) and source.name in str(caught.value)
    assert not (tmp_path / "s").exists() or not list((tmp_path / "s").rglob("*.parquet"))


def test_the_cli_keeps_fields(tmp_path):
    source = fixtures.write_aef(tmp_path / "aef", size=64)
    result = runner.invoke(app, ["import", str(source), "--format", "aef", "--out", str(tmp_path / "s"), "--fields"])
    assert result.exit_code == 0, result.output
    assert "1 field(s)" in result.output and list_fields(tmp_path / "s")
    plain = runner.invoke(app, ["import", str(source), "--format", "aef", "--out", str(tmp_path / "t")])
    assert plain.exit_code == 0 and not list_fields(tmp_path / "t")


def test_two_sources_of_one_scene_name_are_refused_before_anything_is_written(tmp_path):
    a = fixtures.write_tessera_zarr(tmp_path / "a", years=(2024,))
    b = fixtures.write_tessera_zarr(tmp_path / "b", years=(2024,))
    with pytest.raises(ProductError, match="also that of") as caught:
        ofa_embed.import_embeddings([a, b], tmp_path / "s", "tessera")
    assert "\n" not in str(caught.value) and str(b) in str(caught.value)
    assert not (tmp_path / "s").exists() or not list((tmp_path / "s").glob("*.parquet"))
