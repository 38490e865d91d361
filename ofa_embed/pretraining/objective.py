"""The pre-training objective: MAE on every view, plus a contrastive term between two views of a tile.

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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ofa_embed.model.mae import OFAMAE
from ofa_embed.model.ofa import OFANet

__all__ = ["MaskedSiamese", "info_nce"]


def info_nce(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE between ``(B, E)`` projections: row i of ``a`` and of ``b`` are one tile's views."""
    a, b = F.normalize(a.float(), dim=1), F.normalize(b.float(), dim=1)
    logits = a @ b.T / temperature
    targets = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


class MaskedSiamese(nn.Module):
    """MAE around ``encoder`` with a projector for the contrastive term (discarded after training).

    Args:
        encoder: the backbone being pre-trained.
        norm_pix_loss: MAE's per-patch normalised pixel targets (False: the normalised pixels).
        contrastive_weight: weight of the InfoNCE term (0: MAE only, one view is enough).
        temperature: InfoNCE temperature.
        projection_dim: width of the projector output.
    """

    def __init__(self, encoder: OFANet, *, norm_pix_loss: bool = False, contrastive_weight: float = 0.5,
                 temperature: float = 0.2, projection_dim: int = 128) -> None:
        super().__init__()
        self.mae = OFAMAE(encoder, norm_pix_loss=norm_pix_loss)
        self.contrastive_weight = contrastive_weight
        self.temperature = temperature
        width = encoder.embed_dim
        self.projector = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, projection_dim))

    @property
    def encoder(self) -> OFANet:
        """The backbone."""
        return self.mae.encoder

    def forward(self, views: list[Tensor], modality: str, ratio: float,
                generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        """Loss over views ``[(B, C, S_v, S_v), ...]`` of the same B tiles.

        Returns:
            The total loss and its parts (``mae``: mean over views; ``contrastive``, when weighted and
            two or more views are given: InfoNCE of the first two views).
        """
        encoder = self.encoder
        reconstruction, pooled = [], []
        for images in views:
            grid = (images.shape[-2] // encoder.patch_size, images.shape[-1] // encoder.patch_size)
            encoded, mask, ids_restore = self.mae.forward_encoder(images, modality, ratio, generator)
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
