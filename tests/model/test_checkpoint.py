"""Checkpoint files: round trip, content hash, refusal of foreign or broken files."""

import pytest
import torch

from ofa_embed.errors import WeightsError
from ofa_embed.model import create_model
from ofa_embed.model.checkpoint import load_checkpoint, random_init, save_checkpoint


@pytest.fixture(scope="module")
def model():
    return create_model("ofa_test").eval()


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, model):
    path = tmp_path / "m.safetensors"
    written = save_checkpoint(model, path, source="unit test")
    loaded = load_checkpoint(path)
    assert loaded.weights_hash == written and loaded.pretrained
    assert loaded.model.config == model.config
    x = torch.randn(2, 2, 32, 32)
    with torch.inference_mode():
        assert torch.equal(loaded.model(x, "sentinel1_grd"), model(x, "sentinel1_grd"))


def test_half_precision_checkpoint_has_its_own_hash(tmp_path, model):
    full = save_checkpoint(model, tmp_path / "f32.safetensors")
    half = save_checkpoint(model, tmp_path / "f16.safetensors", dtype=torch.float16)
    assert full != half == load_checkpoint(tmp_path / "f16.safetensors").weights_hash


def test_random_init_reports_itself():
    loaded = random_init("ofa_test")
    assert not loaded.pretrained and loaded.source == "random-init(seed=0)"


def test_bad_checkpoints_are_refused(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.safetensors: not a readable safetensors"):
        load_checkpoint(junk)


def test_a_checkpoint_whose_tensors_do_not_fit_its_config_is_a_weights_error(tmp_path, model):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    state = load_file(str(path))
    state.pop("norm.weight")
    state["stray.weight"] = torch.zeros(1)
    save_file(state, str(path), metadata=metadata)
    with pytest.raises(WeightsError, match=r"m.safetensors: weights do not match config ofa_test"):
        load_checkpoint(path)
