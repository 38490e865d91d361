"""Backbone models: configs, the OFA-Net architecture and its factory."""

from __future__ import annotations

import torch

from ofa_embed.model.ofa import CONFIGS, OFAConfig, OFANet

__all__ = ["CONFIGS", "OFAConfig", "OFANet", "create_model", "list_models"]


def list_models() -> list[str]:
    return list(CONFIGS)


def create_model(config: str | OFAConfig = "ofa_tiny", *, seed: int = 0) -> OFANet:
    """Build a randomly initialised backbone, deterministically for a given ``seed``.

    Args:
        config: a size name from :data:`CONFIGS` or a full :class:`OFAConfig`.
        seed: seed of the initialisation; the global RNG state is left untouched.

    Raises:
        KeyError: unknown size name.
    """
    if isinstance(config, str):
        if config not in CONFIGS:
            raise KeyError(f"unknown model {config!r}; choose one of {', '.join(CONFIGS)}")
        config = CONFIGS[config]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return OFANet(config)
