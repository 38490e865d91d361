"""Two runs writing one new store at once with different weights: one claims it, the other is refused before it
writes anything, repeated; the store stays one model's, and a failed run gives its claim back."""

import json
import subprocess
import sys

import pytest

import ofa_embed
from ofa_embed.errors import StoreError
from ofa_embed.model import create_model
from ofa_embed.model.checkpoint import save_checkpoint
from ofa_embed.sensors import get_modality
from ofa_embed.store import describe_store, store_files
from ofa_embed.store.claim import CLAIM_FILE, read_claim
from tests.helpers import s2_values, write_raster

FAST = ["--model", "ofa_test", "--tile-size", "64", "-q"]


def extract_process(scene, store, *extra):
    return subprocess.Popen([sys.executable, "-m", "ofa_embed.cli.main", "extract", str(scene), "--out", str(store),
                             *FAST, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("attempt", range(3))
def test_racing_writers_of_other_weights_leave_one_models_store(tmp_path, s2_tif, attempt):
    other = tmp_path / "other.safetensors"
    save_checkpoint(create_model("ofa_test", seed=7), other)
    second = write_raster(tmp_path / "S2B_MSIL1C_20200519T101031_b.tif", s2_values(128, 128, seed=1),
                          descriptions=get_modality("sentinel2_l1c").band_names)
    store = tmp_path / "store"
    runs = [extract_process(s2_tif, store), extract_process(second, store, "--weights", other)]
    results = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    refused = next(err for code, err in results if code == 1)
    assert "write these embeddings to another store (--out)" in " ".join(refused.split()) and "Traceback" not in refused
    files = describe_store(store)  # one model's: a mixed store is refused here
    assert len(files) == 1 and {f.weights_hash for f in files} == {read_claim(store).weights_hash}


def test_a_store_written_before_the_record_is_claimed_for_what_it_holds(tmp_path, s2_tif):
    store = tmp_path / "store"
    ofa_embed.extract(s2_tif, store, model="ofa_test", tile_size=64)
    (store / CLAIM_FILE).unlink()  # as a store of an older ofa-embed
    other = tmp_path / "other.safetensors"
    save_checkpoint(create_model("ofa_test", seed=7), other)
    with pytest.raises(StoreError, match=r"holds weights \w+ \(its model\), not \w+, as .*\.parquet says"):
        ofa_embed.extract(s2_tif, store, weights=other, tile_size=64, overwrite=True)
    assert not (store / CLAIM_FILE).exists()
    ofa_embed.extract(s2_tif, store, model="ofa_test", tile_size=64, overwrite=True)
    assert read_claim(store).weights_hash == describe_store(store)[0].weights_hash
    with pytest.raises(StoreError, match="pass --embedding-dtype float32"):
        ofa_embed.extract(s2_tif, store, model="ofa_test", tile_size=64, overwrite=True, embedding_dtype="int8")


def test_a_run_that_fails_before_writing_gives_its_claim_back(tmp_path, s2_tif, monkeypatch):
    from ofa_embed.embedding import extract as extract_module

    store = tmp_path / "store"

    def fail(*args, **kwargs):
        assert (store / CLAIM_FILE).exists()  # claimed before anything is written
        raise KeyboardInterrupt

    monkeypatch.setattr(extract_module, "extract_plans", fail)
    with pytest.raises(KeyboardInterrupt):
        ofa_embed.extract(s2_tif, store, model="ofa_test", tile_size=64)
    assert not (store / CLAIM_FILE).exists() and not store_files(store)
    other = tmp_path / "other.safetensors"
    save_checkpoint(create_model("ofa_test", seed=7), other)
    monkeypatch.undo()
    ofa_embed.extract(s2_tif, store, weights=other, tile_size=64)  # the store is free for any weights again
    record = json.loads((store / CLAIM_FILE).read_text())
    assert record["weights_hash"] == describe_store(store)[0].weights_hash and record["dimension"] == 32
