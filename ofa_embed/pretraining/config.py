"""Pre-training hyper-parameters (no torch needed: the CLI reads its defaults from here)."""

from __future__ import annotations

from dataclasses import dataclass

from ofa_embed.model.config import DEFAULT_MODEL

__all__ = ["DEFAULT_TILE_SIZE", "PATCH_MULTIPLE", "PretrainConfig"]

# corpus tiles (``curate``): one size per corpus, a multiple of every patch size a recipe may use
DEFAULT_TILE_SIZE = 128
PATCH_MULTIPLE = 16


@dataclass(frozen=True)
class PretrainConfig:
    """Pre-training hyper-parameters (defaults scaled for a CPU run of ``ofa_tiny``).

    Attributes:
        model: backbone size (``ofa_tiny`` ...).
        steps: optimiser steps in total.
        batch_size: tiles per step (per rank).
        lr: peak learning rate (AdamW).
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps before cosine decay.
        mask_ratio: fraction of patches masked.
        crop: random crop edge in pixels (multiple of the patch size, <= corpus tile size).
        sampling: ``proportional`` (to tiles per modality) or ``balanced`` (uniform over modalities).
        seed: seed of initialisation, sampling and masking.
        checkpoint_every: steps between ``state.pt`` writes.
        bf16: autocast to bfloat16 on CPU too (always on CUDA).
    """

    model: str = DEFAULT_MODEL
    steps: int = 2000
    batch_size: int = 32
    lr: float = 1.5e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    mask_ratio: float = 0.75
    crop: int = 96
    sampling: str = "proportional"
    seed: int = 0
    checkpoint_every: int = 500
    bf16: bool = False
