"""Masked autoencoder (MAE) pre-training around the shared OFA encoder.

He et al., "Masked Autoencoders Are Scalable Vision Learners" (2022), as OFA-Net uses it: per-modality
patch embeddings in, a random 75 % of patches masked, the shared encoder on the visible patches only,
a light shared decoder, one reconstruction head per modality, and a mean-squared error on the masked
patches with per-patch normalised pixel targets. Channels are a parameter of every step, so one module
serves every modality.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ofa_embed.model.layers import LAYER_NORM_EPS, Block, sincos_pos_embed_2d
from ofa_embed.model.ofa import OFANet


def patchify(images: Tensor, patch: int) -> Tensor:
    """``(B, C, H, W)`` -> ``(B, N, P*P*C)`` with ``N = (H/P)*(W/P)``, row-major patches, (p, q, c) order."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: Tensor, patch: int, grid: tuple[int, int], channels: int) -> Tensor:
    """Inverse of :func:`patchify`: ``(B, N, P*P*C)`` -> ``(B, C, H, W)``."""
    b = patches.shape[0]
    gh, gw = grid
    x = patches.reshape(b, gh, gw, patch, patch, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, channels, gh * patch, gw * patch)


def random_masking(tokens: Tensor, ratio: float, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Keep a random ``1 - ratio`` of the tokens of each sample (argsort of uniform noise).

    Returns:
        ``(kept, mask, ids_restore)``: kept ``(B, K, D)``; mask ``(B, N)`` with 1 = masked; and the
        permutation that puts the shuffled sequence back in order.
    """
    b, n, d = tokens.shape
    keep = max(1, int(round(n * (1 - ratio))))
    noise = torch.rand(b, n, device=tokens.device, generator=generator)
    ids_shuffle = noise.argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    kept = torch.gather(tokens, 1, ids_shuffle[:, :keep, None].expand(-1, -1, d))
    mask = torch.ones(b, n, device=tokens.device)
    mask[:, :keep] = 0
    return kept, torch.gather(mask, 1, ids_restore), ids_restore


class OFAMAE(nn.Module):
    """MAE wrapper: the encoder is an :class:`OFANet`; decoder and heads are discarded after training.

    Args:
        encoder: the backbone being pre-trained.
        decoder_dim, decoder_depth, decoder_heads: the light shared decoder.
        norm_pix_loss: normalise each target patch by its own mean/variance (MAE's better variant).
    """

    def __init__(self, encoder: OFANet, decoder_dim: int = 128, decoder_depth: int = 2, decoder_heads: int = 4,
                 norm_pix_loss: bool = True) -> None:
        super().__init__()
        self.encoder = encoder
        self.patch = encoder.patch_size
        self.norm_pix_loss = norm_pix_loss
        self.decoder_dim = decoder_dim
        self.decoder_embed = nn.Linear(encoder.embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_blocks = nn.Sequential(
            *[Block(decoder_dim, decoder_heads, 4.0, qkv_bias=True) for _ in range(decoder_depth)]
        )
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=LAYER_NORM_EPS)
        self.heads = nn.ModuleDict({
            name: nn.Linear(decoder_dim, self.patch * self.patch * chans)
            for name, chans in encoder.config.in_chans.items()
        })
        nn.init.normal_(self.mask_token, std=0.02)

    def forward_encoder(self, images: Tensor, modality: str, ratio: float,
                        generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Encode a random ``1 - ratio`` of the patches of ``(B, C, H, W)`` images.

        Returns:
            ``(encoded, mask, ids_restore)``: the blocks' output for the kept patches ``(B, K, D)``
            (before the final norm), mask ``(B, N)`` with 1 = masked, and the ``(B, N)`` permutation back
            to patch order (see :func:`random_masking`).
        """
        tokens = self.encoder.embed_tokens(images, modality)
        kept, mask, ids_restore = random_masking(tokens, ratio, generator)
        return self.encoder.blocks(kept), mask, ids_restore

    def forward_decoder(self, encoded: Tensor, ids_restore: Tensor, grid: tuple[int, int], modality: str) -> Tensor:
        """Reconstruct every patch from the kept tokens ``(B, K, D)`` (blocks' output), mask tokens filling the others.

        Returns:
            ``(B, N, P*P*C)`` predicted pixels per patch, in patch order over the ``grid`` (rows, columns),
            with ``modality``'s head (C = its bands).
        """
        x = self.decoder_embed(self.encoder.norm(encoded))
        b, kept, d = x.shape
        n = ids_restore.shape[1]
        x = torch.cat([x, self.mask_token.expand(b, n - kept, d)], dim=1)
        x = torch.gather(x, 1, ids_restore[:, :, None].expand(-1, -1, d))
        x = x + sincos_pos_embed_2d(*grid, d, device=x.device)[None].to(x.dtype)
        return self.heads[modality](self.decoder_norm(self.decoder_blocks(x)))

    def forward_loss(self, images: Tensor, prediction: Tensor, mask: Tensor) -> Tensor:
        """Mean squared error over masked patches (per-patch normalised targets if ``norm_pix_loss``)."""
        target = patchify(images, self.patch)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        per_patch = ((prediction.float() - target) ** 2).mean(dim=-1)
        return (per_patch * mask).sum() / mask.sum().clamp(min=1)

    def forward(self, images: Tensor, modality: str, ratio: float = 0.75,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(B, C, H, W)`` -> ``(loss, prediction (B, N, P*P*C), mask (B, N))``."""
        grid = (images.shape[-2] // self.patch, images.shape[-1] // self.patch)
        encoded, mask, ids_restore = self.forward_encoder(images, modality, ratio, generator)
        prediction = self.forward_decoder(encoded, ids_restore, grid, modality)
        return self.forward_loss(images, prediction, mask), prediction, mask
