"""``ofa-embed map``: one offline HTML page (and a static image) of a store, search hits and predictions."""

import json
import re
import shutil
import subprocess

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import ofa_embed
from ofa_embed.cli.main import app
from ofa_embed.errors import MapError
from ofa_embed.mapview.colours import PCA
from ofa_embed.sample import sample_scene
from ofa_embed.store import read_tiles

runner = CliRunner()
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory):
    """The bundled sample's 16 tiles, indexed; a search's hits; probe predictions of left/right halves."""
    root = tmp_path_factory.mktemp("map")
    store = root / "store"
    ofa_embed.extract(sample_scene(), store, model="ofa_test")
    assert run("index", store, "-q").exit_code == 0
    tiles = read_tiles(store)
    centre = tiles.geometry.centroid
    hits = root / "hits.parquet"
    assert run("search", store, "--like-id", tiles.id[0], "--k", "5", "--format", "parquet", "--out", hits).exit_code == 0
    labels = root / "labels.csv"
    pd.DataFrame({"id": tiles.id, "side": np.where(centre.x < centre.x.median(), "west", "east")}).to_csv(labels, index=False)
    predictions = root / "predictions.parquet"
    ofa_embed.probe(store, labels, "side", split="random", folds=2, n_boot=10, predict=predictions)
    return {"store": store, "tiles": tiles, "hits": hits, "predictions": predictions, "root": root}


def page_data(path):
    html = path.read_text()
    return html, json.loads(re.search(r'<script id="map-data" type="application/json">(.*?)</script>', html, re.S).group(1))


def test_the_page_is_self_contained_and_deterministic(sample_store, tmp_path):
    first = ofa_embed.map(sample_store["store"], tmp_path / "a.html")
    html, data = page_data(first.out)
    # nothing is fetched: no script/style/font/image by URL, no import, no external reference at all
    assert not re.search(r"<script[^>]+src=|<link|@import|url\(|https?://", html)
    assert first.bytes == first.out.stat().st_size and first.layers == [("store embeddings", 16)]
    layer = data["layers"][0]
    assert layer["count"] == 16 and [f["name"] for f in layer["fields"]] == ["id", "scene", "datetime", "valid_fraction"]
    colours = np.frombuffer(__import__("base64").b64decode(layer["colors"]), np.uint8).reshape(16, 3)
    assert len({tuple(c) for c in colours}) > 8  # principal components spread the tiles over the colour cube
    assert "principal components" in layer["legend"]["text"]
    second = ofa_embed.map(sample_store["store"], tmp_path / "b.html")
    assert second.out.read_text() == html


def test_pca_signs_are_deterministic():
    rng = np.random.default_rng(0)
    sample = rng.normal(size=(200, 6)) * [5, 3, 2, 1, 1, 1]
    pca = PCA(sample)
    flipped = PCA(sample * [-1, 1, -1, 1, 1, 1])
    for components in (pca.components, flipped.components):
        assert (components[np.arange(3), np.abs(components).argmax(axis=1)] > 0).all()
    np.testing.assert_allclose(np.abs(pca.components[:, :3]), np.abs(flipped.components[:, :3]), atol=1e-9)
    assert pca.explained[0] > pca.explained[1] > pca.explained[2] > 0


def test_hits_query_and_predictions_layers(sample_store, tmp_path):
    tiles = sample_store["tiles"]
    report = ofa_embed.map(sample_store["store"], tmp_path / "hits.html", hits=sample_store["hits"], query=tiles.id[0])
    _, data = page_data(report.out)
    assert [(layer["name"], layer["count"]) for layer in data["layers"]] == [
        ("store embeddings", 16), ("search hits", 5), ("query tile", 1)]
    hits = data["layers"][1]
    assert hits["legend"]["type"] == "ramp" and hits["legend"]["high"] == "1"
    assert [f["name"] for f in hits["fields"]][:2] == ["rank", "similarity"]
    assert data["layers"][0]["opacity"] < 1 and data["layers"][2]["outline"]["width"] > 1
    # the query as a raster file: its footprint
    from_file = ofa_embed.map(sample_store["store"], tmp_path / "q.html", query=sample_scene())
    query = page_data(from_file.out)[1]["layers"][1]
    assert query["name"] == "query tile" and query["count"] == 1
    predicted = ofa_embed.map(sample_store["store"], tmp_path / "p.html", predictions=sample_store["predictions"])
    _, data = page_data(predicted.out)
    store_layer, layer = data["layers"]
    assert not store_layer["visible"] and layer["visible"]
    assert {name for name, _ in layer["legend"]["items"]} == {"east", "west"}
    assert [f["name"] for f in layer["fields"]] == ["id", "scene", "prediction", "probability", "label"]


def test_color_by_column_and_bad_inputs(sample_store, tmp_path):
    by_scene = ofa_embed.map(sample_store["store"], tmp_path / "c.html", color="scene")
    assert page_data(by_scene.out)[1]["layers"][0]["legend"]["type"] == "classes"
    by_fraction = ofa_embed.map(sample_store["store"], tmp_path / "v.html", color="valid_fraction")
    assert page_data(by_fraction.out)[1]["layers"][0]["legend"]["type"] == "ramp"
    with pytest.raises(MapError, match="no store column 'crop' to colour by"):
        ofa_embed.map(sample_store["store"], tmp_path / "x.html", color="crop")
    with pytest.raises(MapError, match="no 'similarity' column"):
        ofa_embed.map(sample_store["store"], tmp_path / "x.html", hits=sample_store["predictions"])
    with pytest.raises(MapError, match="neither a file nor the id"):
        ofa_embed.map(sample_store["store"], tmp_path / "x.html", query="0123456789abcdef")
    with pytest.raises(MapError, match="XYZ tile URL template"):
        ofa_embed.map(sample_store["store"], tmp_path / "x.html", basemap="https://example.org/tiles")
    assert not (tmp_path / "x.html").exists()
    result = run("map", sample_store["store"], "--out", tmp_path / "x.html", "--hits", tmp_path / "missing.parquet")
    assert result.exit_code == 1 and "missing.parquet: no such hits file" in result.output


def test_cli_map_with_png(sample_store, tmp_path):
    png = tmp_path / "map.png"
    result = run("map", sample_store["store"], "--out", tmp_path / "map.html", "--hits", sample_store["hits"], "--png", png)
    assert result.exit_code == 0, result.output
    assert "map.html" in result.output and "KiB" in result.output
    image = matplotlib.image.imread(png)[..., :3]
    colours = {tuple(c) for c in np.round(image.reshape(-1, 3) * 255).astype(int)}
    assert len(colours) > 20 and image.std() > 0.05  # tiles drawn, not a blank canvas


@pytest.mark.skipif(BROWSER is None, reason="no chromium on PATH: the browser test needs Debian's chromium "
                                            "(.ci/run installs it with apt-get install chromium)")
def test_headless_browser_draws_the_tiles(sample_store, tmp_path):
    page = ofa_embed.map(sample_store["store"], tmp_path / "map.html").out
    shot = tmp_path / "shot.png"
    base = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=900,700",
            f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    subprocess.run([*base, f"--screenshot={shot}", page.as_uri()], check=True, capture_output=True, timeout=120)
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], check=True, capture_output=True, text=True, timeout=120)
    assert 'data-drawn="16"' in dom.stdout
    image = matplotlib.image.imread(shot)[..., :3]
    # right of the panel, where the fitted tiles are: many colours (the empty map is one flat colour)
    tiles_area = image[100:600, 400:850]
    colours = {tuple(c) for c in np.round(tiles_area.reshape(-1, 3) * 255).astype(int)}
    assert len(colours) > 8, f"{len(colours)} colours where the tiles should be"
