"""``benchmark compare``: two stores over the same area, the same labels and split, one table."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from typer.testing import CliRunner

import ofa_embed
from ofa_embed.cli.main import app
from ofa_embed.downstream.band_stats import band_stats_store, scenes_at_hand
from ofa_embed.downstream.compare import ComparedRow, compare
from ofa_embed.store import describe_store, read_tiles
from tests.interop import fixtures


@pytest.mark.slow
def test_two_products_on_the_same_labels(tmp_path):
    a = ofa_embed.import_embeddings([fixtures.write_aef(tmp_path / "aef", size=256)], tmp_path / "a", "aef").store
    b = ofa_embed.import_embeddings([fixtures.write_aef(tmp_path / "aef2", size=256, seed=7)], tmp_path / "b", "aef",
                                    tile_size=16).store
    points = read_tiles(a, ("id", "geometry")).to_crs(32618).geometry.centroid.to_crs("OGC:CRS84")
    labels = gpd.GeoDataFrame({"cls": np.where(points.y > points.y.median(), "north", "south")}, geometry=points.values,
                              crs="OGC:CRS84")
    labels.to_file(tmp_path / "labels.gpkg")
    rows = compare([a, b], tmp_path / "labels.gpkg", "cls", folds=3, n_boot=50, k=3, block_size_m=640)
    assert {r.store for r in rows} == {a, b} and {r.method for r in rows} == {"probe", "knn k=3"}
    assert all(0 <= r.low <= r.value <= r.high <= 1 for r in rows)


def test_the_cli_passes_its_options_and_prints_one_table(tmp_path, monkeypatch):
    seen = {}

    def fake(stores, labels, target, **options):
        seen.update(stores=stores, target=target, **options)
        return [ComparedRow("s1", "AlphaEarth", "probe", "macro_f1", 0.8, 0.7, 0.9, 12)]

    monkeypatch.setattr("ofa_embed.downstream.compare.compare", fake)
    result = CliRunner().invoke(app, ["benchmark", "compare", "s1", "s2", "--labels", str(tmp_path / "l.gpkg"),
                                      "--target", "cls", "--folds", "3", "--k", "3", "--block-size", "640"])
    assert result.exit_code == 0, result.output
    assert seen["stores"] == ["s1", "s2"] and seen["block_size_m"] == 640 and seen["k"] == 3 and seen["folds"] == 3
    assert "macro_f1" in result.output and "0.700-0.900" in result.output


def test_band_statistics_of_the_same_tiles_where_the_scenes_are_here(tmp_path):
    from tests.helpers import s2_values, write_raster

    scene = write_raster(tmp_path / "scene.tif", s2_values(256, 256), res=10.0)
    store = ofa_embed.extract(scene, tmp_path / "store", model="ofa_test", tile_size=32).store
    tiles = read_tiles(store, ("id", "geometry"))
    points = tiles.to_crs(32633).geometry.centroid.to_crs("OGC:CRS84")
    labels = gpd.GeoDataFrame({"cls": np.where(points.x > points.x.median(), "east", "west")}, geometry=points.values,
                              crs="OGC:CRS84")
    labels.to_file(tmp_path / "labels.gpkg")
    rows = compare([store], tmp_path / "labels.gpkg", "cls", folds=2, n_boot=20, k=3, block_size_m=640)
    baseline = [r for r in rows if r.origin == "band mean + std per tile"]
    assert {r.method for r in baseline} == {"probe", "knn k=3"} and baseline[0].tiles == len(tiles)
    assert baseline[0].store == f"{store} (its scenes)"
    features = band_stats_store(store, tmp_path / "stats")
    (described,) = describe_store(features)
    assert described.dimension == 2 * 13 and described.weights_hash == "band-mean-std"  # mean and std of 13 bands
    scene.rename(tmp_path / "moved.tif")  # the scene gone: no baseline row, the stores' rows as before
    assert not scenes_at_hand(store)
    assert [r for r in compare([store], tmp_path / "labels.gpkg", "cls", folds=2, n_boot=20, k=3, block_size_m=640)
            if r.origin == "band mean + std per tile"] == []
