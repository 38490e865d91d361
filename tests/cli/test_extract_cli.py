"""End-to-end tests of the ``ofa-embed`` command line."""

import geopandas as gpd
import numpy as np
import pytest
from typer.testing import CliRunner

from ofa_embed.cli.main import app
from ofa_embed.store.duck import connect
from tests.helpers import s2_values, write_raster

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_extract_sample_end_to_end(tmp_path):
    store = tmp_path / "store"
    first = run("extract", "--sample", "--out", store, "--quiet")
    assert first.exit_code == 0, first.output
    path = store / "s2_l1c_sample.parquet"
    frame = gpd.read_parquet(path)
    assert len(frame) == 16  # 512 x 512 px in the default 128 px Sentinel-2 tiles
    embeddings = np.stack(frame.embedding.to_numpy())
    assert embeddings.shape == (16, 384) and np.isfinite(embeddings).all()  # mean and spread of 192-number tokens
    con = connect()
    n, = con.execute(f"SELECT count(*) FROM read_parquet('{path}') WHERE ST_Area(geometry) > 0").fetchone()
    assert n == 16
    again = run("extract", "--sample", "--out", store, "--overwrite", "--quiet")
    assert again.exit_code == 0
    rerun = gpd.read_parquet(path)
    assert rerun.id.tolist() == frame.id.tolist()
    assert np.array_equal(np.stack(rerun.embedding.to_numpy()), embeddings)


def test_cli_passes_options_through(tmp_path, s2_tif):
    result = run("extract", s2_tif, "--out", tmp_path / "s", "--model", "ofa_test", "--tile-size", "64",
                 "--stride", "32", "--min-valid", "0.9")
    assert result.exit_code == 0, result.output
    frame = gpd.read_parquet(tmp_path / "s" / f"{s2_tif.stem}.parquet")
    # ceil((300-64)/32)+1 = 9 columns and ceil((260-64)/32)+1 = 8 rows; the last column (44 of 64 px inside the
    # scene) and the last row (36 px) are below --min-valid 0.9
    assert len(frame) == 8 * 7 and frame.valid_fraction.min() >= 0.9
    assert "s2_tif" not in result.output and "tiles" in result.output


def test_stack_band_files_and_bands_option(tmp_path, s2_band_folder):
    files = sorted(p for p in s2_band_folder.iterdir() if "TCI" not in p.name)
    result = run("extract", *files, "--stack", "--out", tmp_path / "s", "--model", "ofa_test", "--tile-size", "64", "-q")
    assert result.exit_code == 0, result.output
    rgb = write_raster(tmp_path / "rgb.tif", s2_values(64, 64)[[3, 2, 1]])
    result = run("extract", rgb, "--modality", "sentinel2_l1c", "--bands", "B04,B03,B02", "--out", tmp_path / "s",
                 "--model", "ofa_test", "--tile-size", "64", "-q")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "s").glob("*.parquet"))) == 2


def bad_inputs(tmp_path):
    text = tmp_path / "notes.tif"
    text.write_text("not a raster")
    truncated = write_raster(tmp_path / "cut.tif", s2_values(256, 256))
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    good = write_raster(tmp_path / "good.tif", s2_values(128, 128))
    return {
        "missing": ([tmp_path / "missing.tif"], "missing.tif: no such file"),
        "not a raster": ([text], "notes.tif: not a readable raster"),
        "truncated": ([truncated], "cut.tif"),
        "no georeferencing": ([write_raster(tmp_path / "plain.tif", s2_values(64, 64), crs=None)], "plain.tif: no georef"),
        "band count": ([write_raster(tmp_path / "five.tif", s2_values(64, 64)[:5])], "five.tif: 5 band"),
        "too small": ([write_raster(tmp_path / "tiny.tif", s2_values(8, 8))], "tiny.tif: raster is 8 x 8 px"),
        "all nodata": ([write_raster(tmp_path / "void.tif", np.zeros((13, 128, 128), np.uint16), nodata=0)], "void.tif: no tile"),
        "unwritable": ([good, "--out", blocker / "store"], "not a writable directory"),
        "bad modality": ([good, "--modality", "sentinel3"], "unknown modality 'sentinel3'"),
        "bad model": ([good, "--model", "nope"], "unknown model 'nope'; choose one of: ofa_test"),
    }


@pytest.mark.parametrize("case", ["missing", "not a raster", "truncated", "no georeferencing", "band count",
                                  "too small", "all nodata", "unwritable", "bad modality", "bad model"])
def test_bad_input_gives_one_line_and_writes_nothing(tmp_path, case):
    args, message = bad_inputs(tmp_path)[case]
    if "--out" not in args:
        args = [*args, "--out", tmp_path / "store"]
    result = runner.invoke(app, ["extract", "--model", "ofa_test", *map(str, args), "-q"])  # a case's --model wins
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


def test_pretrain_with_an_unknown_model_is_one_line(tmp_path):
    result = runner.invoke(app, ["pretrain", str(tmp_path / "corpus"), "--out", str(tmp_path / "run"), "--config", "nope"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "error: unknown model 'nope'; choose one of: ofa_test" in " ".join(result.output.split())
    assert not (tmp_path / "run").exists()
