"""Labels, splits, linear probes, kNN and predictions over a store extracted from a fixture scene.

The fixture scene is a 320 x 320 px Sentinel-2 L1C raster cut into 100 tiles of 32 px; each tile is
randomly "water" (near-infrared and short-wave bands darkened to a fifth) or "land", so the label is a
known function of the tile's content and independent of its position.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from sklearn.metrics import accuracy_score, f1_score
from typer.testing import CliRunner

import ofa_embed
from ofa_embed import indexes
from ofa_embed.cli.main import app
from ofa_embed.downstream import ProbeModel, evaluate, join_labels, make_split, read_labels
from ofa_embed.downstream.knn import flat_search, knn_vote, store_search
from ofa_embed.errors import ConfigError, LabelError
from ofa_embed.sensors import get_modality
from ofa_embed.store import read_embeddings, read_tiles
from ofa_embed.store.duck import connect
from tests.helpers import ORIGIN, UTM33, s2_values, write_raster

TILE, SIDE, RES = 32, 10, 10.0
DARK_BANDS = ("B08", "B8A", "B09", "B10", "B11", "B12")
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def tile_classes(seed: int = 1) -> np.ndarray:
    """``(SIDE, SIDE)`` 0 = land, 1 = water, balanced and spatially random."""
    return np.random.default_rng(seed).permutation(np.arange(SIDE * SIDE) % 2).reshape(SIDE, SIDE)


def tile_centre(row: int, col: int) -> tuple[float, float]:
    return ORIGIN[0] + (col + 0.5) * TILE * RES, ORIGIN[1] - (row + 0.5) * TILE * RES


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("downstream")
    data = s2_values(SIDE * TILE, SIDE * TILE, seed=3).astype(np.float64)
    names = get_modality("sentinel2_l1c").band_names
    water = np.kron(tile_classes(), np.ones((TILE, TILE))).astype(bool)
    for band in DARK_BANDS:
        data[names.index(band)][water] *= 0.2
    scene = write_raster(folder / "S2A_MSIL1C_20200518T101031_fixture.tif", data.astype(np.uint16), descriptions=names)
    out = folder / "store"
    ofa_embed.extract(scene, out, model="ofa_test", tile_size=TILE, batch_size=50)
    return out


@pytest.fixture(scope="module")
def point_labels(store, tmp_path_factory):
    """One point per tile centre, labelled by its class, written in Web Mercator (not the store's CRS)."""
    classes = tile_classes()
    rows, cols = np.divmod(np.arange(SIDE * SIDE), SIDE)
    points = gpd.GeoDataFrame(
        {"cover": np.where(classes[rows, cols] == 1, "water", "land"),
         "brightness": np.where(classes[rows, cols] == 1, 0.2, 1.0) + 0.01 * cols, "zone": cols // 2},
        geometry=[shapely.Point(*tile_centre(r, c)) for r, c in zip(rows, cols, strict=True)], crs=UTM33,
    ).to_crs("EPSG:3857")
    path = tmp_path_factory.mktemp("labels") / "points.gpkg"
    points.to_file(path)
    return path


def test_probe_learns_content_and_shuffled_labels_fall_to_chance(store, point_labels, tmp_path):
    report = ofa_embed.probe(store, point_labels, "cover", n_boot=200)
    assert report.split.kind == "spatial-block" and report.split.k == 5
    assert len(report.labels.tiles) == 100 and report.labels.matched == 100
    accuracy = report.evaluation.metrics["accuracy"]
    assert accuracy.value >= 0.9 and accuracy.low <= accuracy.value <= accuracy.high

    shuffled = gpd.read_file(point_labels)
    shuffled["cover"] = np.random.default_rng(7).permutation(shuffled["cover"].to_numpy())
    shuffled.to_file(tmp_path / "shuffled.gpkg")
    chance = ofa_embed.probe(store, tmp_path / "shuffled.gpkg", "cover", n_boot=200)
    assert chance.evaluation.metrics["accuracy"].value < 0.7


def test_knn_and_regression_probe_on_the_same_labels(store, point_labels):
    report = ofa_embed.knn(store, point_labels, "cover", k=5, n_boot=0)
    assert report.evaluation.metrics["macro_f1"].value >= 0.85 and report.model is None  # chance: 0.5
    regress = ofa_embed.probe(store, point_labels, "brightness", task="regress", n_boot=100)
    assert regress.evaluation.metrics["r2"].value >= 0.8


def test_spatial_block_split_keeps_blocks_whole(store, point_labels):
    report = ofa_embed.probe(store, point_labels, "cover", n_boot=0, block_size_m=640.0)
    split = report.split
    assert split.block_size_m == 640.0 and len(np.unique(split.groups)) == 25  # 3.2 km scene, 0.64 km blocks
    for block in np.unique(split.groups):
        assert len(np.unique(split.folds[split.groups == block])) == 1
    # the folds of the out-of-fold table are the split's, and every labelled tile was tested once
    assert (report.out_of_fold["fold"].to_numpy() == split.folds).all() and report.evaluation.samples == 100
    random = make_split("random", report.labels.tiles.geometry, 5)
    assert np.bincount(random.folds).tolist() == [20] * 5 and not random.grouped
    by_zone = ofa_embed.probe(store, point_labels, "cover", split="zone", n_boot=0).split
    assert by_zone.kind == "column:zone" and len(np.unique(by_zone.groups)) == 5
    assert all(len(np.unique(by_zone.folds[by_zone.groups == g])) == 1 for g in range(5))
    with pytest.raises(ConfigError, match="only 1 groups for 5 folds"):
        ofa_embed.probe(store, point_labels, "cover", split="scene")  # a store column: one scene


def test_knn_through_the_index_equals_brute_force(store, point_labels, tmp_path):
    store = Path(shutil.copytree(store, tmp_path / "indexed"))  # the module's store stays without an index
    indexes.build(store, kind="hnsw")
    tiles = read_tiles(store)
    join = join_labels(read_labels(point_labels, "cover"), tiles, "cover", "classify")
    vectors = read_embeddings(store, join.positions)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    train, test = np.arange(0, 100, 2)[5:], np.arange(1, 100, 2)
    expected = np.argsort(-(unit[test] @ unit[train].T), axis=1, kind="stable")[:, :7]
    for search in (store_search(indexes.open(store), join.positions), flat_search(vectors)):
        similarities, neighbours = search(vectors[test], train, 7)
        np.testing.assert_allclose(similarities, np.take_along_axis(unit[test] @ unit[train].T, expected, 1), atol=1e-5)
        assert (neighbours == expected).mean() > 0.98  # float ties may swap equal neighbours
        vote = knn_vote(similarities, neighbours, join.targets[train], "classify", join.classes)
        brute = [pd.Series(join.targets[train][row]).value_counts().idxmax() for row in expected]
        assert (vote.predicted == np.array(brute, dtype=object)).mean() > 0.95
    report = ofa_embed.knn(store, point_labels, "cover", k=5, n_boot=0)
    assert report.method == "kNN (k=5, store hnsw index)"


def test_predictions_round_trip_through_geopandas_and_duckdb(store, point_labels, tmp_path):
    out, probe_file, plots = tmp_path / "pred.parquet", tmp_path / "probe.json", tmp_path / "plots"
    result = run("probe", store, "--labels", point_labels, "--target", "cover", "--predict", out, "--save", probe_file,
                 "--plot", plots, "--bootstrap", "50", "-q")
    assert result.exit_code == 0, result.output
    assert "spatial-block" in result.output and "macro_f1" in result.output and "confusion" in result.output
    frame = gpd.read_parquet(out)
    assert len(frame) == 100 and frame.crs.equals("OGC:CRS84")
    np.testing.assert_allclose(frame[["prob_land", "prob_water"]].sum(axis=1), 1.0, atol=1e-5)
    assert (frame["prediction"] == frame["label"]).mean() >= 0.9
    con = connect()
    count, inside = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE ST_Within(ST_Centroid(geometry), ST_MakeEnvelope(xmin, ymin, xmax, ymax)))"
        f" FROM read_parquet('{out}')"
    ).fetchone()
    assert count == inside == 100
    probe = ProbeModel.load(probe_file)
    embeddings = read_embeddings(store, np.arange(100))
    ids = read_tiles(store)["id"].to_numpy()
    by_id = frame.set_index("id").loc[ids]
    assert (probe.predict(embeddings) == by_id["prediction"].to_numpy()).all()
    assert {p.name for p in plots.iterdir()} == {"confusion.png", "map.png"}


def test_knn_predictions_never_vote_for_the_tile_itself(store, point_labels, tmp_path):
    report = ofa_embed.knn(store, point_labels, "cover", k=1, n_boot=0, predict=tmp_path / "knn.parquet")
    frame = gpd.read_parquet(tmp_path / "knn.parquet").set_index("id")
    join = report.labels
    unit = read_embeddings(store, join.positions)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    nearest_other = join.targets[similarity.argmax(axis=1)]
    assert (frame.loc[join.tiles["id"], "prediction"].to_numpy() == nearest_other).all()


def test_json_output_and_multilabel(store, point_labels):
    result = run("probe", store, "--labels", point_labels, "--target", "cover", "--json", "--bootstrap", "0",
                 "--split", "random")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    assert report["evaluation"]["metrics"]["accuracy"]["low"] is None  # no bootstrap: no interval
    assert report["split"]["kind"] == "random" and report["evaluation"]["metrics"]["accuracy"]["value"] >= 0.9
    multi = ofa_embed.probe(store, point_labels, "cover", task="multilabel", n_boot=20)
    assert set(multi.evaluation.metrics) == {"micro_f1", "macro_f1", "micro_map", "macro_map"}
    assert multi.evaluation.metrics["micro_map"].value >= 0.9


def grid_tiles(n: int = 3) -> gpd.GeoDataFrame:
    """n x n tiles of 0.01 degree from (0, 0), ids ``t<row><col>``."""
    boxes = [(r, c, shapely.box(0.01 * c, -0.01 * (r + 1), 0.01 * (c + 1), -0.01 * r)) for r in range(n) for c in range(n)]
    return gpd.GeoDataFrame({"id": [f"t{r}{c}" for r, c, _ in boxes], "scene": "s", "position": np.arange(n * n)},
                            geometry=[b for *_, b in boxes], crs="OGC:CRS84")


def test_join_points_polygons_and_ids():
    tiles = grid_tiles()
    points = gpd.GeoDataFrame({"y": ["a", "a", "b", "c", "b", None]}, crs="OGC:CRS84", geometry=[
        shapely.Point(0.005, -0.005), shapely.Point(0.006, -0.004), shapely.Point(0.004, -0.006),  # tile t00: a, a, b
        shapely.Point(0.015, -0.005), shapely.Point(5, 5), shapely.Point(0.025, -0.025)])
    join = join_labels(points, tiles, "y", "classify")
    assert dict(zip(join.tiles["id"], join.targets, strict=True)) == {"t00": "a", "t01": "c"}
    assert join.unmatched["outside every tile"] == 1 and join.unmatched["no target value"] == 1
    assert join.matched == 3 and join.unmatched["tied with another class"] == 0

    polygons = gpd.GeoDataFrame({"y": ["a", "b", "c"], "v": [1.0, 3.0, 5.0]}, crs="OGC:CRS84", geometry=[
        shapely.box(0.0, -0.01, 0.006, 0.0),  # 60 % of t00
        shapely.box(0.006, -0.01, 0.01, 0.0),  # 40 % of t00
        shapely.box(0.02, -0.03, 0.024, -0.02)])  # 40 % of t22 only
    join = join_labels(polygons, tiles, "y", "classify")
    assert dict(zip(join.tiles["id"], join.targets, strict=True)) == {"t00": "a"}
    assert join.unmatched["below --min-overlap in every tile"] == 2
    assert dict(zip(join.tiles["id"], join.targets.tolist(), strict=True)) == {"t00": "a"}
    loose = join_labels(polygons, tiles, "y", "multilabel", min_overlap=0.3)
    assert loose.classes == ["a", "b", "c"]
    assert dict(zip(loose.tiles["id"], map(tuple, loose.targets), strict=True)) == {"t00": (1, 1, 0), "t22": (0, 0, 1)}
    regress = join_labels(polygons, tiles, "v", "regress", min_overlap=0.3)
    assert dict(zip(regress.tiles["id"], regress.targets, strict=True)) == pytest.approx({"t00": 0.6 * 1 + 0.4 * 3, "t22": 5.0})

    bow_tie = gpd.GeoDataFrame({"y": ["a"]}, crs="OGC:CRS84",  # self-intersecting: repaired, not refused
                               geometry=[shapely.Polygon([(0, 0), (0.01, -0.01), (0.01, 0), (0, -0.01)])])
    assert join_labels(bow_tie, tiles, "y", "multilabel").tiles["id"].tolist() == ["t00"]

    tie = gpd.GeoDataFrame({"y": ["a", "b"]}, crs="OGC:CRS84",
                           geometry=[shapely.Point(0.015, -0.015), shapely.Point(0.016, -0.016)])
    with pytest.raises(LabelError, match="no label matched.*2 tied with another class"):
        join_labels(tie, tiles, "y", "classify")

    table = pd.DataFrame({"id": ["t11", "t12", "nope"], "y": ["a", "b", "a"]})
    join = join_labels(table, tiles, "y", "classify")
    assert dict(zip(join.tiles["id"], join.targets, strict=True)) == {"t11": "a", "t12": "b"} and join.kind == "ids"
    assert join.unmatched["id not in the store"] == 1


def test_metrics_agree_with_sklearn_and_block_bootstrap_is_wider():
    rng = np.random.default_rng(0)
    truth = rng.choice(["a", "b", "c"], 400)
    predicted = np.where(rng.random(400) < 0.8, truth, rng.choice(["a", "b", "c"], 400))
    plain = evaluate("classify", truth, predicted, n_boot=300)
    assert plain.metrics["accuracy"].value == pytest.approx(accuracy_score(truth, predicted))
    assert plain.metrics["macro_f1"].value == pytest.approx(f1_score(truth, predicted, average="macro"))
    assert plain.confusion.sum() == 400 and plain.confusion.trace() == (truth == predicted).sum()
    # errors that come in whole blocks of 40: the block bootstrap sees 10 units, not 400
    blocks = np.repeat(np.arange(10), 40)
    clustered = np.where(np.isin(blocks, [0, 1]), np.roll(truth, 1), truth)
    tiles = evaluate("classify", truth, clustered, n_boot=300)
    by_block = evaluate("classify", truth, clustered, groups=blocks, n_boot=300)
    width = lambda e: e.metrics["accuracy"].high - e.metrics["accuracy"].low  # noqa: E731
    assert width(by_block) > 2 * width(tiles)


def test_fold_assignment_needs_enough_groups():
    with pytest.raises(ConfigError, match="only 4 groups for 5 folds"):
        make_split("spatial-block", grid_tiles().geometry, 5, block_size_m=1500.0)


@pytest.mark.parametrize(("labels", "extra", "message"), [
    ("missing.gpkg", [], "no such labels file"),
    ("garbage.gpkg", [], "not a readable labels file"),
    ("points.gpkg", ["--target", "nope"], "no column 'nope'"),
    ("far.gpkg", [], "no label matched a tile"),
    ("single.gpkg", [], "at least two classes"),
    ("points.gpkg", ["--folds", "200"], "fewer than --folds 200"),
    ("nocrs.shp", [], "have no CRS"),
    ("points.gpkg", ["--predict", "/nonexistent-dir/pred.parquet"], "cannot write"),
])
def test_bad_labels_give_one_line_and_exit_1(store, point_labels, tmp_path, labels, extra, message):
    good = gpd.read_file(point_labels)
    writers = {
        "garbage.gpkg": lambda path: path.write_bytes(b"not a geopackage at all"),
        "far.gpkg": lambda path: good.assign(geometry=good.geometry.translate(1e6, 1e6)).to_file(path),
        "single.gpkg": lambda path: good.assign(cover="land").to_file(path),
        "points.gpkg": good.to_file,
        "nocrs.shp": lambda path: good.set_crs(None, allow_override=True).to_file(path),  # a shapefile without .prj
    }
    if labels in writers:
        writers[labels](tmp_path / labels)
    options = ["--target", "cover"] if "--target" not in extra else []
    result = run("probe", store, "--labels", tmp_path / labels, *options, *extra, "-q")
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output


def test_knn_refuses_a_single_class_too(store, point_labels, tmp_path):
    gpd.read_file(point_labels).assign(cover="land").to_file(tmp_path / "single.gpkg")
    result = run("knn", store, "--labels", tmp_path / "single.gpkg", "--target", "cover", "-q")
    assert result.exit_code == 1 and "a classifier needs at least two classes" in result.output


def test_average_precision_matches_sklearn_with_ties_and_weights():
    from sklearn.metrics import average_precision_score

    from ofa_embed.downstream.metrics import average_precision

    rng = np.random.default_rng(3)
    truth = rng.random((300, 5)) < 0.3
    scores = np.round(np.clip(truth + rng.normal(0, 0.6, truth.shape), 0, 1), 1)  # rounded: many ties
    weights = rng.integers(0, 4, 300).astype(float)
    expected = [average_precision_score(truth[:, j], scores[:, j], sample_weight=weights) for j in range(5)]
    np.testing.assert_allclose(average_precision(truth, scores, weights), expected, atol=1e-12)


def test_a_saved_probe_predicts_another_store_of_the_same_model(store, point_labels, tmp_path):
    probe_file = tmp_path / "probe.json"
    ofa_embed.probe(store, point_labels, "cover", n_boot=0, save=probe_file)
    result = run("predict", store, "--probe", probe_file, "--out", tmp_path / "again.parquet", "-q")
    assert result.exit_code == 0, result.output
    frame = gpd.read_parquet(tmp_path / "again.parquet")
    assert len(frame) == 100 and frame["label"].isna().all() and set(frame["prediction"]) <= {"land", "water"}

    other = json.loads(probe_file.read_text()) | {"weights_hash": "0123456789abcdef"}
    (tmp_path / "other.json").write_text(json.dumps(other))
    result = run("predict", store, "--probe", tmp_path / "other.json", "--out", tmp_path / "no.parquet", "-q")
    assert result.exit_code == 1 and "fitted on embeddings of weights 0123456789abcdef" in result.output
    assert not (tmp_path / "no.parquet").exists()


def test_a_probe_of_few_labels_a_class_falls_back_to_grouped_inner_folds():
    from ofa_embed.downstream.probe import fit_probe

    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(i, 0.1, (3, 4)) for i in range(3)])
    targets = np.repeat(["a", "b", "c"], 3)  # every class has fewer members than the inner folds
    model = fit_probe(features, targets, "classify", groups=np.arange(9))
    assert model.regularisation > 0
