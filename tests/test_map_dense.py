"""``ofa-embed map --classes/--change``: a segmentation's class COGs and a change ranking drawn on the page."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

import ofa_embed
from ofa_embed.change import change
from ofa_embed.cli.main import app
from ofa_embed.downstream.segmentation import segment
from ofa_embed.errors import MapError
from tests.downstream.test_segmentation import two_cover_scene
from tests.helpers import s2_values, write_raster
from tests.test_change import FAST, NAMES

runner = CliRunner()


def layers_of(path):
    html = path.read_text()
    data = json.loads(re.search(r'<script id="map-data" type="application/json">(.*?)</script>', html, re.S).group(1))
    return {layer["name"]: layer for layer in data["layers"]}


def colours(layer):
    return np.frombuffer(base64.b64decode(layer["colors"]), np.uint8).reshape(layer["count"], 3)


@pytest.fixture(scope="module")
def change_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("mapchange")
    values = s2_values(256, 256)
    before = write_raster(root / "S2A_MSIL1C_20200518T101031_x.tif", values, descriptions=NAMES)
    changed = values.astype(np.float32)
    changed[:, :128, 128:] *= np.linspace(1.6, 0.2, 13)[:, None, None]
    after = write_raster(root / "S2A_MSIL1C_20200618T101031_x.tif", changed.clip(1, 20000).astype(np.uint16),
                         descriptions=NAMES)
    store = root / "store"
    ofa_embed.extract([before, after], store, dense=True, **FAST)
    report = change(store, before.stem, after.stem, out=root / "change.parquet")
    return store, report


def test_the_change_ranking_and_its_pixels_are_drawn_most_changed_brightest(change_run, tmp_path):
    store, report = change_run
    out = ofa_embed.map(store, tmp_path / "map.html", change=report.out, png=tmp_path / "map.png")
    layers = layers_of(out.out)
    tiles = layers["change (tiles)"]
    assert tiles["count"] == 16 and tiles["legend"]["type"] == "ramp"
    names = [f["name"] for f in tiles["fields"]]
    assert names[:2] == ["rank", "cosine_distance"] and "partial" in names
    brightness = colours(tiles).astype(int).sum(1)
    assert brightness[:4].min() > brightness[4:].max()  # drawn in rank order: the 4 changed tiles brightest
    (pixel_name,) = [n for n in layers if n.startswith("change pixels")]
    pixels = layers[pixel_name]
    assert pixels["count"] == 16 * 16 and not pixels["visible"]
    assert out.image is not None and out.image.stat().st_size > 0
    alone = layers_of(ofa_embed.map(store, tmp_path / "alone.html", color="change", change=report.out).out)
    assert not alone["store embeddings"]["visible"]


def test_class_cogs_are_drawn_pixel_by_pixel_in_their_colour_table(tmp_path):
    tif, labels = two_cover_scene(tmp_path)
    store = tmp_path / "store"
    ofa_embed.extract(tif, store, dense=True, model="ofa_test", tile_size=64, precision="fp32")
    report = segment(store, labels, "cover", folds=2, block_size_m=640, predict=tmp_path / "classes", n_boot=10)
    result = runner.invoke(app, ["map", str(store), "--out", str(tmp_path / "m.html"), "--classes",
                                 str(tmp_path / "classes")])
    assert result.exit_code == 0, result.output
    layers = layers_of(tmp_path / "m.html")
    layer = layers[f"classes {report.predictions[0].stem}"]
    assert layer["count"] == 16 * 16 and not layers["store embeddings"]["visible"]
    legend = dict((name, tuple(rgb)) for name, rgb in layer["legend"]["items"])
    assert set(legend) == {"land", "water"} and legend["land"] == (31, 119, 180)  # the COG's colour table
    drawn = {tuple(c) for c in colours(layer)}
    assert drawn <= set(legend.values()) and len(drawn) == 2


def test_bad_classes_and_change_inputs_are_one_line(change_run, tmp_path):
    store, report = change_run
    with pytest.raises(MapError, match="no such class raster"):
        ofa_embed.map(store, tmp_path / "a.html", classes=tmp_path / "missing")
    field = next((store / "fields").glob("*.tif"))
    with pytest.raises(MapError, match="no OFA_EMBED_CLASSES tag: not a class raster"):
        ofa_embed.map(store, tmp_path / "a.html", classes=field)
    with pytest.raises(MapError, match="not a change file"):
        ofa_embed.map(store, tmp_path / "a.html", change=next(store.glob("*.parquet")))
    result = runner.invoke(app, ["map", str(store), "--out", str(tmp_path / "a.html"), "--color", "change"])
    assert result.exit_code == 1 and "--change change.parquet" in result.output
    assert not (tmp_path / "a.html").exists()


def test_a_large_raster_is_drawn_decimated_over_the_same_extent(change_run, monkeypatch):
    from ofa_embed.mapview import dense

    store, report = change_run
    (_, _, path, _), = report.fields
    full, _, _ = dense.raster_pixels(path, categorical_values=False)
    monkeypatch.setattr(dense, "MAX_RASTER_PIXELS", 64)
    small, values, _ = dense.raster_pixels(path, categorical_values=False)
    assert len(small) == 64 and np.isfinite(values).all()
    np.testing.assert_allclose(small.reshape(-1, 2).min(0), full.reshape(-1, 2).min(0), atol=1e-9)
    np.testing.assert_allclose(small.reshape(-1, 2).max(0), full.reshape(-1, 2).max(0), atol=1e-9)
