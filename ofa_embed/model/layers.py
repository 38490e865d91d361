"""Layers of the OFA backbone: per-modality patch embedding, 2-D sin-cos position embedding, Transformer block.

The block is the pre-norm ViT block (Dosovitskiy et al. 2021) with timm's parameter names
(``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``), so checkpoints are
interchangeable with timm's ``vision_transformer.Block``; it is written here in plain torch because
importing timm's model zoo takes about 3 s (it pulls in torchvision) on every command that embeds, and so
that the LayerNorm epsilon is fixed by this code, not by the installed timm (1.0.16 changed its default).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LAYER_NORM_EPS", "Attention", "Block", "Mlp", "PatchEmbed", "sincos_pos_embed_2d"]

# every LayerNorm of the backbone (blocks and final norm), as in MAE and the shipped checkpoint's training
LAYER_NORM_EPS = 1e-6


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
        """``(B, in_chans, H, W)`` -> ``(B, H/P * W/P, D)`` tokens, row-major, and the grid ``(H/P, W/P)``."""
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


class Attention(nn.Module):
    """Multi-head self-attention: ``(B, N, D)`` -> ``(B, N, D)``.

    Args:
        dim: token width D, divisible by ``num_heads``.
        num_heads: attention heads.
        qkv_bias: biases on the query/key/value projection.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Scaled dot-product attention over all tokens (no mask): ``(B, N, D)`` -> ``(B, N, D)``."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """Two-layer GELU MLP: ``(..., D)`` -> ``(..., D)`` through ``hidden`` units."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """``fc2(gelu(fc1(x)))``: ``(..., D)`` -> ``(..., D)``."""
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm Transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``; ``(B, N, D)`` in and out.

    Args:
        dim: token width D.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width relative to D.
        qkv_bias: biases on the query/key/value projection.
        eps: LayerNorm epsilon (explicit: it changes the embeddings).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 eps: float = LAYER_NORM_EPS) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        """The block on ``(B, N, D)`` tokens; same shape out."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
