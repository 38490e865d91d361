"""Change between dates: a block of one scene replaced by another land cover ranks first, per tile and pixel;
bad selectors and mixed models are one line."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

import ofa_embed
from ofa_embed.change import change
from ofa_embed.errors import ConfigError, QueryError
from ofa_embed.sensors import get_modality
from tests.helpers import s2_values, write_raster

FAST = {"model": "ofa_test", "tile_size": 64, "precision": "fp32", "stride": 64}
NAMES = get_modality("sentinel2_l1c").band_names


@pytest.fixture
def two_dates(tmp_path):
    values = s2_values(256, 256)
    before = write_raster(tmp_path / "S2A_MSIL1C_20200518T101031_x.tif", values, descriptions=NAMES)
    changed = values.astype(np.float32)
    changed[:, :128, 128:] *= np.linspace(1.6, 0.2, 13)[:, None, None]  # a water-like block, top right
    after = write_raster(tmp_path / "S2A_MSIL1C_20200618T101031_x.tif", changed.clip(1, 20000).astype(np.uint16),
                         descriptions=NAMES)
    store = tmp_path / "store"
    ofa_embed.extract([before, after], store, dense=True, **FAST)
    return store, before.stem, after.stem


def test_a_replaced_block_ranks_first(tmp_path, two_dates):
    store, before, after = two_dates
    report = change(store, "2020-05-18", "2020-06-01..2020-06-30", out=tmp_path / "change.parquet")
    assert report.before == [before] and report.after == [after]
    assert len(report.tiles) == 16 and report.partial == 0 and report.unmatched == 0
    top = report.tiles.head(4)
    # the changed tiles: rows 0 and 64, columns 128 and 192 (ids carry the window; the footprint says it too)
    bounds = top.geometry.bounds
    assert (bounds.minx >= report.tiles.geometry.bounds.minx.median()).all()
    assert report.tiles["cosine_distance"].iloc[3] > 2 * report.tiles["cosine_distance"].iloc[4]
    (b, a, path, pixels), = report.fields
    with rasterio.open(path) as src:
        distance = src.read(1)
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and src.transform.a == 160
    assert pixels == 16 * 16
    order = np.argsort(-distance, axis=None)[:64]
    rows, cols = np.unravel_index(order, distance.shape)
    assert (rows < 8).all() and (cols >= 8).all()  # the 64 most changed pixels are the 8 x 8 block


def test_change_command_and_bad_input(tmp_path, two_dates):
    from typer.testing import CliRunner

    from ofa_embed.cli.main import app

    store, before, after = two_dates
    result = CliRunner().invoke(app, ["change", str(store), "--before", before, "--after", after, "--top", "3"])
    assert result.exit_code == 0, result.output
    assert "3 most changed tiles" in result.output
    with pytest.raises(QueryError, match="matches no scene; the store holds"):
        change(store, "2019-01-01", after)
    with pytest.raises(QueryError, match="both select"):
        change(store, "2020-05-01..2020-07-01", after)
    with pytest.raises(QueryError, match="no scene 'nope'"):
        change(store, "nope", after)
    bad = CliRunner().invoke(app, ["change", str(store), "--before", "2019-01-01", "--after", after])
    assert bad.exit_code == 1 and "matches no scene" in bad.output and len(bad.output.strip().splitlines()) <= 3


def test_one_scene_and_mixed_models_are_refused(tmp_path, s2_tif):
    store = tmp_path / "one"
    ofa_embed.extract(s2_tif, store, **FAST)
    with pytest.raises(QueryError, match="one scene only"):
        change(store, "2020-05-18", "2020-06-18")
    a, b = tmp_path / "a", tmp_path / "b"
    values = s2_values(128, 128)
    ta = write_raster(tmp_path / "S2A_MSIL1C_20200518T101031_y.tif", values, descriptions=NAMES)
    tb = write_raster(tmp_path / "S2A_MSIL1C_20200618T101031_y.tif", values, descriptions=NAMES)
    ofa_embed.extract([ta, tb], a, dense=True, **FAST)
    ofa_embed.extract(tb, b, dense=True, **(FAST | {"model": "ofa_tiny", "weights": None}))
    with pytest.raises(Exception, match="holds weights"):  # tile rows of another model: the store refuses them
        ofa_embed.extract(tb, a, overwrite=True, **(FAST | {"model": "ofa_tiny"}))
    # a field of another model copied in beside the store's own is caught when compared
    (a / "fields" / f"{tb.stem}.tif").write_bytes((b / "fields" / f"{tb.stem}.tif").read_bytes())
    with pytest.raises(ConfigError, match="fields of different models"):
        change(a, ta.stem, tb.stem, out=tmp_path / "c.parquet")
    assert not (tmp_path / f"c.{ta.stem}.{tb.stem}.tif").exists() and not (tmp_path / "c.parquet").exists()
