import dataclasses
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

import ofa_embed
from ofa_embed.errors import ConfigError, StoreError
from ofa_embed.model import CONFIGS, create_model
from ofa_embed.model.checkpoint import load_checkpoint
from ofa_embed.model.mae import OFAMAE, patchify, random_masking, unpatchify
from ofa_embed.pretraining.config import OBJECTIVE_OPTIONS, DinoIBotOptions, MaskedSiameseOptions, PretrainConfig
from ofa_embed.pretraining.objective import OBJECTIVES, MaskedSiamese, build_objective, info_nce
from ofa_embed.pretraining.train import CorpusSampler, param_groups, pretrain
from tests.helpers import s2_values, write_raster

TINY = PretrainConfig(model="ofa_test", steps=30, batch_size=8, lr=3e-3, warmup_steps=3, crop=32, second_crop=16,
                      checkpoint_every=10)

# dino_ibot on the 48 px tiles of the test corpus: global crops 32-48 px, local crops 16 px
DINO = PretrainConfig(model="ofa_test", steps=10, batch_size=4, lr=1e-3, warmup_steps=2, crop=48, second_crop=0,
                      checkpoint_every=5, objective="dino_ibot",
                      objective_options=DinoIBotOptions(global_crop_min=32, global_crop_max=48, local_crops=2,
                                                        local_crop_min=16, local_crop_max=16, prototypes=64,
                                                        head_hidden=32, head_bottleneck=16, teacher_momentum=0.9,
                                                        mae_weight=0.5))


@pytest.fixture
def corpus(tmp_path):
    scenes = [write_raster(tmp_path / f"s2_{i}.tif", s2_values(96, 96, seed=i)) for i in range(2)]
    rgb = write_raster(tmp_path / "aerial.tif", (s2_values(64, 64)[:3] // 40).astype(np.uint8))
    ofa_embed.curate(scenes, tmp_path / "corpus", tile_size=48, stride=16, shard_size=10)
    ofa_embed.curate([rgb], tmp_path / "corpus", tile_size=48, stride=16, modality="rgb")
    return tmp_path / "corpus"


def test_curate_writes_shards_stats_and_manifest(corpus):
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert manifest["tile_size"] == 48 and set(manifest["modalities"]) == {"sentinel2_l1c", "rgb"}
    s2 = manifest["modalities"]["sentinel2_l1c"]
    # two scenes of 4 x 4 tiles, each written in shards of at most 10 tiles
    assert s2["tiles"] == 2 * 16 and [s["tiles"] for s in s2["shards"]] == [10, 6, 10, 6]
    shard = np.load(corpus / s2["shards"][0]["file"])
    assert shard.shape == (10, 13, 48, 48) and shard.dtype == np.float16 and np.isfinite(shard).all()
    stats = json.loads((corpus / "stats.json").read_text())["sentinel2_l1c"]
    expected = s2_values(96, 96, seed=0)[1].mean() * 1e-4  # band B02 in reflectance
    assert stats["mean"][1] == pytest.approx(expected, rel=0.05) and stats["n"] == 32 * 48 * 48


def test_curate_refuses_a_different_tile_size(corpus, tmp_path):
    with pytest.raises(Exception, match="corpus tiles are 48 px, not 64"):
        ofa_embed.curate([write_raster(tmp_path / "x.tif", s2_values(96, 96))], corpus, tile_size=64)


def test_sampler_draws_views_of_the_same_tiles_of_one_modality(corpus):
    sampler = CorpusSampler(corpus, crops=(32, 16), sampling="balanced", seed=0)
    seen = {sampler.sample(4)[0] for _ in range(20)}
    assert seen == {"sentinel2_l1c", "rgb"}
    name, (large, small) = sampler.sample(4)
    bands = 13 if name == "sentinel2_l1c" else 3
    assert large.shape == (4, bands, 32, 32) and small.shape == (4, bands, 16, 16)
    # row i of both views comes from one tile: with tiles that are constant at their own index, views agree
    sampler.shards = {"rgb": [np.arange(30, dtype=np.float16)[:, None, None, None] * np.ones((1, 3, 48, 48), np.float16)]}
    sampler.names, sampler.weights = ["rgb"], np.array([1.0])
    _, (large, small) = sampler.sample(6)
    assert np.array_equal(large[:, 0, 0, 0], small[:, 0, 0, 0]) and len(set(large[:, 0, 0, 0].tolist())) > 1
    with pytest.raises(ConfigError, match="crop 64 is larger"):
        CorpusSampler(corpus, crops=(32, 64), sampling="balanced", seed=0)
    with pytest.raises(StoreError, match="not a corpus"):
        CorpusSampler(corpus / "nope", crops=(32,), sampling="balanced", seed=0)


def test_both_terms_of_the_objective_train_and_the_contrastive_term_finds_views_of_one_tile():
    torch.manual_seed(0)
    objective = MaskedSiamese(create_model("ofa_test"), mask_ratio=0.5, contrastive_weight=1.0)
    tiles = torch.randn(8, 13, 32, 32)
    views = [tiles, tiles[:, :, 8:24, 8:24].flip(-1)]
    loss, parts = objective(views, "sentinel2_l1c")
    assert set(parts) == {"mae", "contrastive"} and loss.item() == pytest.approx(parts["mae"] + parts["contrastive"], rel=1e-5)
    loss.backward()
    assert objective.projector[0].weight.grad.abs().sum() > 0
    assert objective.encoder.patch_embed.weight_generator.fc_weight.weight.grad.abs().sum() > 0
    same = info_nce(torch.eye(4), torch.eye(4), 0.1)
    shuffled = info_nce(torch.eye(4), torch.eye(4)[[1, 2, 3, 0]], 0.1)
    assert same < 0.01 < 1.0 < shuffled
    mae_only, parts = MaskedSiamese(create_model("ofa_test"), mask_ratio=0.5, contrastive_weight=0.0)(views, "sentinel2_l1c")
    assert set(parts) == {"mae"} and set(MaskedSiamese.log_keys) == {"mae", "contrastive"}


def test_mae_pieces_keep_their_shape_contracts():
    images = torch.randn(2, 13, 32, 48)
    assert torch.equal(unpatchify(patchify(images, 16), 16, (2, 3), 13), images)
    kept, mask, restore = random_masking(torch.randn(2, 6, 8), 0.75)
    assert kept.shape == (2, 2, 8) and mask.sum(1).tolist() == [4, 4] and restore.shape == (2, 6)
    loss, prediction, mask = OFAMAE(create_model("ofa_test"))(images, "sentinel2_l1c")
    assert prediction.shape == (2, 6, 16 * 16 * 13) and loss.ndim == 0 and loss > 0


def test_tiny_pretraining_lowers_the_loss_and_writes_a_loadable_encoder(corpus, tmp_path):
    report = pretrain(corpus, tmp_path / "run", TINY)
    first, last = np.mean(report.losses[:5]), np.mean(report.losses[-5:])
    assert last < 0.8 * first
    loaded = load_checkpoint(tmp_path / "run" / "encoder.safetensors")
    assert loaded.weights_hash == report.weights_hash and loaded.model.config.name == "ofa_test"
    assert (tmp_path / "run" / "loss.png").stat().st_size > 0
    log = (tmp_path / "run" / "loss.csv").read_text().splitlines()
    assert len(log) == 31 and log[0] == "step,loss,mae,contrastive,lr,samples_per_s,modality"
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written["objective"] == "masked_siamese" and PretrainConfig.from_dict(written) == TINY


def killed_during_step(step, corpus, out, config, monkeypatch):
    """Run ``pretrain`` into ``out`` until an interrupt during ``step``; the saved ``state.pt`` it leaves."""
    real_sample, calls = CorpusSampler.sample, {"n": 0}

    def interrupted(self, batch_size):
        calls["n"] += 1
        if calls["n"] == step:
            raise KeyboardInterrupt
        return real_sample(self, batch_size)

    monkeypatch.setattr(CorpusSampler, "sample", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pretrain(corpus, out, config)
    monkeypatch.setattr(CorpusSampler, "sample", real_sample)
    return torch.load(out / "state.pt", weights_only=False)


def test_resume_continues_at_the_saved_step_with_the_same_state(corpus, tmp_path, monkeypatch):
    straight = pretrain(corpus, tmp_path / "a", TINY)
    state = killed_during_step(26, corpus, tmp_path / "b", TINY, monkeypatch)  # the last checkpoint is step 20
    assert state["step"] == 20 and state["optimizer"]["state"]
    resumed = pretrain(corpus, tmp_path / "b", TINY, resume=True)
    assert len(resumed.losses) == 30 and resumed.losses[:20] == straight.losses[:20]
    np.testing.assert_allclose(resumed.losses[20:], straight.losses[20:], rtol=1e-4)
    assert resumed.weights_hash == straight.weights_hash


def test_dino_ibot_resumes_exactly_with_its_teacher_and_centres(corpus, tmp_path, monkeypatch):
    """N steps in one run equal N/2 steps, stopped, resumed from state.pt, N/2 steps: the EMA teacher, both
    centres and the crops' random stream are part of the saved state, so the shipped (teacher) weights match."""
    straight = pretrain(corpus, tmp_path / "a", DINO)
    log = (tmp_path / "a" / "loss.csv").read_text().splitlines()
    assert log[0] == "step,loss,dino,ibot,mae,teacher_entropy,lr,samples_per_s,modality" and len(log) == 11
    state = killed_during_step(7, corpus, tmp_path / "b", DINO, monkeypatch)  # the last checkpoint is step 5
    assert state["step"] == 5 and {"teacher.norm.weight", "centre", "token_centre"} <= set(state["model"])
    resumed = pretrain(corpus, tmp_path / "b", DINO, resume=True)
    assert resumed.losses[:5] == straight.losses[:5]
    np.testing.assert_allclose(resumed.losses[5:], straight.losses[5:], rtol=1e-4)
    assert resumed.weights_hash == straight.weights_hash
    # what ships is the teacher, not the student
    teacher = torch.load(tmp_path / "b" / "state.pt", weights_only=False)["model"]
    loaded = load_checkpoint(tmp_path / "b" / "encoder.safetensors").model.state_dict()
    assert torch.equal(loaded["blocks.0.attn.qkv.weight"], teacher["teacher.blocks.0.attn.qkv.weight"])
    assert not torch.equal(loaded["blocks.0.attn.qkv.weight"], teacher["student.blocks.0.attn.qkv.weight"])


@pytest.mark.parametrize("patch_embed", ["spectral", "per_modality"])
def test_weight_decay_spares_norms_biases_and_embeddings(patch_embed):
    mae = OFAMAE(create_model(dataclasses.replace(CONFIGS["ofa_test"], patch_embed=patch_embed)))
    decay, no_decay = (group["params"] for group in param_groups(mae, 0.05))
    names = {id(p): n for n, p in mae.named_parameters()}
    spared, decayed = {names[id(p)] for p in no_decay}, {names[id(p)] for p in decay}
    assert {"encoder.norm.weight", "encoder.norm.bias", "mask_token", "encoder.blocks.0.attn.qkv.bias"} <= spared
    assert "encoder.blocks.0.attn.qkv.weight" in decayed
    if patch_embed == "per_modality":
        assert "encoder.modality_embed.rgb" in spared and "encoder.patch_embed.rgb.proj.weight" in decayed
    else:
        generator = "encoder.patch_embed.weight_generator"
        assert {f"{generator}.weight_tokens", f"{generator}.bias_token", "encoder.patch_embed.polarisation.weight"} <= spared
        assert f"{generator}.fc_weight.weight" in decayed
    assert len(decay) + len(no_decay) == len(list(mae.parameters()))


@pytest.mark.parametrize("settings", [{"model": "nope"}, {"sampling": "uniform"}, {"steps": 0}, {"mask_ratio": 1.0},
                                      {"warmup_steps": -1}, {"second_crop": 0}, {"temperature": 0.0},
                                      {"objective": "nope"}, {"second_crop": -1, "contrastive_weight": 0.0}])
def test_bad_hyper_parameters_are_one_line_config_errors(settings):
    with pytest.raises(ConfigError):
        PretrainConfig.from_dict(settings)


def test_objectives_are_chosen_by_name_with_their_options_nested():
    assert set(OBJECTIVES) == set(OBJECTIVE_OPTIONS) and PretrainConfig().objective == "masked_siamese"
    for name, objective in OBJECTIVES.items():
        assert objective.options_type is OBJECTIVE_OPTIONS[name] and objective.log_keys
    config = PretrainConfig(objective_options=MaskedSiameseOptions(temperature=0.1, contrastive_weight=0.0), second_crop=0)
    assert PretrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    built = build_objective(config.objective, create_model("ofa_test"), config.objective_options)
    assert isinstance(built, MaskedSiamese)
    assert (built.temperature, built.contrastive_weight, built.mask_ratio) == (0.1, 0.0, 0.75)
    with pytest.raises(ConfigError, match="choose one of masked_siamese"):
        build_objective("nope", create_model("ofa_test"), config.objective_options)


def test_a_config_json_of_the_flat_layout_still_loads():
    """Runs before objectives had a name wrote their options beside the other hyper-parameters."""
    old = {"corpus": "/data/corpus", "model": "ofa_test", "patch_size": None, "steps": 7000, "batch_size": 32, "lr": 0.0015,
           "weight_decay": 0.05, "warmup_steps": 300, "mask_ratio": 0.6, "crop": 96, "second_crop": 64, "norm_pix_loss": True,
           "contrastive_weight": 0.25, "temperature": 0.3, "sampling": "proportional", "seed": 0, "checkpoint_every": 500,
           "bf16": False}
    config = PretrainConfig.from_dict(old)
    assert config.objective == "masked_siamese" and config.steps == 7000
    assert config.objective_options == MaskedSiameseOptions(mask_ratio=0.6, norm_pix_loss=True, contrastive_weight=0.25,
                                                            temperature=0.3)


@pytest.mark.slow
def test_two_process_data_parallel_pretraining_trains_one_modality_per_step(corpus, tmp_path):
    """torchrun-style DDP on CPU (gloo): each step trains one modality's patch embedding and head, so the
    others are unused on that rank; without ``find_unused_parameters`` the second step fails."""
    port = _free_port()
    script = (
        "import sys; from ofa_embed.pretraining.config import PretrainConfig; "
        "from ofa_embed.pretraining.train import pretrain; "
        "r = pretrain(sys.argv[1], sys.argv[2], PretrainConfig(model='ofa_test', steps=4, batch_size=4, "
        "warmup_steps=1, crop=32, second_crop=16, checkpoint_every=2, sampling='balanced')); print('steps', r.steps)"
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(corpus), str(tmp_path / "ddp")], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
            env={**os.environ, "WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank),
                 "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"},
        )
        for rank in range(2)
    ]
    results = [child.communicate(timeout=300) for child in children]
    for child, (out, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err[-2000:]
        assert "steps 4" in out
    assert load_checkpoint(tmp_path / "ddp" / "encoder.safetensors").model.config.name == "ofa_test"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
