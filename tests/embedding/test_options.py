"""Run options: one dataclass for extract, extract_chips, the Dask tasks and the CLI; keywords override it."""

import threading
from dataclasses import fields

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import ofa_embed
from ofa_embed.embedding import forward
from ofa_embed.embedding.options import SCENE_ONLY, ChipOptionKeywords, OptionKeywords, RunOptions, run_options
from ofa_embed.errors import ConfigError
from ofa_embed.raster.reader import TileBatch


def test_the_keywords_are_the_options_fields():
    names = {f.name for f in fields(RunOptions)}
    assert set(OptionKeywords.__annotations__) | set(ChipOptionKeywords.__annotations__) == names
    assert set(ChipOptionKeywords.__annotations__) == names - set(SCENE_ONLY)


def test_keywords_override_the_options_given_whole():
    given = RunOptions(tile_size=64, batch_size=8)
    assert run_options("extract", given, {"batch_size": 2}) == RunOptions(tile_size=64, batch_size=2)
    assert run_options("extract", None, {}) == RunOptions()
    assert run_options("extract", given, {}) is given


def test_unknown_and_scene_only_options_are_refused():
    with pytest.raises(TypeError, match="extract\\(\\) got an unexpected keyword argument 'tile'"):
        run_options("extract", None, {"tile": 64})
    with pytest.raises(TypeError, match="extract_chips\\(\\) got an unexpected keyword argument 'stride'"):
        run_options("extract_chips", None, {"stride": 32}, refused=SCENE_ONLY)
    with pytest.raises(ConfigError, match="stride, overwrite do not apply"):
        run_options("extract_chips", RunOptions(stride=32, overwrite=True), {}, refused=SCENE_ONLY)


def test_options_whole_and_as_keywords_write_the_same_store(tmp_path, s2_tif):
    keywords = {"model": "ofa_test", "tile_size": 64, "stride": 48, "batch_size": 5, "precision": "fp32"}
    a = ofa_embed.extract(s2_tif, tmp_path / "a", **keywords).scenes[0].path
    b = ofa_embed.extract(s2_tif, tmp_path / "b", options=RunOptions(**keywords)).scenes[0].path
    first, second = pq.read_table(a), pq.read_table(b)
    assert first.column("id").to_pylist() == second.column("id").to_pylist()
    assert np.array_equal(np.stack(first.column("embedding").to_numpy(zero_copy_only=False)),
                          np.stack(second.column("embedding").to_numpy(zero_copy_only=False)))


def test_no_model_worker_outlives_the_batches(monkeypatch):
    monkeypatch.setattr(forward, "embed", lambda model, data, *args, **kwargs: np.zeros((len(data), 4), np.float32))
    batches = (TileBatch([], np.zeros((2, 1, 8, 8), np.float32), np.ones(2), 0) for _ in range(5))
    done = list(forward.embed_batches(batches, None, "sentinel2_l1c", torch.device("cpu"), workers=2, threads=1))
    assert len(done) == 5
    assert not [t for t in threading.enumerate() if t.name.startswith("ofa-embed-model")]
