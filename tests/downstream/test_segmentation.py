"""Segmentation probes on embedding fields: labels rasterised on the field grid, blocked CV, IoU, class COGs."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely

import ofa_embed
from ofa_embed.downstream.segmentation import intersection_over_union, predict_fields, segment
from ofa_embed.errors import LabelError, StoreError
from ofa_embed.sensors import get_modality
from tests.helpers import ORIGIN, s2_values, write_raster

FAST = {"model": "ofa_test", "tile_size": 64, "precision": "fp32"}


def two_cover_scene(tmp_path):
    """A 256 x 256 px scene: the left half one land cover, the right half another (water-like: dark NIR/SWIR)."""
    values = s2_values(256, 256).astype(np.float32)
    values[:, :, 128:] *= np.linspace(1.6, 0.2, 13)[:, None, None]
    tif = write_raster(tmp_path / "S2A_MSIL1C_20200518T101031_seg.tif", values.clip(1, 20000).astype(np.uint16),
                       descriptions=get_modality("sentinel2_l1c").band_names)
    x0, y1 = ORIGIN
    labels = gpd.GeoDataFrame({"cover": ["land", "water"]}, geometry=[
        shapely.box(x0, y1 - 2560, x0 + 1280, y1), shapely.box(x0 + 1280, y1 - 2560, x0 + 2560, y1)], crs="EPSG:32633")
    path = tmp_path / "labels.gpkg"
    labels.to_file(path)
    return tif, path


def test_iou_of_a_confusion_matrix():
    iou = intersection_over_union(np.array([[3, 1], [0, 4]]))
    np.testing.assert_allclose(iou, [3 / 4, 4 / 5])


def test_segmentation_probe_on_a_field(tmp_path):
    tif, labels = two_cover_scene(tmp_path)
    store = tmp_path / "store"
    ofa_embed.extract(tif, store, dense=True, **FAST)
    report = segment(store, labels, "cover", folds=2, block_size_m=640, predict=tmp_path / "pred",
                     save=tmp_path / "probe.json", n_boot=100)
    assert report.pixels == 16 * 16 and report.classes == ["land", "water"]
    assert report.miou.value > 0.9 and report.miou.low <= report.miou.value <= report.miou.high
    assert report.confusion.sum() == 256 and set(report.iou) == {"land", "water"}
    assert "spatial-block" in report.split and json.dumps(report.to_dict())
    with rasterio.open(report.predictions[0]) as src:
        classes = json.loads(src.tags()["OFA_EMBED_CLASSES"])
        codes = src.read(1)
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and src.transform.a == 160
    assert classes == ["land", "water"]
    assert (codes[:, :7] == 0).mean() > 0.9 and (codes[:, 9:] == 1).mean() > 0.9
    again = predict_fields(store, tmp_path / "probe.json", tmp_path / "again")
    with rasterio.open(again[0]) as src:
        assert np.array_equal(src.read(1), codes)


def test_segmentation_bad_input_is_one_line(tmp_path, s2_tif):
    tif, labels = two_cover_scene(tmp_path)
    store = tmp_path / "store"
    ofa_embed.extract(s2_tif, store, **FAST)
    with pytest.raises(StoreError, match="holds no embedding fields; extract with --dense"):
        segment(store, labels, "cover")
    ofa_embed.extract(tif, store, dense=True, **FAST)
    far = gpd.GeoDataFrame({"cover": ["a"]}, geometry=[shapely.box(0, 0, 1, 1)], crs="EPSG:4326")
    far.to_file(tmp_path / "far.gpkg")
    with pytest.raises(LabelError, match="no label covers a valid pixel"):
        segment(store, tmp_path / "far.gpkg", "cover")


def test_probe_dense_command(tmp_path):
    from typer.testing import CliRunner

    from ofa_embed.cli.main import app

    tif, labels = two_cover_scene(tmp_path)
    store = tmp_path / "store"
    ofa_embed.extract(tif, store, dense=True, **FAST)
    result = CliRunner().invoke(app, ["probe", str(store), "--labels", str(labels), "--target", "cover", "--dense",
                                      "--folds", "2", "--block-size", "640", "--bootstrap", "50", "--json",
                                      "--predict", str(tmp_path / "pred")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["miou"]["value"] > 0.9 and report["predictions"]
    bad = CliRunner().invoke(app, ["probe", str(tmp_path / "nothing"), "--labels", str(labels), "--target", "cover",
                                   "--dense"])
    assert bad.exit_code == 1 and "holds no embedding fields" in bad.output


def test_knn_segmentation_on_the_same_folds_and_its_command(tmp_path):
    from typer.testing import CliRunner

    from ofa_embed.cli.main import app
    from ofa_embed.errors import ConfigError

    tif, labels = two_cover_scene(tmp_path)
    store = tmp_path / "store"
    ofa_embed.extract(tif, store, dense=True, **FAST)
    report = segment(store, labels, "cover", folds=2, block_size_m=640, predict=tmp_path / "pred", n_boot=50,
                     method="knn", k=5)
    probe = segment(store, labels, "cover", folds=2, block_size_m=640, n_boot=50)
    assert report.method == "knn" and report.k == 5 and report.model is None
    assert report.split == probe.split and report.pixels == probe.pixels == 256
    assert report.miou.value > 0.9 and report.confusion.sum() == 256
    with rasterio.open(report.predictions[0]) as src:
        codes = src.read(1)
        assert json.loads(src.tags()["OFA_EMBED_CLASSES"]) == ["land", "water"]
    assert (codes[:, :7] == 0).mean() > 0.9 and (codes[:, 9:] == 1).mean() > 0.9
    with pytest.raises(ConfigError, match="a kNN keeps its labelled pixels"):
        segment(store, labels, "cover", method="knn", save=tmp_path / "p.json")
    result = CliRunner().invoke(app, ["knn", str(store), "--labels", str(labels), "--target", "cover", "--dense",
                                      "--k", "3", "--folds", "2", "--block-size", "640", "--bootstrap", "20", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["method"] == "knn" and json.loads(result.stdout)["k"] == 3
    text = CliRunner().invoke(app, ["knn", str(store), "--labels", str(labels), "--target", "cover", "--dense",
                                    "--folds", "2", "--block-size", "640", "--bootstrap", "20"])
    assert text.exit_code == 0 and "segmentation by kNN (k = 10)" in text.output
