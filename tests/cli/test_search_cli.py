"""End-to-end tests of ``ofa-embed index``, ``search`` and ``sql`` on a store extracted from fixtures."""

import json

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from rasterio.windows import Window
from typer.testing import CliRunner

import ofa_embed
from ofa_embed.cli.main import app
from ofa_embed.model import create_model
from ofa_embed.model.checkpoint import save_checkpoint
from ofa_embed.sqlview import connect_store
from ofa_embed.store import tile_id
from ofa_embed.store.claim import CLAIM_FILE
from ofa_embed.store.duck import connect
from tests.helpers import cut_tile, s2_values, write_raster

runner = CliRunner()
FAST = ["--model", "ofa_test", "--tile-size", "64"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def indexed(tmp_path, s2_tif):
    store = tmp_path / "store"
    assert run("extract", s2_tif, "--out", store, *FAST, "-q").exit_code == 0
    result = run("index", store)
    # 5 x 4 tiles: the last row of the 300 x 260 px scene is 4 px high, below min_valid
    assert result.exit_code == 0 and "flat index, 20 vectors" in " ".join(result.output.split())
    return store


def test_tile_cut_from_the_scene_finds_its_own_row(indexed, s2_tif, tmp_path):
    query = cut_tile(s2_tif, Window(128, 64, 64, 64), tmp_path / "query.tif")
    result = run("search", indexed, "--like", query, "--k", "5", "--format", "csv", "-q")
    assert result.exit_code == 0, result.output
    hits = pd.read_csv(__import__("io").StringIO(result.output))
    assert hits.id[0] == tile_id(s2_tif.stem, 64, 128, 64) and hits.similarity[0] >= 0.99
    table = run("search", indexed, "--like", query, "--k", "3")
    assert table.exit_code == 0 and hits.id[0] in table.output and "similarity" in table.output


def test_like_id_and_like_point_and_filters(indexed, s2_tif, tmp_path):
    frame = gpd.read_parquet(indexed / f"{s2_tif.stem}.parquet")
    target = frame.iloc[7]
    out = tmp_path / "hits.geojson"
    assert run("search", indexed, "--like-id", target.id, "--format", "geojson", "--out", out).exit_code == 0
    hits = gpd.read_file(out)
    assert hits.id[0] == target.id and len(hits) == 10
    lon, lat = target.geometry.centroid.x, target.geometry.centroid.y
    out = tmp_path / "point.parquet"
    assert run("search", indexed, f"--like-point={lon},{lat}", "--k", "3", "--format", "parquet", "--out", out).exit_code == 0
    assert gpd.read_parquet(out).id[0] == target.id
    west = frame.total_bounds[0]
    bbox = f"{west},{frame.total_bounds[1]},{west + 0.001},{frame.total_bounds[3]}"
    result = run("search", indexed, "--like-id", target.id, "--bbox", bbox, "--format", "json")
    rows = json.loads(result.output)
    allowed = frame[frame.xmin <= west + 0.001]
    assert 0 < len(rows) == min(10, len(allowed)) and {r["id"] for r in rows} <= set(allowed.id)
    dated = run("search", indexed, "--like-id", target.id, "--start", "2020-05-18", "--end", "2020-05-18", "--format", "json")
    assert len(json.loads(dated.output)) == 10
    later = run("search", indexed, "--like-id", target.id, "--start", "2020-05-19", "--format", "json")
    assert json.loads(later.output) == []


def test_sql_embed_and_spatial_predicates_offline(indexed, s2_tif, tmp_path):
    query = cut_tile(s2_tif, Window(128, 64, 64, 64), tmp_path / "q.tif")
    top = ofa_embed.sql(
        indexed,
        f"SELECT id, array_cosine_similarity(embedding, embed('{query}')) AS s FROM embeddings ORDER BY s DESC LIMIT 5",
    )
    assert top.id[0] == tile_id(s2_tif.stem, 64, 128, 64) and top.s[0] >= 0.99
    frame = gpd.read_parquet(indexed / f"{s2_tif.stem}.parquet")
    x0, y0, x1, y1 = frame.total_bounds
    polygon = f"POLYGON(({x0} {y0}, {(x0 + x1) / 2} {y0}, {(x0 + x1) / 2} {y1}, {x0} {y1}, {x0} {y0}))"
    inside = ofa_embed.sql(
        indexed, f"SELECT count(*) AS n FROM embeddings WHERE ST_Intersects(geometry, ST_GeomFromText('{polygon}'))"
    )
    expected = frame.intersects(__import__("shapely").from_wkt(polygon)).sum()
    assert 0 < inside.n[0] == expected < len(frame)
    out = tmp_path / "r.csv"
    result = run("sql", indexed, "SELECT id, geometry FROM embeddings LIMIT 2", "--format", "csv", "--out", out)
    assert result.exit_code == 0 and pd.read_csv(out).geometry[0].startswith("POLYGON")
    settings = connect().execute(
        "SELECT current_setting('autoinstall_known_extensions'), current_setting('autoload_known_extensions')"
    ).fetchone()
    assert settings == (False, False)
    loaded = connect().execute("SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'spatial'").fetchone()
    assert loaded == (True,)


def test_update_after_new_scene(indexed, tmp_path):
    other = write_raster(tmp_path / "other.tif", s2_values(128, 128, seed=4))
    assert run("extract", other, "--out", indexed, *FAST, "-q").exit_code == 0
    stale = run("search", indexed, "--like-id", "x")
    assert stale.exit_code == 1 and "--update" in stale.output
    updated = run("index", indexed, "--update")
    assert updated.exit_code == 0 and "24 vectors (4 added)" in " ".join(updated.output.split())
    first = gpd.read_parquet(indexed / "other.parquet").id[0]
    hits = json.loads(run("search", indexed, "--like-id", first, "--scene", "other", "--format", "json").output)
    assert len(hits) == 4 and {h["scene"] for h in hits} == {"other"} and hits[0]["id"] == first


def test_several_positive_and_negative_examples(indexed):
    frame = gpd.read_parquet(next(indexed.glob("*.parquet")))
    vectors = np.stack(frame["embedding"]).astype(np.float64)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    a, b, c = 2, 9, 15
    query = (unit[a] + unit[b]) / 2 - unit[c]
    expected = frame["id"].to_numpy()[np.argsort(-(unit @ (query / np.linalg.norm(query))), kind="stable")]
    result = run("search", indexed, "--like-id", frame.id[a], "--like-id", frame.id[b], "--unlike-id", frame.id[c],
                 "--k", "20", "--format", "json")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)
    assert [h["id"] for h in hits] == list(expected)
    ranks = {h["id"]: i for i, h in enumerate(hits)}
    assert ranks[frame.id[c]] > max(ranks[frame.id[a]], ranks[frame.id[b]])  # the negative below the positives


def first_id(store):
    return gpd.read_parquet(next(store.glob("*.parquet"))).id[0]


def bad_search_cases(indexed, tmp_path):
    five = write_raster(tmp_path / "five.tif", s2_values(64, 64)[:5])
    other = tmp_path / "other.safetensors"
    save_checkpoint(create_model("ofa_test", seed=7), other)
    empty = tmp_path / "empty"
    empty.mkdir()
    return {
        "missing store": (["search", tmp_path / "nope", "--like-id", "x"], "no such store"),
        "empty store": (["search", empty, "--like-id", "x"], "store is empty"),
        "no query": (["search", indexed], "give a query"),
        "cancelling examples": (["search", indexed, "--like-id", first_id(indexed), "--unlike-id", first_id(indexed)],
                                "cancel the positive ones"),
        "unknown id": (["search", indexed, "--like-id", "x"], "no tile with id 'x'"),
        "unknown modality": (["search", indexed, "--like", five], "five.tif: 5 band"),
        "model mismatch": (["search", indexed, "--like", five, "--weights", other], "differ from the store's"),
        "bad bbox": (["search", indexed, "--like-id", "x", "--bbox", "1,2,3"], "--bbox '1,2,3'"),
        "inverted bbox": (["search", indexed, "--like-id", "x", "--bbox", "1,4,3,2"], "min <= max"),
        "bad date": (["search", indexed, "--like-id", "x", "--start", "yesterday"], "--start 'yesterday'"),
        "unregistered modality": (["search", indexed, "--like-id", first_id(indexed), "--modality", "sentinel2"],
                                  "modality 'sentinel2' is not a modality; choose one of sentinel2_l1c"),
        "unknown scene": (["search", indexed, "--like-id", first_id(indexed), "--scene", "S2A_MSIL1C_20200518T101031"],
                          "scene 'S2A_MSIL1C_20200518T101031': no tile of the store is of that scene; did you mean"),
        "longitude 200": (["search", indexed, "--like-id", first_id(indexed), "--bbox", "190,40,200,50"],
                          "longitude outside -180..180"),
        "latitude 100": (["search", indexed, "--like-id", first_id(indexed), "--bbox", "10,80,20,100"],
                         "latitude outside -90..90"),
        "lat,lon bbox": (["search", indexed, "--like-id", first_id(indexed), "--bbox", "44,14,46,16"],
                         "with its longitudes and latitudes swapped it would"),
        "k zero": (["search", indexed, "--like-id", "x", "--k", "0"], "k must be at least 1"),
        "bad kind": (["index", indexed, "--kind", "lsh"], "unknown index kind 'lsh'"),
        "sql error": (["sql", indexed, "SELECT nope FROM embeddings"], 'SQL error: Binder Error: Referenced column "nope"'),
        "sql bad tile": (["sql", indexed, "SELECT embed('missing.tif')"], "missing.tif: no such file"),
    }


@pytest.mark.parametrize("case", ["missing store", "empty store", "no query", "unknown id", "unknown modality",
                                  "model mismatch", "bad bbox", "inverted bbox", "bad date", "k zero", "bad kind",
                                  "unregistered modality", "unknown scene", "longitude 200", "latitude 100",
                                  "lat,lon bbox",
                                  "sql error", "sql bad tile"])
def test_bad_search_input_gives_one_line(indexed, tmp_path, case):
    args, message = bad_search_cases(indexed, tmp_path)[case]
    result = run(*args)
    assert result.exit_code == 1, result.output
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output


def test_a_query_tile_that_names_nothing_is_read_as_its_store_was(tmp_path):
    # Landsat digital numbers for B2, B3, B4 in a uint16 file with no band names or sensor tags: only the
    # extraction's --modality/--bands say what it is, and the store records them
    values = (s2_values(192, 192)[[1, 2, 3]].astype(np.float32) * 0.8 + 6000).astype(np.uint16)
    scene = write_raster(tmp_path / "export.tif", values, res=30.0)
    store = tmp_path / "store"
    made = run("extract", scene, "--out", store, "--modality", "landsat_oli", "--bands", "B2,B3,B4", *FAST, "-q")
    assert made.exit_code == 0, made.output
    assert run("index", store).exit_code == 0
    query = cut_tile(scene, Window(64, 0, 64, 64), tmp_path / "q.tif")
    result = run("search", store, "--like", query, "--k", "3", "--format", "csv")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "q.tif names no bands: read as the store's landsat_oli bands B2,B3,B4 (uint16" in said
    hits = pd.read_csv(__import__("io").StringIO(result.output[result.output.index("rank,id"):]))
    assert hits.id[0] == tile_id(scene.stem, 0, 64, 64) and hits.similarity[0] >= 0.99
    top = ofa_embed.sql(store, f"SELECT id FROM embeddings ORDER BY array_cosine_similarity(embedding, embed('{query}')) "
                               "DESC LIMIT 1")
    assert top.id[0] == hits.id[0]
    # the long form says what the file is; NULL bands leave them to the file (here: to the store's record)
    named = ofa_embed.sql(store, f"SELECT embed('{query}') AS a, embed('{query}', 'landsat_oli', 'B2,B3,B4') AS b, "
                                 f"embed('{query}', NULL, NULL) AS c")
    np.testing.assert_allclose(named.a[0], named.b[0], atol=1e-6)
    np.testing.assert_allclose(named.a[0], named.c[0], atol=1e-6)
    swapped = ofa_embed.sql(store, f"SELECT array_cosine_similarity(embed('{query}'), "
                                   f"embed('{query}', 'landsat_oli', 'B4,B3,B2')) AS s")
    assert swapped.s[0] < 0.9999  # the bands given are the bands read
    # a file contradicting the record (another data type) is detected as any file is, and refused here
    other = write_raster(tmp_path / "q32.tif", np.asarray(values[:, :64, :64], np.float32))
    refused = run("search", store, "--like", other, "-q")
    assert refused.exit_code == 1 and "q32.tif" in refused.output


def test_sql_is_read_only_unless_told_and_never_writes_inside_the_store(indexed, tmp_path):
    copy_in = f"COPY (SELECT * FROM embeddings) TO '{indexed / 'x.parquet'}'"
    refused = run("sql", indexed, copy_in)
    assert refused.exit_code == 1 and "COPY statements are not run" in " ".join(refused.output.split())
    inside = run("sql", indexed, copy_in, "--allow-writes")
    assert inside.exit_code == 1 and "never write inside the store" in " ".join(inside.output.split())
    assert not (indexed / "x.parquet").exists()
    for statement in (f"ATTACH '{tmp_path / 'a.db'}'", "CREATE TABLE t AS SELECT 1", "SET enable_external_access = true"):
        assert run("sql", indexed, statement).exit_code == 1
    # DuckDB's own settings refuse what a query reads or writes outside the store, with USE_TMP_FILE or not
    other = tmp_path / "labels.csv"
    other.write_text("id,label\na,1\n")
    read = run("sql", indexed, f"SELECT * FROM read_csv('{other}')")
    assert read.exit_code == 1 and "--read PATH" in " ".join(read.output.split())
    assert run("sql", indexed, f"SELECT count(*) AS n FROM read_csv('{other}')", "--read", other, "--format", "csv").output \
        .split() == ["n", "1"]
    with pytest.raises(duckdb.PermissionException, match="disabled by configuration"):
        connect_store(indexed).execute(f"COPY (SELECT 1) TO '{tmp_path / 'y.csv'}'")
    out = tmp_path / "ids.csv"
    written = run("sql", indexed, f"COPY (SELECT id FROM embeddings) TO '{out}'", "--allow-writes")
    assert written.exit_code == 0, written.output
    assert len(pd.read_csv(out)) == 20 and sorted(p.name for p in indexed.iterdir() if p.is_file()) == sorted(
        [CLAIM_FILE, *(p.name for p in indexed.glob("*.parquet"))])
