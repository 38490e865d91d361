"""OFA-Net: one shared Vision Transformer for every Earth-observation modality.

Xiong et al., "One for All: Toward Unified Foundation Models for Earth Vision" (OFA-Net, 2024,
arXiv:2401.07527): each modality has its own patch embedding (a Conv2d with that modality's band
count) feeding one shared Transformer encoder, pre-trained with masked image modelling. Here the encoder
is built from timm ``Block`` layers; a fixed 2-D sin-cos position embedding makes any tile size whose
edge is a multiple of the patch size valid, and a learned per-modality embedding is added to every
token. The embedding of a tile is the mean of its final-normed patch tokens.

The model knows nothing about files: it takes normalised tensors and a modality name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from ofa_embed.model.layers import PatchEmbed, sincos_pos_embed_2d
from ofa_embed.modalities import MODALITIES

CONFIG_VERSION = 1


def _registered_in_chans() -> dict[str, int]:
    return {name: m.num_bands for name, m in MODALITIES.items()}


@dataclass(frozen=True)
class OFAConfig:
    """Architecture of an OFA backbone; serialised as JSON next to its weights.

    Attributes:
        name: size name (``ofa_tiny``, ``ofa_small``, ``ofa_base``, ``ofa_test``).
        embed_dim: token width D (= embedding dimension).
        depth: number of shared Transformer blocks.
        num_heads: attention heads per block.
        mlp_ratio: hidden width of each block's MLP relative to D.
        patch_size: patch edge in pixels; tile edges must be multiples of it.
        in_chans: band count per modality, one patch embedding each.
        config_version: schema version of this dataclass, bumped on incompatible changes.
    """

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    patch_size: int = 16
    in_chans: dict[str, int] = field(default_factory=_registered_in_chans)
    config_version: int = CONFIG_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OFAConfig:
        version = int(data.get("config_version", CONFIG_VERSION))
        if version > CONFIG_VERSION:
            raise ValueError(f"model config version {version} is newer than this ofa-embed ({CONFIG_VERSION})")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class OFANet(nn.Module):
    """Shared ViT encoder with one patch embedding per modality.

    Backbone API (timm style): :meth:`forward_features` returns final-normed patch tokens,
    :meth:`pool` turns tokens into one embedding, :meth:`forward` does both.
    """

    def __init__(self, config: OFAConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_dim = config.embed_dim
        self.patch_size = config.patch_size
        self.patch_embed = nn.ModuleDict(
            {name: PatchEmbed(c, config.embed_dim, config.patch_size) for name, c in config.in_chans.items()}
        )
        self.modality_embed = nn.ParameterDict(
            {name: nn.Parameter(torch.zeros(1, 1, config.embed_dim)) for name in config.in_chans}
        )
        self.blocks = nn.Sequential(
            *[Block(config.embed_dim, config.num_heads, config.mlp_ratio, qkv_bias=True) for _ in range(config.depth)]
        )
        self.norm = nn.LayerNorm(config.embed_dim, eps=1e-6)
        self._pos_cache: dict[tuple[int, int, torch.device], Tensor] = {}
        self._init_weights()

    def _init_weights(self) -> None:
        for embed in self.patch_embed.values():
            # MAE: initialise the patch projection like a Linear layer (xavier on the flattened kernel)
            weight = embed.proj.weight
            nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
            nn.init.zeros_(embed.proj.bias)
        for param in self.modality_embed.values():
            nn.init.trunc_normal_(param, std=0.02)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.config.in_chans)

    def pos_embed(self, grid_h: int, grid_w: int, device: torch.device) -> Tensor:
        """``(1, grid_h * grid_w, D)`` position embedding, cached per grid and device."""
        key = (grid_h, grid_w, device)
        if key not in self._pos_cache:
            self._pos_cache[key] = sincos_pos_embed_2d(grid_h, grid_w, self.embed_dim, device=device)[None]
        return self._pos_cache[key]

    def embed_tokens(self, x: Tensor, modality: str) -> Tensor:
        """Patch tokens with position and modality embeddings, before the encoder.

        Args:
            x: ``(B, C, H, W)`` normalised tile batch, C = bands of ``modality``.
            modality: registered modality name.

        Returns:
            ``(B, N, D)`` with ``N = (H / P) * (W / P)``.
        """
        if modality not in self.patch_embed:
            raise KeyError(f"model has no patch embedding for modality {modality!r}; has {self.modalities}")
        expected = self.config.in_chans[modality]
        if x.ndim != 4 or x.shape[1] != expected:
            raise ValueError(f"{modality} expects input (B, {expected}, H, W), got {tuple(x.shape)}")
        if x.shape[-1] % self.patch_size or x.shape[-2] % self.patch_size:
            raise ValueError(f"tile size {tuple(x.shape[-2:])} is not a multiple of patch size {self.patch_size}")
        tokens, (gh, gw) = self.patch_embed[modality](x)
        pos = self.pos_embed(gh, gw, tokens.device).to(tokens.dtype)
        return tokens + pos + self.modality_embed[modality].to(tokens.dtype)

    def forward_features(self, x: Tensor, modality: str) -> Tensor:
        """``(B, C, H, W)`` -> final-normed patch tokens ``(B, N, D)``."""
        return self.norm(self.blocks(self.embed_tokens(x, modality)))

    def pool(self, tokens: Tensor) -> Tensor:
        """Mean over patch tokens: ``(B, N, D)`` -> ``(B, D)``."""
        return tokens.mean(dim=1)

    def forward(self, x: Tensor, modality: str) -> Tensor:
        """``(B, C, H, W)`` -> embeddings ``(B, D)``."""
        return self.pool(self.forward_features(x, modality))


# --- sizes --------------------------------------------------------------------------------------------
CONFIGS: dict[str, OFAConfig] = {
    # a few hundred thousand parameters: unit tests only
    "ofa_test": OFAConfig("ofa_test", embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0),
    # ViT-Ti width, half depth: the CPU default
    "ofa_tiny": OFAConfig("ofa_tiny", embed_dim=192, depth=6, num_heads=3),
    "ofa_small": OFAConfig("ofa_small", embed_dim=384, depth=12, num_heads=6),
    "ofa_base": OFAConfig("ofa_base", embed_dim=768, depth=12, num_heads=12),
}
