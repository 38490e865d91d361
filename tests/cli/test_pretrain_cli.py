"""``ofa-embed pretrain``: what the library function receives, and one-line errors."""

from typer.testing import CliRunner

import ofa_embed.pretraining.train
from ofa_embed.cli.main import app
from ofa_embed.pretraining.config import DinoIBotOptions, MaskedSiameseOptions, PretrainConfig

runner = CliRunner()


def test_objective_and_its_options_reach_the_library(tmp_path, monkeypatch):
    received = {}

    def fake(corpus, out, config, *, resume, on_progress):
        received.update(corpus=corpus, config=config, resume=resume)
        return ofa_embed.pretraining.train.PretrainReport(out, config.steps, 0, 0.0, 0.0, "")

    monkeypatch.setattr(ofa_embed.pretraining.train, "pretrain", fake)
    args = ["pretrain", str(tmp_path / "corpus"), "--out", str(tmp_path / "run"), "--objective", "masked_siamese",
            "--temperature", "0.1", "--mask-ratio", "0.5", "--steps", "3", "-q"]
    assert runner.invoke(app, args).exit_code == 0
    config = received["config"]
    assert config.objective == "masked_siamese" and config.steps == 3 and not received["resume"]
    assert config.objective_options == MaskedSiameseOptions(mask_ratio=0.5, temperature=0.1)
    defaults = runner.invoke(app, args[:4] + ["-q"])
    assert defaults.exit_code == 0 and received["config"] == PretrainConfig()


def test_an_unknown_objective_is_one_line(tmp_path):
    result = runner.invoke(app, ["pretrain", str(tmp_path / "corpus"), "--out", str(tmp_path / "run"), "--objective", "nope"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "error: objective 'nope': choose one of masked_siamese" in " ".join(result.output.split())
    assert not (tmp_path / "run").exists()


def test_dino_ibot_options_and_the_stem_reach_the_library_and_unset_ones_keep_its_defaults(tmp_path, monkeypatch):
    received = {}

    def fake(corpus, out, config, *, resume, on_progress):
        received.update(config=config)
        return ofa_embed.pretraining.train.PretrainReport(out, config.steps, 0, 0.0, 0.0, "")

    monkeypatch.setattr(ofa_embed.pretraining.train, "pretrain", fake)
    args = ["pretrain", str(tmp_path / "corpus"), "--out", str(tmp_path / "run"), "--objective", "dino_ibot", "--crop", "128",
            "--second-crop", "0", "--stem", "conv", "--local-crops", "6", "--mae-weight", "0.2", "--teacher-momentum", "0.99",
            "--no-bf16", "-q"]
    assert runner.invoke(app, args).exit_code == 0
    config = received["config"]
    assert config.stem == "conv" and config.model_config().stem == "conv" and config.bf16 is False
    # masked_siamese's mask ratio (0.75) is not passed on: dino_ibot keeps its own default
    assert config.objective_options == DinoIBotOptions(local_crops=6, mae_weight=0.2, teacher_momentum=0.99)
    assert config.objective_options.mask_ratio == DinoIBotOptions().mask_ratio
