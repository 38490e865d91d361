"""The default checkpoint shipped in the package: loads, matches its model card, is used by default."""

import re
from pathlib import Path

import pytest
import torch

from ofa_embed.model.checkpoint import load_checkpoint
from ofa_embed.model.weights import PACKAGED_WEIGHTS, PACKAGED_WEIGHTS_HASH, load_weights

CARD = Path(PACKAGED_WEIGHTS).parent / "MODEL_CARD.md"


def test_shipped_checkpoint_loads_and_its_hash_matches_the_card():
    loaded = load_checkpoint(PACKAGED_WEIGHTS)
    card_hash = re.search(r"weights hash: `([0-9a-f]{16})`", CARD.read_text()).group(1)
    assert loaded.weights_hash == card_hash == PACKAGED_WEIGHTS_HASH
    assert loaded.model.config.name == "ofa_tiny" and loaded.pretrained and loaded.model.config.patch_embed == "spectral"
    assert PACKAGED_WEIGHTS.stat().st_size < 30e6  # a shipped checkpoint stays under 30 MB


def test_extract_uses_the_shipped_checkpoint_by_default():
    default = load_weights()
    assert default.pretrained and Path(default.source) == PACKAGED_WEIGHTS


def test_shipped_checkpoint_reproduces_its_reference_embedding():
    """Pins the whole forward pass (layers, norms, position embedding, pooling) on the bundled sample's
    first tile: a change of library, kernel or layer that moves embeddings of the same weights fails here."""
    from rasterio.windows import Window

    from ofa_embed.raster.opening import open_scene
    from ofa_embed.sample import sample_scene

    model = load_weights().model
    with open_scene(sample_scene()) as scene:
        data, _ = scene.read(Window(0, 0, 128, 128))
    with torch.inference_mode():
        embedding = model(torch.from_numpy(data)[None], "sentinel2_l1c")[0]
    assert embedding.shape == (384,)  # the mean of the 192-number tokens, then their standard deviation
    reference = [-0.09377, 0.19783, -0.23267, -0.03356, -0.02479, -0.28228, 0.06035, 0.40121]
    assert torch.allclose(embedding[:8], torch.tensor(reference), atol=5e-5)
    spread = [0.43125, 0.26307, 0.35939, 0.17455]
    assert torch.allclose(embedding[192:196], torch.tensor(spread), atol=5e-5)
    assert abs(float(embedding.norm()) - 9.21342) < 1e-3


def test_naming_a_missing_checkpoint_for_a_store_says_so(tmp_path):
    from ofa_embed.errors import WeightsError
    from ofa_embed.model.weights import weights_for_store

    with pytest.raises(WeightsError, match="nope.safetensors: checkpoint not found"):
        weights_for_store({"weights_hash": "0" * 16, "weights_source": "x"}, tmp_path / "nope.safetensors")


def test_a_store_of_the_previous_default_stays_readable_and_is_not_mixed(tmp_path, s2_tif, monkeypatch):
    """A package upgrade rewrites the default checkpoint in place: stores embedded with the old one keep
    their rows and SQL, and refuse new embeddings (queries, new scenes) from the new one."""
    import shutil

    import ofa_embed
    from ofa_embed import indexes
    from ofa_embed.errors import IndexStateError, StoreError
    from ofa_embed.model import create_model
    from ofa_embed.model.checkpoint import save_checkpoint
    from ofa_embed.model.weights import weights_for_store
    from ofa_embed.store import read_metadata

    packaged = tmp_path / "package" / "ofa_test.safetensors"
    packaged.parent.mkdir()
    old_hash = save_checkpoint(create_model("ofa_test", seed=1), packaged)
    kept = tmp_path / "old_default.safetensors"
    shutil.copy(packaged, kept)
    store = tmp_path / "store"
    run = ofa_embed.extract(s2_tif, store, weights=packaged, tile_size=64, precision="fp32")
    indexes.build(store, "flat")
    monkeypatch.setattr("ofa_embed.model.weights.PACKAGED_WEIGHTS", packaged)
    new_hash = save_checkpoint(create_model("ofa_test", seed=2), packaged)  # the upgrade
    assert new_hash != old_hash
    rows = ofa_embed.sql(store, "SELECT count(*) AS n FROM embeddings")
    assert int(rows.n[0]) == run.tiles
    model_meta = read_metadata(run.scenes[0].path)["model"]
    with pytest.raises(IndexStateError, match=f"weights {old_hash} .* not available here"):
        weights_for_store(model_meta)
    with pytest.raises(IndexStateError, match="differ from the store's"):
        ofa_embed.search(store, like=s2_tif, weights=packaged)
    assert len(ofa_embed.search(store, like=s2_tif, weights=kept, k=2)) == 2
    with pytest.raises(StoreError, match=new_hash):
        ofa_embed.extract(s2_tif, store, weights=packaged, tile_size=64, precision="fp32")
