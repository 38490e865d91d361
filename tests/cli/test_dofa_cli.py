"""A published-layout DOFA file through every command: extract, search --like, sql embed(), probe."""

import json

import geopandas as gpd
import pandas as pd
import pytest
from rasterio.windows import Window
from typer.testing import CliRunner

import ofa_embed
from ofa_embed.cli.main import app
from ofa_embed.sensors import get_modality
from ofa_embed.store import read_metadata, tile_id
from tests.helpers import cut_tile, published_dofa_file, s2_values, write_raster

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def s2_tif_module(tmp_path_factory):
    return write_raster(tmp_path_factory.mktemp("scene") / "S2A_MSIL1C_20200518T101031_test.tif", s2_values(260, 300),
                        descriptions=get_modality("sentinel2_l1c").band_names)


@pytest.fixture(scope="module")
def dofa_store(tmp_path_factory, s2_tif_module):
    folder = tmp_path_factory.mktemp("dofa")
    weights = published_dofa_file(folder / "dofa_small_patch16_224-random.pth")
    store = folder / "store"
    result = run("extract", s2_tif_module, "--out", store, "--weights", weights, "--weights-layout", "bands_first",
                 "--tile-size", "64", "-q")
    assert result.exit_code == 0, result.output
    assert run("index", store).exit_code == 0
    return store, weights


def test_the_store_records_the_model_and_its_exact_input(dofa_store, s2_tif_module):
    store, weights = dofa_store
    meta = read_metadata(store / f"{s2_tif_module.stem}.parquet")
    assert meta["model"]["config"]["family"] == "dofa" and meta["model"]["weights_source"] == str(weights)
    fed = meta["model_input"]
    # the L1C fixture has all 13 bands: DOFA's training wavelengths where it has them, centres elsewhere
    assert fed["bands"][11:] == ["B11", "B12"] and fed["wavelengths_um"][11:] == [1.61, 2.19]
    assert fed["wavelengths_um"][10] == pytest.approx(1.3735) and fed["scale"][0] == 1e-4
    assert len(fed["mean"]) == len(fed["std"]) == 13


def test_search_like_sql_embed_and_probe_use_the_dofa_weights(dofa_store, s2_tif_module, tmp_path):
    store, _ = dofa_store
    query = cut_tile(s2_tif_module, Window(128, 64, 64, 64), tmp_path / "q.tif")
    result = run("search", store, "--like", query, "--k", "3", "--format", "json")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)
    assert hits[0]["id"] == tile_id(s2_tif_module.stem, 64, 128, 64) and hits[0]["similarity"] >= 0.99
    top = ofa_embed.sql(store, f"SELECT id, array_cosine_similarity(embedding, embed('{query}')) AS s FROM embeddings "
                               "ORDER BY s DESC LIMIT 1")
    assert top.id[0] == hits[0]["id"]
    frame = gpd.read_parquet(store / f"{s2_tif_module.stem}.parquet")
    labels = pd.DataFrame({"id": frame.id, "half": (frame.row < frame.row.median()).map({True: "top", False: "bottom"})})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    probe = run("probe", store, "--labels", tmp_path / "labels.csv", "--target", "half", "--split", "random",
                "--folds", "3", "--json")
    assert probe.exit_code == 0, probe.output
