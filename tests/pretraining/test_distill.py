"""dino_ibot: multi-crop views, the DINO head and loss, the EMA teacher, the objective on tiny shapes."""

import dataclasses
import json

import pytest
import torch

from ofa_embed.errors import ConfigError
from ofa_embed.model import CONFIGS, create_model
from ofa_embed.pretraining.config import DinoIBotOptions, PretrainConfig
from ofa_embed.pretraining.distill import DinoHead, distillation_loss, ema_update, teacher_momentum, update_centre
from ofa_embed.pretraining.objective import DinoIBot, build_objective
from ofa_embed.pretraining.views import crop_edges, keep_bands, random_crops

SMALL = DinoIBotOptions(global_crop_min=32, global_crop_max=48, local_crops=2, local_crop_min=16, local_crop_max=16,
                        prototypes=64, head_hidden=32, head_bottleneck=16)


def test_crops_keep_radiometry_and_batch_by_edge():
    tiles = torch.arange(4, dtype=torch.float32)[:, None, None, None] * torch.ones(4, 3, 48, 48)
    crops = random_crops(tiles, 32, 0.15, torch.Generator().manual_seed(0))
    assert crops.shape == (4, 3, 32, 32)
    # a constant tile stays that constant after cropping, turning and area-weighted resampling
    torch.testing.assert_close(crops, tiles[:, :, :32, :32])
    ramp = torch.arange(48.0).expand(1, 1, 48, 48)
    same = random_crops(ramp, 16, 0.0, torch.Generator().manual_seed(1))
    values = same.flatten().unique()
    assert len(values) == 16 and values.diff().eq(1).all()  # an unresampled window of the ramp, maybe turned
    assert crop_edges(64, 128, 16, 128) == [64, 80, 96, 112, 128] and crop_edges(32, 48, 16, 40) == [32]
    with pytest.raises(ValueError, match="no multiple"):
        crop_edges(20, 30, 16, 128)


def test_band_dropout_keeps_at_least_half_and_fewer_than_all():
    generator = torch.Generator().manual_seed(0)
    draws = [keep_bands(10, 0.5, generator) for _ in range(200)]
    kept = [d for d in draws if d is not None]
    assert 60 < len(kept) < 140 and all(5 <= len(d) < 10 and d == sorted(set(d)) for d in kept)
    assert keep_bands(1, 0.99, generator) is None and keep_bands(13, 0.0, generator) is None


def test_head_loss_centre_and_ema():
    head = DinoHead(8, 16, 4, 32)
    out = head(torch.randn(5, 8))
    assert out.shape == (5, 32) and out.abs().max() <= 1.0 + 1e-5  # cosines
    centre = torch.zeros(1, 32)
    same = distillation_loss(out * 10, out * 10, centre, 0.04, 0.04)
    other = distillation_loss(out * 10, out.roll(1, 0) * 10, centre, 0.04, 0.04)
    assert same < other
    update_centre(centre, torch.ones(5, 32), 0.9)
    torch.testing.assert_close(centre, torch.full((1, 32), 0.1))
    assert teacher_momentum(0.99, 0, 100) == pytest.approx(0.99) and teacher_momentum(0.99, 100, 100) == 1.0
    teacher, student = [torch.zeros(3)], [torch.ones(3)]
    ema_update(teacher, student, 0.75)
    torch.testing.assert_close(teacher[0], torch.full((3,), 0.25))


@pytest.mark.parametrize("stem", ["none", "conv"])
def test_dino_ibot_trains_the_student_and_moves_the_teacher_by_ema(stem):
    torch.manual_seed(0)
    encoder = create_model(dataclasses.replace(CONFIGS["ofa_test"], stem=stem))
    objective = build_objective("dino_ibot", encoder, dataclasses.replace(SMALL, mae_weight=0.5))
    assert isinstance(objective, DinoIBot) and objective.student is encoder and objective.encoder is objective.teacher
    tiles = torch.randn(4, 13, 48, 48)
    loss, parts = objective([tiles], "sentinel2_l1c")
    assert set(parts) == set(DinoIBot.log_keys) and loss.ndim == 0 and torch.isfinite(loss)
    assert loss.item() == pytest.approx(parts["dino"] + parts["ibot"] + 0.5 * parts["mae"], rel=1e-4)
    assert 0 < parts["teacher_entropy"] <= torch.log(torch.tensor(64.0)).item() + 1e-4
    assert objective.centre.abs().sum() > 0 and objective.token_centre.abs().sum() > 0
    loss.backward()
    assert objective.mask_token.grad.abs().sum() > 0 and objective.student_head.prototypes.grad.abs().sum() > 0
    assert objective.student.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in objective.teacher.parameters())
    with torch.no_grad():
        for param in objective.student.parameters():
            param.add_(1.0)
    before = objective.teacher.norm.weight.clone()
    objective.after_step(0, 10)  # momentum 0.996: the teacher moves 0.004 of the way
    torch.testing.assert_close(objective.teacher.norm.weight, before + 0.004, rtol=0, atol=1e-5)


def test_dino_ibot_options_are_checked_and_round_trip():
    config = PretrainConfig(model="ofa_test", objective="dino_ibot", objective_options=SMALL, crop=48, second_crop=0)
    assert PretrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    flat = PretrainConfig.from_dict({"objective": "dino_ibot", "crop": 128, "second_crop": 0, "mask_ratio": 0.3})
    assert flat.objective_options == DinoIBotOptions(mask_ratio=0.3)
    with pytest.raises(ConfigError, match="second_crop 0"):
        PretrainConfig(objective="dino_ibot", objective_options=DinoIBotOptions(), crop=128, second_crop=64)
    with pytest.raises(ConfigError, match="smaller than the largest"):
        PretrainConfig(objective="dino_ibot", objective_options=DinoIBotOptions(), crop=96, second_crop=0)
    for bad in ({"global_crop_min": 0}, {"band_dropout": 1.0}, {"teacher_temperature": 0.0}, {"local_crops": -1}):
        with pytest.raises(ConfigError):
            DinoIBotOptions(**bad)
    per_modality = create_model(dataclasses.replace(CONFIGS["ofa_test"], patch_embed="per_modality"))
    with pytest.raises(ConfigError, match="band_dropout"):
        DinoIBot(per_modality, SMALL)
    with pytest.raises(ConfigError, match="no multiple"):
        DinoIBot(create_model("ofa_test"), dataclasses.replace(SMALL, local_crop_min=4, local_crop_max=8))


def test_dino_ibot_keeps_one_centre_per_modality():
    torch.manual_seed(0)
    objective = build_objective("dino_ibot", create_model("ofa_test"), SMALL)
    landsat, sentinel = objective.centre_rows["landsat_oli"], objective.centre_rows["sentinel2_l1c"]
    objective([torch.randn(4, 13, 48, 48)], "sentinel2_l1c")
    assert objective.centre[sentinel].abs().sum() > 0 and objective.token_centre[sentinel].abs().sum() > 0
    # a Sentinel-2 batch leaves every other sensor's centres where they were
    assert objective.centre[landsat].abs().sum() == 0 and objective.token_centre[landsat].abs().sum() == 0
    sentinel_centre = objective.centre[sentinel].clone()
    objective([torch.randn(4, 7, 48, 48)], "landsat_oli")
    assert objective.centre[landsat].abs().sum() > 0
    torch.testing.assert_close(objective.centre[sentinel], sentinel_centre, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="registered after"):
        objective([torch.randn(4, 7, 48, 48)], "not_a_sensor")
