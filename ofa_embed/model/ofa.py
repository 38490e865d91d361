"""OFA-Net: one shared Vision Transformer for every Earth-observation modality.

Xiong et al., "One for All: Toward Unified Foundation Models for Earth Vision" (OFA-Net, 2024,
arXiv:2401.07527): each modality has its own patch embedding (a Conv2d with that modality's band
count) feeding one shared Transformer encoder, pre-trained with masked image modelling. Here the encoder
is built from pre-norm ViT blocks (:class:`~ofa_embed.model.layers.Block`, timm's parameter layout); a fixed
2-D sin-cos position embedding makes any tile size whose
edge is a multiple of the patch size valid, and a learned per-modality embedding is added to every
token. The embedding of a tile is the mean of its final-normed patch tokens.

The model knows nothing about files: it takes normalised tensors and a modality name.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ofa_embed.errors import ConfigError
from ofa_embed.model.config import CONFIGS, DEFAULT_MODEL, OFAConfig
from ofa_embed.model.layers import LAYER_NORM_EPS, Block, PatchEmbed, sincos_pos_embed_2d

__all__ = ["CONFIGS", "OFAConfig", "OFANet", "create_model"]


class OFANet(nn.Module):
    """Shared ViT encoder with one patch embedding per modality.

    Backbone API (timm style): :meth:`forward_features` returns final-normed patch tokens,
    :meth:`pool` turns tokens into one embedding, :meth:`forward` does both.
    """

    POOLING = "mean of final-normed patch tokens"  # recorded in every store file

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
        self.norm = nn.LayerNorm(config.embed_dim, eps=LAYER_NORM_EPS)
        self._pos_cache: dict[tuple[int, int, torch.device], Tensor] = {}
        self._init_weights()

    def _init_weights(self) -> None:
        for embed in self.patch_embed.values():
            assert isinstance(embed, PatchEmbed)
            # MAE: initialise the patch projection like a Linear layer (xavier on the flattened kernel)
            weight = embed.proj.weight
            nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
            if embed.proj.bias is not None:
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
        """The modality names the backbone has a patch embedding for."""
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
        # radiometry enters here: kept in float32 under a bfloat16 autocast (8 mantissa bits would round it)
        with torch.autocast(x.device.type, enabled=False):
            tokens, (gh, gw) = self.patch_embed[modality](x.float())
            return tokens + self.pos_embed(gh, gw, tokens.device) + self.modality_embed[modality]

    def forward_features(self, x: Tensor, modality: str) -> Tensor:
        """``(B, C, H, W)`` -> final-normed patch tokens ``(B, N, D)``."""
        return self.norm(self.blocks(self.embed_tokens(x, modality)))

    def pool(self, tokens: Tensor) -> Tensor:
        """Mean over patch tokens: ``(B, N, D)`` -> ``(B, D)``."""
        return tokens.mean(dim=1)

    def forward(self, x: Tensor, modality: str) -> Tensor:
        """``(B, C, H, W)`` -> embeddings ``(B, D)``."""
        return self.pool(self.forward_features(x, modality))


def create_model(config: str | OFAConfig = DEFAULT_MODEL, *, seed: int = 0) -> OFANet:
    """Build a randomly initialised backbone, deterministically for a given ``seed``.

    Args:
        config: a size name from :data:`CONFIGS` or a full :class:`OFAConfig`.
        seed: seed of the initialisation; the global RNG state is left untouched.

    Raises:
        ConfigError: unknown size name.
    """
    if isinstance(config, str):
        if config not in CONFIGS:
            raise ConfigError(f"unknown model {config!r}; choose one of: {', '.join(CONFIGS)}")
        config = CONFIGS[config]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return OFANet(config)
