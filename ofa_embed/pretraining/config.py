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

__all__ = ["DEFAULT_OBJECTIVE", "DEFAULT_TILE_SIZE", "OBJECTIVE_OPTIONS", "PATCH_MULTIPLE", "SAMPLINGS", "DinoIBotOptions",
           "MaskedSiameseOptions", "ObjectiveOptions", "PretrainConfig"]

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

    def check_crops(self, crops: tuple[int, ...]) -> None:
        """Check the options against the edge in pixels of each view the sampler makes (default: their number,
        :meth:`check_views`).

        Raises:
            ConfigError: the objective cannot train on these views with these options.
        """
        self.check_views(len(crops))


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


@dataclass(frozen=True)
class DinoIBotOptions(ObjectiveOptions):
    """Options of ``dino_ibot`` (:class:`~ofa_embed.pretraining.objective.DinoIBot`): self-distillation from an
    EMA teacher over multi-crop views (DINO) plus the teacher's features of masked tokens (iBOT).

    The sampler's one view (``PretrainConfig.crop``, the tile itself by default) is the source of every
    crop: global crops are drawn with an edge between ``global_crop_min`` and ``global_crop_max``, local
    crops between ``local_crop_min`` and ``local_crop_max`` (multiples of the patch size; one edge per step
    for each kind, so the crops of a kind batch together).

    Attributes:
        global_crops: global crops per tile (the teacher sees these, the student too).
        global_crop_min, global_crop_max: edge range of global crops in pixels.
        local_crops: local crops per tile (student only; 0: none).
        local_crop_min, local_crop_max: edge range of local crops in pixels.
        scale_jitter: each crop is cut at ``edge * s``, ``s`` uniform in ``[1 - scale_jitter, 1 + scale_jitter]``,
            and resampled to ``edge`` (area-weighted, so radiometry is kept): small changes of ground resolution.
        band_dropout: probability that a student crop group sees a random subset of at least half the bands
            (the teacher always sees all): features that do not depend on one sensor's band set.
        prototypes: output width of the DINO head (number of prototypes).
        head_hidden: hidden width of the head's MLP.
        head_bottleneck: width of the normalised bottleneck before the prototypes.
        student_temperature: softmax temperature of the student.
        teacher_temperature: softmax temperature of the teacher (sharpening).
        centre_momentum: EMA momentum of the teacher's centres (the pooled one and the token one).
        teacher_momentum: EMA momentum of the teacher at step 0, raised to 1 by a cosine over the run.
        mask_ratio: probability that a token of a student global crop is replaced by the mask token.
        ibot_weight: weight of the masked-token loss (0: DINO alone).
        mae_weight: weight of an auxiliary MAE loss on the first global crop (0: none).
    """

    global_crops: int = 2
    global_crop_min: int = 64
    global_crop_max: int = 128
    local_crops: int = 4
    local_crop_min: int = 32
    local_crop_max: int = 48
    scale_jitter: float = 0.15
    band_dropout: float = 0.5
    prototypes: int = 1024
    head_hidden: int = 512
    head_bottleneck: int = 128
    student_temperature: float = 0.1
    teacher_temperature: float = 0.04
    centre_momentum: float = 0.9
    teacher_momentum: float = 0.996
    mask_ratio: float = 0.4
    ibot_weight: float = 1.0
    mae_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.global_crops < 1 or self.local_crops < 0:
            raise ConfigError(f"global_crops must be >= 1 and local_crops >= 0, got {self.global_crops}, {self.local_crops}")
        for kind, low, high in (("global", self.global_crop_min, self.global_crop_max),
                                ("local", self.local_crop_min, self.local_crop_max)):
            if not 0 < low <= high:
                raise ConfigError(f"{kind} crop edges must satisfy 0 < min <= max, got {low}, {high}")
        fractions = {"scale_jitter": self.scale_jitter, "band_dropout": self.band_dropout, "mask_ratio": self.mask_ratio}
        for name, value in fractions.items():
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{name} must be within [0, 1), got {value}")
        for name, value in {"centre_momentum": self.centre_momentum, "teacher_momentum": self.teacher_momentum}.items():
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be within [0, 1], got {value}")
        if min(self.student_temperature, self.teacher_temperature) <= 0:
            raise ConfigError("temperatures must be positive, got "
                              f"{self.student_temperature}, {self.teacher_temperature}")
        if min(self.prototypes, self.head_hidden, self.head_bottleneck) <= 0:
            raise ConfigError("prototypes, head_hidden and head_bottleneck must be positive")
        if self.ibot_weight < 0 or self.mae_weight < 0:
            raise ConfigError(f"loss weights must be non-negative, got {self.ibot_weight}, {self.mae_weight}")

    def check_crops(self, crops: tuple[int, ...]) -> None:
        """Every crop is cut from the sampler's one view, which must hold the largest of them.

        Raises:
            ConfigError: two views (set ``second_crop`` 0), or a view smaller than a global or local crop.
        """
        if len(crops) != 1:
            raise ConfigError("dino_ibot cuts its own crops from one view of each tile: set second_crop 0")
        largest = max(self.global_crop_max, self.local_crop_max)
        if crops[0] < largest:
            raise ConfigError(f"crop {crops[0]} is smaller than the largest dino_ibot crop ({largest} px)")


# name -> options of every objective ``pretrain`` can train (``ofa-embed pretrain --objective``)
OBJECTIVE_OPTIONS: dict[str, type[ObjectiveOptions]] = {"masked_siamese": MaskedSiameseOptions,
                                                        "dino_ibot": DinoIBotOptions}
DEFAULT_OBJECTIVE = "masked_siamese"


@dataclass(frozen=True)
class PretrainConfig:
    """Pre-training hyper-parameters (defaults scaled for a CPU run of ``ofa_tiny``).

    Attributes:
        model: backbone size (``ofa_tiny`` ...).
        patch_size: patch edge in pixels instead of the size's own (None: keep it).
        stem: the backbone's stem instead of the size's own (``none``, ``conv``: ``OFAConfig.stem``; None: keep it).
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
        bf16: bfloat16 autocast on CPU: None (default) where the CPU multiplies bfloat16 natively
            (``ofa_embed.embedding.forward.native_cpu_bf16``; emulated bfloat16 is slower than float32), True
            or False to force it; always on CUDA. The spectral embedding, losses and optimiser stay float32.
    """

    model: str = DEFAULT_MODEL
    patch_size: int | None = None
    stem: str | None = None
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
    bf16: bool | None = None

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
        self.model_config()
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be non-negative, got {self.warmup_steps}")
        if self.second_crop < 0:
            raise ConfigError(f"second_crop must be non-negative, got {self.second_crop}")
        self.objective_options.check_crops(self.crops)
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
        """The architecture to train: the named size, with ``patch_size`` and ``stem`` if given.

        Raises:
            ConfigError: a stem this patch size or patch embedding cannot take.
        """
        changes: dict[str, Any] = {"patch_size": self.patch_size, "stem": self.stem}
        try:
            return replace(CONFIGS[self.model], **{k: v for k, v in changes.items() if v is not None})
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
