"""Small layers of the OFA backbone: per-modality patch embedding and 2-D sin-cos position embedding."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PatchEmbed(nn.Module):
    """Non-overlapping patch embedding for one modality.

    Args:
        in_chans: number of bands of the modality.
        embed_dim: token width D.
        patch_size: patch edge P in pixels.

    Shapes:
        input ``(B, in_chans, H, W)`` with H, W multiples of P -> output ``(B, H/P * W/P, D)`` and the
        token grid ``(H/P, W/P)``.
    """

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        x = self.proj(x)
        grid = (x.shape[-2], x.shape[-1])
        return x.flatten(2).transpose(1, 2), grid


def sincos_pos_embed_2d(grid_h: int, grid_w: int, dim: int, *, device: torch.device | None = None) -> Tensor:
    """Fixed 2-D sine-cosine position embedding (MAE), defined for any grid size.

    Half of the channels encode the row, half the column, each with ``dim/4`` frequencies
    ``1 / 10000^(k / (dim/4))``.

    Returns:
        ``(grid_h * grid_w, dim)`` float32, row-major over the grid.
    """
    if dim % 4:
        raise ValueError(f"embed_dim must be divisible by 4 for 2-D sin-cos embedding, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64, device=device) / quarter)
    rows = torch.arange(grid_h, dtype=torch.float64, device=device)
    cols = torch.arange(grid_w, dtype=torch.float64, device=device)
    rr, cc = torch.meshgrid(rows, cols, indexing="ij")

    def encode(pos: Tensor) -> Tensor:
        angles = pos.reshape(-1, 1) * omega.reshape(1, -1)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(rr), encode(cc)], dim=1).float()
