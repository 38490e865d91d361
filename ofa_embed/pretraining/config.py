"""Pre-training hyper-parameters (no torch needed: the CLI reads its defaults from here)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ofa_embed.errors import ConfigError
from ofa_embed.model.config import CONFIGS, DEFAULT_MODEL, OFAConfig

__all__ = ["DEFAULT_TILE_SIZE", "PATCH_MULTIPLE", "SAMPLINGS", "PretrainConfig"]

# corpus tiles (``curate``): one size per corpus, a multiple of every patch size a recipe may use
DEFAULT_TILE_SIZE = 128
PATCH_MULTIPLE = 16
SAMPLINGS = ("proportional", "balanced")


@dataclass(frozen=True)
class PretrainConfig:
    """Pre-training hyper-parameters (defaults scaled for a CPU run of ``ofa_tiny``).

    Attributes:
        model: backbone size (``ofa_tiny`` ...).
        patch_size: patch edge in pixels instead of the size's own (None: keep it).
        steps: optimiser steps in total.
        batch_size: tiles per step (per rank).
        lr: peak learning rate (AdamW).
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps before cosine decay.
        mask_ratio: fraction of patches masked (in every view).
        crop: edge in pixels of the first view, a random crop of the tile (multiple of the patch size,
            <= corpus tile size).
        second_crop: edge of the second view of the same tile (0: one view, MAE only).
        norm_pix_loss: MAE's per-patch normalised pixel targets instead of the normalised pixels.
        contrastive_weight: weight of the InfoNCE term between the two views (0: MAE only).
        temperature: InfoNCE temperature.
        sampling: ``proportional`` (to tiles per modality) or ``balanced`` (uniform over modalities).
        seed: seed of initialisation, sampling and masking.
        checkpoint_every: steps between ``state.pt`` writes.
        bf16: autocast to bfloat16 on CPU too (always on CUDA).
    """

    model: str = DEFAULT_MODEL
    patch_size: int | None = None
    steps: int = 2000
    batch_size: int = 32
    lr: float = 1.5e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    mask_ratio: float = 0.75
    crop: int = 96
    second_crop: int = 64
    norm_pix_loss: bool = False
    contrastive_weight: float = 0.5
    temperature: float = 0.2
    sampling: str = "proportional"
    seed: int = 0
    checkpoint_every: int = 500
    bf16: bool = False

    def __post_init__(self) -> None:
        if self.model not in CONFIGS:
            raise ConfigError(f"unknown model {self.model!r}; choose one of: {', '.join(CONFIGS)}")
        if self.sampling not in SAMPLINGS:
            raise ConfigError(f"sampling {self.sampling!r}: choose one of {', '.join(SAMPLINGS)}")
        positive = {"steps": self.steps, "batch_size": self.batch_size, "lr": self.lr, "crop": self.crop,
                    "checkpoint_every": self.checkpoint_every}
        for name, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        if self.patch_size is not None and (self.patch_size <= 0 or PATCH_MULTIPLE % self.patch_size):
            raise ConfigError(f"patch_size must divide {PATCH_MULTIPLE}, got {self.patch_size}")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be non-negative, got {self.warmup_steps}")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ConfigError(f"mask_ratio must be within (0, 1), got {self.mask_ratio}")
        if self.second_crop < 0 or self.contrastive_weight < 0 or self.temperature <= 0:
            raise ConfigError("second_crop and contrastive_weight must be non-negative and temperature positive, got "
                              f"{self.second_crop}, {self.contrastive_weight}, {self.temperature}")
        if self.contrastive_weight > 0 and not self.second_crop:
            raise ConfigError("the contrastive term needs a second view: set second_crop, or contrastive_weight 0")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be non-negative, got {self.weight_decay}")

    def model_config(self) -> OFAConfig:
        """The architecture to train: the named size, with ``patch_size`` if given."""
        config = CONFIGS[self.model]
        return config if self.patch_size is None else replace(config, patch_size=self.patch_size)
