"""Pre-training hyper-parameters (no torch needed: the CLI reads its defaults from here).

The objective is chosen by name (:data:`OBJECTIVE_OPTIONS`, ``PretrainConfig.objective``) and keeps its own
options in a nested dataclass (``PretrainConfig.objective_options``); the torch side of each objective
is in :mod:`ofa_embed.pretraining.objective` (:data:`~ofa_embed.pretraining.objective.OBJECTIVES`, the same
names).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ofa_embed.errors import ConfigError
from ofa_embed.model.config import CONFIGS, DEFAULT_MODEL, OFAConfig

__all__ = ["DEFAULT_OBJECTIVE", "DEFAULT_TILE_SIZE", "OBJECTIVE_OPTIONS", "PATCH_MULTIPLE", "SAMPLINGS", "MaskedSiameseOptions",
           "ObjectiveOptions", "PretrainConfig"]

# corpus tiles (``curate``): one size per corpus, a multiple of every patch size a recipe may use
DEFAULT_TILE_SIZE = 128
PATCH_MULTIPLE = 16
SAMPLINGS = ("proportional", "balanced")


@dataclass(frozen=True)
class ObjectiveOptions:
    """The options of one pre-training objective: a frozen dataclass per objective, in :data:`OBJECTIVE_OPTIONS`."""

    def check_views(self, views: int) -> None:
        """Check the options against the number of views of each tile the sampler makes (1 or 2).

        Raises:
            ConfigError: the objective cannot train on that many views with these options.
        """


@dataclass(frozen=True)
class MaskedSiameseOptions(ObjectiveOptions):
    """Options of ``masked_siamese`` (:class:`~ofa_embed.pretraining.objective.MaskedSiamese`): MAE on every
    view, InfoNCE between the pooled embeddings of the first two.

    Attributes:
        mask_ratio: fraction of patches masked (in every view).
        norm_pix_loss: MAE's per-patch normalised pixel targets instead of the normalised pixels.
        contrastive_weight: weight of the InfoNCE term between the two views (0: MAE only).
        temperature: InfoNCE temperature.
    """

    mask_ratio: float = 0.75
    norm_pix_loss: bool = False
    contrastive_weight: float = 0.5
    temperature: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio < 1.0:
            raise ConfigError(f"mask_ratio must be within (0, 1), got {self.mask_ratio}")
        if self.contrastive_weight < 0 or self.temperature <= 0:
            raise ConfigError("contrastive_weight must be non-negative and temperature positive, got "
                              f"{self.contrastive_weight}, {self.temperature}")

    def check_views(self, views: int) -> None:
        """The contrastive term needs two views of each tile.

        Raises:
            ConfigError: a positive ``contrastive_weight`` with one view.
        """
        if self.contrastive_weight > 0 and views < 2:
            raise ConfigError("the contrastive term needs a second view: set second_crop, or contrastive_weight 0")


# name -> options of every objective ``pretrain`` can train (``ofa-embed pretrain --objective``)
OBJECTIVE_OPTIONS: dict[str, type[ObjectiveOptions]] = {"masked_siamese": MaskedSiameseOptions}
DEFAULT_OBJECTIVE = "masked_siamese"


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
        crop: edge in pixels of the first view, a random crop of the tile (multiple of the patch size,
            <= corpus tile size).
        second_crop: edge of the second view of the same tile (0: one view).
        objective: the training objective, a key of :data:`OBJECTIVE_OPTIONS`.
        objective_options: its options, an instance of ``OBJECTIVE_OPTIONS[objective]``.
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
    crop: int = 96
    second_crop: int = 64
    objective: str = DEFAULT_OBJECTIVE
    objective_options: ObjectiveOptions = field(default_factory=MaskedSiameseOptions)
    sampling: str = "proportional"
    seed: int = 0
    checkpoint_every: int = 500
    bf16: bool = False

    def __post_init__(self) -> None:
        if self.model not in CONFIGS:
            raise ConfigError(f"unknown model {self.model!r}; choose one of: {', '.join(CONFIGS)}")
        if self.objective not in OBJECTIVE_OPTIONS:
            raise ConfigError(f"objective {self.objective!r}: choose one of {', '.join(OBJECTIVE_OPTIONS)}")
        wanted = OBJECTIVE_OPTIONS[self.objective]
        if type(self.objective_options) is not wanted:
            raise ConfigError(f"objective {self.objective!r} takes {wanted.__name__}, got "
                              f"{type(self.objective_options).__name__}")
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
        if self.second_crop < 0:
            raise ConfigError(f"second_crop must be non-negative, got {self.second_crop}")
        self.objective_options.check_views(len(self.crops))
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be non-negative, got {self.weight_decay}")

    @property
    def crops(self) -> tuple[int, ...]:
        """Edge in pixels of each view of a tile: ``crop``, and ``second_crop`` when set."""
        return (self.crop, self.second_crop) if self.second_crop else (self.crop,)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a JSON-ready dict (the objective's options nested under ``objective_options``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PretrainConfig:
        """The configuration in ``data``: from :meth:`to_dict`, or in the older flat layout, whose objective
        options (``mask_ratio``, ``norm_pix_loss``, ``contrastive_weight``, ``temperature``) sat beside
        the others; a flat key names an option of the objective, a nested one wins over it. Keys this
        ofa-embed does not know (``corpus`` of a run's ``config.json``) are ignored.

        Raises:
            ConfigError: an unknown objective or inconsistent values.
        """
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        objective = known.setdefault("objective", DEFAULT_OBJECTIVE)
        if objective not in OBJECTIVE_OPTIONS:
            raise ConfigError(f"objective {objective!r}: choose one of {', '.join(OBJECTIVE_OPTIONS)}")
        options_type = OBJECTIVE_OPTIONS[objective]
        names = {f.name for f in fields(options_type)}
        nested = known.get("objective_options") or {}
        if isinstance(nested, ObjectiveOptions):
            nested = asdict(nested)
        options = {k: v for k, v in {**data, **nested}.items() if k in names}
        known["objective_options"] = options_type(**options)
        return cls(**known)

    def model_config(self) -> OFAConfig:
        """The architecture to train: the named size, with ``patch_size`` if given."""
        config = CONFIGS[self.model]
        return config if self.patch_size is None else replace(config, patch_size=self.patch_size)
