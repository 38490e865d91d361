"""A partitioned store: scene files in hive folders (utm_zone=33N/year=2020/), read by DuckDB, geopandas and
the index as a flat store is."""

import geopandas as gpd
import pytest
from typer.testing import CliRunner

import ofa_embed
from ofa_embed.cli.main import app
from ofa_embed.errors import StoreError
from ofa_embed.sample import sample_scene
from ofa_embed.store import partition_of, store_files
from ofa_embed.store.duck import connect

MODEL = "ofa_test"


def test_partition_values():
    assert partition_of(["utm_zone", "year"], 15.2, 45.0, None) == {"utm_zone": "33N", "year": "unknown"}
    assert partition_of(["utm_zone"], -75.6, -37.7, None) == {"utm_zone": "18S"}
    assert partition_of(["utm_zone"], 179.99, 1.0, None) == {"utm_zone": "60N"}
    assert partition_of(["utm_zone"], -180.0, 1.0, None) == {"utm_zone": "01N"}
    with pytest.raises(StoreError, match="partition key.*month"):
        partition_of(["month"], 0, 0, None)


def test_partitioned_store_reads_in_duckdb_geopandas_and_the_index(tmp_path, s2_tif):
    store = tmp_path / "store"
    ofa_embed.extract([s2_tif, sample_scene()], store, model=MODEL, tile_size=64, partition_by=["utm_zone", "year"])
    names = sorted(p.relative_to(store).as_posix() for p in store_files(store))
    assert names == [f"utm_zone=18N/year=unknown/{sample_scene().stem}.parquet",
                     f"utm_zone=33N/year=2020/{s2_tif.stem}.parquet"]
    # DuckDB prunes on the folders' keys; geopandas reads them as columns
    counts = connect().sql(f"SELECT utm_zone, year, count(*) FROM read_parquet('{store}/**/*.parquet', "
                           "hive_partitioning = true) WHERE utm_zone = '33N' GROUP BY ALL").fetchall()
    assert len(counts) == 1 and counts[0][:2] == ("33N", "2020")
    frame = gpd.read_parquet(store)
    assert set(frame["utm_zone"].astype(str)) == {"18N", "33N"}
    runner = CliRunner()
    sql = runner.invoke(app, ["sql", str(store), "SELECT count(DISTINCT utm_zone) AS zones FROM embeddings", "--format", "csv"])
    assert sql.exit_code == 0 and sql.output.splitlines()[1] == "2"
    assert runner.invoke(app, ["index", str(store), "--shards", "2", "-q"]).exit_code == 0
    hits = ofa_embed.search(store, like_id=frame["id"].iloc[0], k=3)
    assert hits["id"].iloc[0] == frame["id"].iloc[0]
    again = ofa_embed.extract([s2_tif], store, model=MODEL, tile_size=64, partition_by=["utm_zone", "year"])
    assert again.scenes[0].skipped_existing
    moved = ofa_embed.extract([s2_tif], store, model=MODEL, tile_size=64, overwrite=True)  # now unpartitioned
    assert moved.scenes[0].path == store / f"{s2_tif.stem}.parquet" and len(store_files(store)) == 2


def test_mixed_layouts_and_foreign_folders(tmp_path, s2_tif):
    store = tmp_path / "store"
    ofa_embed.extract([s2_tif], store, model=MODEL, tile_size=64, partition_by=["utm_zone"])
    ofa_embed.extract([sample_scene()], store, model=MODEL, tile_size=64)  # flat beside partitioned
    (store / "results").mkdir()
    (store / "results" / "hits.parquet").write_bytes(b"not a store file")  # a user's folder is not the store
    assert sorted(p.relative_to(store).as_posix() for p in store_files(store)) == [
        f"{sample_scene().stem}.parquet", f"utm_zone=33N/{s2_tif.stem}.parquet"]
    sql = CliRunner().invoke(app, ["sql", str(store), "SELECT count(*) AS n FROM embeddings", "--format", "csv"])
    assert sql.exit_code == 0, sql.output
    assert int(sql.output.splitlines()[1]) > 20
