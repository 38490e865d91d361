"""Chip collections: one tile per chip, batched across files, N chips per store file, labels from folders,
resumable from the store's own files."""

import json

import geopandas as gpd
import numpy as np
import pyarrow.parquet as pq
import pytest
from rasterio.windows import Window
from typer.testing import CliRunner

import ofa_embed
from ofa_embed.cli.main import app
from ofa_embed.embedding.chips import find_chips
from ofa_embed.errors import ModalityError, StoreError, TilingError
from ofa_embed.sample import sample_scene
from ofa_embed.store import read_metadata, read_tiles, store_files
from tests.helpers import cut_tile, write_raster

MODEL = "ofa_test"


@pytest.fixture
def collection(tmp_path):
    """A EuroSAT-like tree of 64 px chips cut from the bundled sample: ``water/`` and ``land/``, 5 chips each,
    one of them 48 x 40 px."""
    root = tmp_path / "chips"
    for label, column in (("water", 0), ("land", 320)):
        (root / label).mkdir(parents=True)
        for i in range(5):
            size = (48, 40) if (label, i) == ("land", 4) else (64, 64)
            cut_tile(sample_scene(), Window(column + 64 * (i % 3), 64 * (i // 3), *size), root / label / f"{label}_{i}.tif")
    return root


def _embeddings(store, order):
    frame = read_tiles(store, ("id", "scene", "label", "path", "padded", "width", "height", "embedding"))
    frame = frame.set_index("scene").loc[order]
    return frame, np.stack(frame["embedding"].to_numpy())


def test_find_chips_names_by_relative_path_and_labels_by_parent_folder(collection, tmp_path):
    chips = find_chips([collection])
    assert len(chips) == 10
    assert {c.label for c in chips} == {"water", "land"}
    assert chips[0].name == "land/land_0" and chips[0].path == collection / "land" / "land_0.tif"
    loose = find_chips([collection / "water" / "water_1.tif"])
    assert loose[0].name == "water_1" and loose[0].label is None
    with pytest.raises(StoreError, match="both named 'water_1'"):
        find_chips([collection / "water" / "water_1.tif", tmp_path / "chips" / "water" / "water_1.tif"])


def test_chips_are_batched_across_files_and_embed_as_each_alone(collection, tmp_path):
    store = tmp_path / "store"
    report = ofa_embed.extract_chips(collection, store, model=MODEL, batch_size=4, chips_per_file=4)
    assert report.chips == 10 and report.tile_size == 64
    assert [p.name for p in store_files(store)] == ["chips-00000.parquet", "chips-00001.parquet", "chips-00002.parquet"]
    assert [pq.ParquetFile(p).metadata.num_rows for p in store_files(store)] == [4, 4, 2]
    names = [c.name for c in find_chips([collection])]
    frame, batched = _embeddings(store, names)
    assert frame.loc["land/land_4", "padded"] and (frame.loc["land/land_4", ["width", "height"]] == [48, 40]).all()
    assert int(frame["padded"].sum()) == 1
    assert (frame["label"].to_numpy() == [n.split("/")[0] for n in names]).all()
    meta = read_metadata(store_files(store)[0])
    assert meta["store_version"] == 2 and meta["chips"]["label_source"] == "parent folder" and "scene" not in meta
    # the same chip extracted alone as a scene (one tile, batch of one) gives the same embedding
    alone = tmp_path / "alone"
    for name in ("land/land_3", "water/water_2"):
        ofa_embed.extract(collection / f"{name}.tif", alone, model=MODEL)
        single = gpd.read_parquet(alone / f"{name.split('/')[1]}.parquet")
        vector = np.asarray(single["embedding"].iloc[0])
        row = batched[names.index(name)]
        assert float(vector @ row / np.linalg.norm(vector) / np.linalg.norm(row)) > 0.9999


def test_a_rerun_embeds_only_the_chips_the_store_lacks(collection, tmp_path):
    store = tmp_path / "store"
    ofa_embed.extract_chips(collection, store, model=MODEL, chips_per_file=4)
    before = {p.name: p.stat().st_mtime_ns for p in store_files(store)}
    (store / "chips-00001.parquet").unlink()  # as if the run had been killed before this file
    report = ofa_embed.extract_chips(collection, store, model=MODEL, chips_per_file=4)
    assert report.chips == 4 and report.skipped_existing == 6
    assert [p.name for p in report.files] == ["chips-00003.parquet"]
    assert (store / "chips-00000.parquet").stat().st_mtime_ns == before["chips-00000.parquet"]
    ids = read_tiles(store)["id"]
    assert len(ids) == 10 and ids.is_unique
    again = ofa_embed.extract_chips(collection, store, model=MODEL)
    assert again.chips == 0 and again.skipped_existing == 10 and not again.files


def test_a_chip_of_another_sensor_or_too_large_stops_the_run_naming_it(collection, tmp_path):
    odd = write_raster(collection / "water" / "water_9.tif", np.full((3, 64, 64), 90, np.uint8),
                       descriptions=["red", "green", "blue"])
    store = tmp_path / "store"
    with pytest.raises(ModalityError, match=f"{odd}: 3 uint8 band"):
        ofa_embed.extract_chips(collection, store, model=MODEL, batch_size=2, chips_per_file=2)
    # what was written before the bad chip is whole and readable
    assert all(read_metadata(p)["chips"]["count"] == 2 for p in store_files(store))
    odd.unlink()
    cut_tile(sample_scene(), Window(0, 0, 80, 80), collection / "water" / "water_9.tif")
    with pytest.raises(TilingError, match="water_9.tif: 80 x 80 px, larger than the collection's 64 px tile"):
        ofa_embed.extract_chips(collection, tmp_path / "other", model=MODEL)


def test_cli_chips_then_probe_on_the_store_label_column(collection, tmp_path):
    store = tmp_path / "store"
    runner = CliRunner()
    result = runner.invoke(app, ["extract", "--chips", str(collection), "--out", str(store), "--model", MODEL])
    assert result.exit_code == 0, result.output
    assert "10 chips embedded" in " ".join(result.output.split())
    # scene files and chip files side by side: SQL sees both, with null chip columns for the scene
    assert runner.invoke(app, ["extract", "--sample", "--out", str(store), "--model", MODEL, "-q"]).exit_code == 0
    sql = runner.invoke(app, ["sql", str(store), "SELECT count(*) AS n, count(label) AS labelled FROM embeddings",
                              "--format", "json"])
    assert sql.exit_code == 0, sql.output
    counts = json.loads(sql.output)[0]
    assert counts["labelled"] == 10 and counts["n"] > 10
    probe = runner.invoke(app, ["probe", str(store), "--target", "label", "--split", "random", "--folds", "2",
                                "--bootstrap", "20", "--json"])
    assert probe.exit_code == 0, probe.output
    assert json.loads(probe.output)["labels"]["tiles"] == 10
    missing = runner.invoke(app, ["probe", str(store), "--target", "crop"])
    assert missing.exit_code != 0 and "no store column 'crop'" in missing.output
