"""Pre-training objectives behind one interface, chosen by name (:data:`OBJECTIVES`, ``PretrainConfig.objective``).

An objective (:class:`Objective`) is a module built around the encoder whose forward is the loss of one
batch, the views of B tiles of one modality, and its parts by name (:attr:`Objective.log_keys`, the
columns of ``loss.csv``); its options are a dataclass of :mod:`ofa_embed.pretraining.config`
(:data:`~ofa_embed.pretraining.config.OBJECTIVE_OPTIONS`, the same names as :data:`OBJECTIVES`). The
training loop knows no more of it than that, and saves its ``state_dict`` to resume.

``masked_siamese`` (:class:`MaskedSiamese`, the default): MAE on every view, plus a contrastive term
between two views of a tile.

Masked reconstruction alone (He et al. 2022) trains tokens that rebuild pixels; nothing asks the pooled
embedding of a tile to be close to that of the same place seen differently, and that closeness is what
kNN and search use. So each tile is seen twice (two random crops of different sizes, flips and quarter
turns, each with its own random mask), and besides the MAE loss of each view, the mean-pooled embeddings
of the two masked views, through a small projector, are pulled together and pushed away from the other
tiles of the batch with a symmetric InfoNCE loss (van den Oord et al. 2018; the masked-siamese form of
MSN and CMAE). Augmentations are geometric only: in Earth observation the radiometry of a place is
signal, so the embedding is not taught to ignore it.

Reconstruction targets are the normalised pixels themselves by default (``norm_pix_loss=False``): MAE's
per-patch normalised targets discard each patch's absolute brightness and contrast, which is most of
what a band statistic knows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ofa_embed.errors import ConfigError
from ofa_embed.model.mae import OFAMAE
from ofa_embed.model.ofa import OFANet
from ofa_embed.pretraining.config import MaskedSiameseOptions, ObjectiveOptions

__all__ = ["OBJECTIVES", "MaskedSiamese", "Objective", "build_objective", "info_nce"]


class Objective(nn.Module, ABC):
    """A pre-training objective: the encoder plus whatever trains it (decoders, projectors), discarded after
    training except for the encoder.

    Subclasses set :attr:`log_keys` and :attr:`options_type` and implement :meth:`build`, :attr:`encoder` and
    :meth:`forward`.
    """

    #: the parts of the loss :meth:`forward` reports, in the order ``loss.csv`` has them as columns
    log_keys: ClassVar[tuple[str, ...]]
    #: the options dataclass of the objective (``OBJECTIVE_OPTIONS[name]``)
    options_type: ClassVar[type[ObjectiveOptions]]

    @classmethod
    @abstractmethod
    def build(cls, encoder: OFANet, options: ObjectiveOptions) -> Objective:
        """The objective around ``encoder`` with ``options`` (an instance of :attr:`options_type`)."""

    @property
    @abstractmethod
    def encoder(self) -> OFANet:
        """The backbone being pre-trained (what ``encoder.safetensors`` holds)."""

    @abstractmethod
    def forward(self, views: list[Tensor], modality: str,
                generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        """The loss of one batch: views ``[(B, C, S_v, S_v), ...]`` of the same B tiles of ``modality``.

        Returns:
            The scalar loss to minimise and its parts, keys among :attr:`log_keys` (a part the batch does
            not have is left out).
        """


def info_nce(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE between ``(B, E)`` projections: row i of ``a`` and of ``b`` are one tile's views."""
    a, b = F.normalize(a.float(), dim=1), F.normalize(b.float(), dim=1)
    logits = a @ b.T / temperature
    targets = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


class MaskedSiamese(Objective):
    """``masked_siamese``: MAE around ``encoder`` with a projector for the contrastive term.

    Args:
        encoder: the backbone being pre-trained.
        mask_ratio: fraction of patches masked in every view.
        norm_pix_loss: MAE's per-patch normalised pixel targets (False: the normalised pixels).
        contrastive_weight: weight of the InfoNCE term (0: MAE only, one view is enough).
        temperature: InfoNCE temperature.
        projection_dim: width of the projector output.
    """

    log_keys = ("mae", "contrastive")
    options_type = MaskedSiameseOptions

    def __init__(self, encoder: OFANet, *, mask_ratio: float = 0.75, norm_pix_loss: bool = False,
                 contrastive_weight: float = 0.5, temperature: float = 0.2, projection_dim: int = 128) -> None:
        super().__init__()
        self.mae = OFAMAE(encoder, norm_pix_loss=norm_pix_loss)
        self.mask_ratio = mask_ratio
        self.contrastive_weight = contrastive_weight
        self.temperature = temperature
        width = encoder.embed_dim
        self.projector = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, projection_dim))

    @classmethod
    def build(cls, encoder: OFANet, options: ObjectiveOptions) -> MaskedSiamese:
        """The objective around ``encoder`` with :class:`~ofa_embed.pretraining.config.MaskedSiameseOptions`."""
        if not isinstance(options, MaskedSiameseOptions):
            raise ConfigError(f"masked_siamese takes MaskedSiameseOptions, got {type(options).__name__}")
        return cls(encoder, mask_ratio=options.mask_ratio, norm_pix_loss=options.norm_pix_loss,
                   contrastive_weight=options.contrastive_weight, temperature=options.temperature)

    @property
    def encoder(self) -> OFANet:
        """The backbone."""
        return self.mae.encoder

    def forward(self, views: list[Tensor], modality: str,
                generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        """Loss over views ``[(B, C, S_v, S_v), ...]`` of the same B tiles, each masked at :attr:`mask_ratio`.

        Returns:
            The total loss and its parts (``mae``: mean over views; ``contrastive``, when weighted and
            two or more views are given: InfoNCE of the first two views).
        """
        encoder = self.encoder
        reconstruction, pooled = [], []
        for images in views:
            grid = (images.shape[-2] // encoder.patch_size, images.shape[-1] // encoder.patch_size)
            encoded, mask, ids_restore = self.mae.forward_encoder(images, modality, self.mask_ratio, generator)
            prediction = self.mae.forward_decoder(encoded, ids_restore, grid, modality)
            reconstruction.append(self.mae.forward_loss(images, prediction, mask))
            pooled.append(encoder.pool(encoder.finish(encoded)))
        mae_loss = torch.stack(reconstruction).mean()
        parts = {"mae": float(mae_loss.detach())}
        if self.contrastive_weight <= 0 or len(views) < 2:
            return mae_loss, parts
        contrastive = info_nce(self.projector(pooled[0]), self.projector(pooled[1]), self.temperature)
        parts["contrastive"] = float(contrastive.detach())
        return mae_loss + self.contrastive_weight * contrastive, parts


# name -> objective; the same names as OBJECTIVE_OPTIONS in pretraining/config.py (torch-free, for the CLI)
OBJECTIVES: dict[str, type[Objective]] = {"masked_siamese": MaskedSiamese}


def build_objective(name: str, encoder: OFANet, options: ObjectiveOptions) -> Objective:
    """The objective ``name`` of :data:`OBJECTIVES` around ``encoder``.

    Raises:
        ConfigError: an unknown name, or options of another objective.
    """
    if name not in OBJECTIVES:
        raise ConfigError(f"objective {name!r}: choose one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name].build(encoder, options)
