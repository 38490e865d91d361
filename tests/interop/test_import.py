"""Each published format imports from a fixture in its documented layout, and the store works as any other."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely
from typer.testing import CliRunner

import ofa_embed
from ofa_embed import indexes
from ofa_embed.cli.main import app
from ofa_embed.errors import IndexStateError, ProductError, SQLError, StoreError
from ofa_embed.interop import aef
from ofa_embed.store import describe_store, read_metadata, read_tiles
from tests.interop import fixtures

runner = CliRunner()

SOURCES = {
    "aef": lambda d: fixtures.write_aef(d / "aef"),
    "tessera": lambda d: fixtures.write_tessera(d / "tessera"),
    "majortom": lambda d: fixtures.write_majortom(d / "mt"),
    "earthindex": lambda d: fixtures.write_earthindex(d / "ei" / "18SVG.parquet"),
    "clay": lambda d: fixtures.write_clay(d / "clay" / "18SVG_20220610_20220610_v001.gpq"),
}
EXPECTED = {"aef": (64, 64), "tessera": (9, 128), "majortom": (36, 1024), "earthindex": (36, 384), "clay": (25, 768)}


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("imported")
    stores = {}
    for name, write in SOURCES.items():
        source = write(root)
        stores[name] = (ofa_embed.import_embeddings([source], root / f"store-{name}", name, tile_size=32), root / f"store-{name}")
    return stores


@pytest.mark.parametrize("name", list(SOURCES))
def test_each_format_imports_into_a_store_of_its_own_identity(imported, name):
    report, store = imported[name]
    rows, dim = EXPECTED[name]
    assert report.rows == rows
    files = describe_store(store)
    assert files[0].dimension == dim and files[0].weights_hash == report.identity
    meta = read_metadata(files[0].path)
    assert meta["imported"]["format"] == name and meta["imported"]["product"] == report.product
    assert meta["emb"]["dimension"] == dim
    claim = json.loads((store / "_store.json").read_text())
    assert claim["weights_hash"] == report.identity
    tiles = read_tiles(store, ("id", "datetime", "geometry"))
    assert tiles["datetime"].notna().all()
    assert tiles.geometry.is_valid.all() and (tiles.to_crs(32618).geometry.area > 0).all()
    assert tiles.total_bounds[0] > -76 and tiles.total_bounds[2] < -75.2  # over the sample's area


def test_aef_dequantisation_is_the_readme_mapping():
    """sign(q)(|q|/127.5)^2 gives the unit-length pixels the README promises; q/128 does not."""
    values = fixtures.unit_field(8, 8, 64).reshape(-1, 64)
    q = fixtures.aef_quantise(values)
    assert np.allclose(np.linalg.norm(aef.dequantise(q), axis=1), 1.0, atol=0.03)
    assert np.linalg.norm(q.astype(np.float32) / 128, axis=1).min() > 1.5


def test_aef_tiles_are_unit_means_of_valid_pixels(tmp_path):
    path = fixtures.write_aef(tmp_path / "a", size=64)
    ofa_embed.import_embeddings([path], tmp_path / "s", "aef", tile_size=32)
    table = pq.read_table(next((tmp_path / "s").glob("*.parquet")))
    first = table.filter(np.array(table["row"].to_numpy() == 0) & np.array(table["col"].to_numpy() == 0))
    with __import__("rasterio").open(path) as src:
        q = src.read(window=((0, 32), (0, 32)))
    valid = (q != -128).all(0)
    mean = np.moveaxis(aef.dequantise(q), 0, -1)[valid].mean(0)
    expected = mean / np.linalg.norm(mean)
    got = np.asarray(first["embedding"][0].as_py(), np.float32)
    assert np.allclose(got, expected, atol=1e-5)
    assert first["valid_fraction"][0].as_py() == pytest.approx(valid.mean())


def test_a_bottom_up_aef_file_imports_as_the_top_down_one(tmp_path):
    top = fixtures.write_aef(tmp_path / "top", size=64, nodata_block=False)
    bottom = fixtures.write_aef(tmp_path / "bottom", size=64, bottom_up=True, nodata_block=False)
    a = read_tiles(ofa_embed.import_embeddings([top], tmp_path / "s1", "aef").store, ("geometry",))
    b = read_tiles(ofa_embed.import_embeddings([bottom], tmp_path / "s2", "aef").store, ("geometry",))
    assert a.geometry.union_all().equals_exact(b.geometry.union_all(), 1e-6)
    va = ofa_embed.sql(tmp_path / "s1", "SELECT xmin, ymax, embedding FROM embeddings ORDER BY ymax DESC, xmin")
    vb = ofa_embed.sql(tmp_path / "s2", "SELECT xmin, ymax, embedding FROM embeddings ORDER BY ymax DESC, xmin")
    assert np.allclose(np.stack(va["embedding"]), np.stack(vb["embedding"]), atol=1e-6)


def test_bbox_reads_only_what_it_needs(tmp_path):
    path = fixtures.write_majortom(tmp_path / "mt", n_side=6, row_group_size=6)
    report = ofa_embed.import_embeddings([path], tmp_path / "s", "majortom", bbox=(-75.60, 37.705, -75.59, 37.71))
    assert report.row_groups == 6 and report.row_groups_read < 6
    tiles = read_tiles(tmp_path / "s", ("id", "geometry"))
    assert len(tiles) and tiles.intersects(shapely.box(-75.60, 37.705, -75.59, 37.71)).all()
    dense = fixtures.write_aef(tmp_path / "a", size=128)
    every = read_tiles(ofa_embed.import_embeddings([dense], tmp_path / "all", "aef").store, ("id", "geometry"))
    centre = every.geometry.iloc[5].centroid
    one = ofa_embed.import_embeddings([dense], tmp_path / "d", "aef", bbox=(centre.x - 1e-4, centre.y - 1e-4,
                                                                            centre.x + 1e-4, centre.y + 1e-4))
    assert one.rows == 1 and len(every) == 16
    assert read_tiles(tmp_path / "d", ("id", "geometry"))["id"].iloc[0] == every["id"].iloc[5]


def test_time_selection(tmp_path):
    path = fixtures.write_majortom(tmp_path / "mt")
    from datetime import UTC, datetime
    report = ofa_embed.import_embeddings([path], tmp_path / "s", "majortom", start=datetime(2021, 3, 1, tzinfo=UTC),
                                         end=datetime(2021, 4, 30, tzinfo=UTC))
    times = read_tiles(tmp_path / "s", ("datetime", "geometry"))["datetime"]
    assert report.rows and times.dt.month.isin([3, 4]).all()
    dense = fixtures.write_aef(tmp_path / "a", size=64)
    none = ofa_embed.import_embeddings([dense], tmp_path / "d", "aef", start=datetime(2025, 1, 1, tzinfo=UTC))
    assert none.rows == 0 and none.skipped


def test_search_index_probe_knn_and_map_on_an_imported_store(imported, tmp_path):
    _, store = imported["aef"]
    indexes.build(store)
    tiles = read_tiles(store, ("id", "geometry"))
    hits = ofa_embed.search(store, like_id=tiles["id"].iloc[5], k=3)
    assert hits["id"].iloc[0] == tiles["id"].iloc[5]
    centre = tiles.geometry.iloc[7].centroid
    near = ofa_embed.search(store, like_point=(centre.x, centre.y), k=2)
    assert len(near) == 2
    points = tiles.to_crs(32618).geometry.centroid.to_crs("OGC:CRS84")
    labels = gpd.GeoDataFrame({"cls": np.where(points.x < points.x.median(), "west", "east")}, geometry=points.values,
                              crs="OGC:CRS84")
    labels.to_file(tmp_path / "labels.gpkg")
    report = ofa_embed.probe(store, tmp_path / "labels.gpkg", "cls", folds=3, n_boot=50)
    assert 0 <= report.evaluation.metrics["accuracy"].value <= 1
    assert ofa_embed.knn(store, tmp_path / "labels.gpkg", "cls", k=3, folds=3, n_boot=50).evaluation.metrics
    page = ofa_embed.map(store, tmp_path / "map.html")
    assert (tmp_path / "map.html").stat().st_size > 1000 and page


def test_query_files_are_refused_with_one_line(imported, tmp_path, s2_tif):
    _, store = imported["majortom"]
    indexes.build(store)
    with pytest.raises(IndexStateError, match="imported Major-TOM/Core-S2RGB-DINOv2 embeddings .* not available here"):
        ofa_embed.search(store, like=s2_tif, k=3)
    with pytest.raises(SQLError, match="not available here"):
        ofa_embed.sql(store, f"SELECT array_cosine_similarity(embedding, embed('{s2_tif}')) FROM embeddings")
    result = runner.invoke(app, ["search", str(store), "--like", str(s2_tif)])
    assert result.exit_code == 1 and "not available here" in result.output


def test_a_store_never_mixes_origins(imported, tmp_path):
    _, store = imported["clay"]
    with pytest.raises(StoreError, match="holds weights"):
        ofa_embed.import_embeddings([fixtures.write_clay(tmp_path / "v15.parquet", version="v1.5")], store, "clay")
    mixed = [fixtures.write_clay(tmp_path / "a.parquet"), fixtures.write_clay(tmp_path / "b.parquet", version="v1.5")]
    with pytest.raises(ProductError, match="import each into its own store"):
        ofa_embed.import_embeddings(mixed, tmp_path / "mixed", "clay")


@pytest.mark.parametrize("name, wrong", [("aef", "majortom"), ("majortom", "aef"), ("tessera", "clay"),
                                         ("earthindex", "tessera"), ("clay", "earthindex")])
def test_the_wrong_format_is_one_line_naming_the_file(tmp_path, name, wrong):
    source = SOURCES[name](tmp_path)
    with pytest.raises((ProductError,)) as caught:
        ofa_embed.import_embeddings([source], tmp_path / "s", wrong)
    message = str(caught.value)
    assert "\n" not in message and source.name in message


def test_the_cli_imports(tmp_path):
    source = fixtures.write_earthindex(tmp_path / "ei" / "18SVG.parquet")
    result = runner.invoke(app, ["import", str(source), "--format", "earthindex", "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert "36 tiles of Earth Index" in result.output
    bad = runner.invoke(app, ["import", str(source), "--format", "nope", "--out", str(tmp_path / "t")])
    assert bad.exit_code == 1 and "choose from" in bad.output
