"""OFA-Net: one shared Vision Transformer for every Earth-observation modality.

Xiong et al., "One for All: Toward Unified Foundation Models for Earth Vision" (OFA-Net, 2024,
arXiv:2401.07527): patch embeddings feed one shared Transformer encoder, pre-trained with masked image
modelling. Two patch embeddings (``OFAConfig.patch_embed``):

- ``spectral`` (default since config version 2): one wavelength-conditioned embedding for every sensor
  (:class:`~ofa_embed.model.layers.SpectralPatchEmbed`, DOFA's design): a band is known by its centre
  wavelength, so every sensor trains the same spectral encoder and an unseen sensor still works.
- ``per_modality`` (OFA-Net, config version 1): one Conv2d per modality with that modality's band count,
  plus a learned per-modality embedding added to every token.

With ``OFAConfig.stem == "conv"`` the spectral embedding cuts smaller cells and an overlapping convolutional
stem (:class:`~ofa_embed.model.layers.ConvStem`) brings them to the patch grid: bands still enter only through
the wavelength-conditioned embedding, the stem adds a spatial prior for small tiles.

The encoder is built from pre-norm ViT blocks (:class:`~ofa_embed.model.layers.Block`, timm's parameter
layout); a fixed 2-D sin-cos position embedding makes any tile size whose edge is a multiple of the patch
size valid. The embedding of a tile pools its patch tokens as ``OFAConfig.pooling`` says.

The model knows nothing about files: it takes normalised tensors and a modality name (whose band
wavelengths come from the sensor registry) or explicit band wavelengths.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ofa_embed.errors import ConfigError
from ofa_embed.model.config import CONFIGS, DEFAULT_MODEL, STEM_PATCH, OFAConfig
from ofa_embed.model.layers import (
    LAYER_NORM_EPS,
    POLARISATIONS,
    Block,
    ConvStem,
    PatchEmbed,
    SpectralPatchEmbed,
    sincos_pos_embed_2d,
)
from ofa_embed.model.pooling import POOLING_DESCRIPTIONS, final_tokens, pool_tokens, pooled_dim
from ofa_embed.sensors.registry import MODALITIES

__all__ = ["CONFIGS", "OFAConfig", "OFANet", "create_model"]

# DOFA's factor on generated kernels; the generator's init divides it out again (see _init_weights)
SPECTRAL_KERNEL_SCALE = 0.01
SPECTRAL_INIT_GAIN = 0.01


class OFANet(nn.Module):
    """Shared ViT encoder behind a spectral or per-modality patch embedding.

    Backbone API (timm style): :meth:`forward_features` returns final-normed patch tokens,
    :meth:`pool` turns them into one embedding, :meth:`forward` does both.
    """

    def __init__(self, config: OFAConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_dim = config.embed_dim
        self.patch_size = config.patch_size
        self.spectral = config.patch_embed == "spectral"
        self.patch_embed: SpectralPatchEmbed | nn.ModuleDict
        self.stem: ConvStem | None = None
        if self.spectral and config.stem == "conv":
            width = config.embed_dim // 4
            self.patch_embed = SpectralPatchEmbed(width, STEM_PATCH, config.wave_dim, kernel_scale=SPECTRAL_KERNEL_SCALE)
            self.stem = ConvStem(width, config.embed_dim, config.patch_size // STEM_PATCH)
        elif self.spectral:
            self.patch_embed = SpectralPatchEmbed(config.embed_dim, config.patch_size, config.wave_dim,
                                                  kernel_scale=SPECTRAL_KERNEL_SCALE)
        else:
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

    @property
    def pooling(self) -> str:
        """How patch tokens become the embedding, in words (recorded in every store file)."""
        return POOLING_DESCRIPTIONS[self.config.pooling]

    @property
    def embedding_dim(self) -> int:
        """Length of the pooled embedding (:meth:`pool`; ``embed_dim`` is a token's)."""
        return pooled_dim(self.config.pooling, self.embed_dim)

    def _init_weights(self) -> None:
        if isinstance(self.patch_embed, SpectralPatchEmbed):
            # generated kernels start with the spread of a xavier-initialised patch projection
            generator = self.patch_embed.weight_generator
            fan_in = self.config.wave_dim
            nn.init.normal_(generator.fc_weight.weight, std=SPECTRAL_INIT_GAIN / (fan_in**0.5 * SPECTRAL_KERNEL_SCALE))
            nn.init.zeros_(generator.fc_weight.bias)
        else:
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
        """The modality names the backbone embeds (spectral: every registered sensor)."""
        return tuple(MODALITIES) if self.spectral else tuple(self.config.in_chans)

    @property
    def wavelength_conditioned(self) -> bool:
        """Whether bands are inputs (spectral: a missing band is left out, not filled)."""
        return self.spectral

    def band_wavelengths(self, modality: str, bands: Sequence[str] | None = None) -> list[float]:
        """Centre wavelengths (µm) of ``bands`` (default: all) of a registered modality, from the registry."""
        by_name = {b.name: b.wavelength_um for b in MODALITIES[modality].bands}
        return [by_name[name] for name in (bands or list(by_name))]

    def unseen_bands(self, modality: str, bands: Sequence[str] | None = None) -> list[str]:
        """Bands fed at a wavelength the weights were not trained with: none (training used the registry's)."""
        return []

    def band_keys(self, modality: str, bands: Sequence[str] | None = None) -> tuple[Tensor, Tensor]:
        """``(C,)`` float32 centre wavelengths (µm) and ``(C,)`` polarisation codes of ``bands`` (default: all)
        of a registered modality.
        """
        names = list(bands or MODALITIES[modality].band_names)
        return (torch.tensor(self.band_wavelengths(modality, names), dtype=torch.float32),
                torch.tensor([POLARISATIONS.get(name, 0) for name in names], dtype=torch.long))

    def pos_embed(self, grid_h: int, grid_w: int, device: torch.device) -> Tensor:
        """``(1, grid_h * grid_w, D)`` position embedding, cached per grid and device."""
        key = (grid_h, grid_w, device)
        if key not in self._pos_cache:
            self._pos_cache[key] = sincos_pos_embed_2d(grid_h, grid_w, self.embed_dim, device=device)[None]
        return self._pos_cache[key]

    def embed_tokens(self, x: Tensor, modality: str | None, wavelengths_um: Tensor | None = None,
                     bands: Sequence[str] | None = None) -> Tensor:
        """Patch tokens with position (and, per-modality, modality) embeddings, before the encoder.

        Args:
            x: ``(B, C, H, W)`` normalised tile batch, C = bands of ``modality`` (or of ``bands``).
            modality: registered modality name (None with explicit ``wavelengths_um``).
            wavelengths_um: spectral embedding only: ``(C,)`` centre wavelengths of the bands of ``x``
                in µm, for a sensor the registry does not know.
            bands: spectral embedding only: the names of the modality's bands in ``x``, a subset in
                ``x``'s order (default: all).

        Returns:
            ``(B, N, D)`` with ``N = (H / P) * (W / P)``.
        """
        if (wavelengths_um is not None or bands is not None) and not self.spectral:
            raise ValueError("explicit bands or band wavelengths need the spectral patch embedding")
        if wavelengths_um is None:
            if modality not in self.modalities:
                raise KeyError(f"model has no patch embedding for modality {modality!r}; has {self.modalities}")
            expected = len(bands) if bands is not None else (
                MODALITIES[modality].num_bands if self.spectral else self.config.in_chans[modality])
            if x.ndim != 4 or x.shape[1] != expected:
                raise ValueError(f"{modality} expects input (B, {expected}, H, W), got {tuple(x.shape)}")
        if x.shape[-1] % self.patch_size or x.shape[-2] % self.patch_size:
            raise ValueError(f"tile size {tuple(x.shape[-2:])} is not a multiple of patch size {self.patch_size}")
        # radiometry enters here: kept in float32 under a bfloat16 autocast (8 mantissa bits would round it)
        with torch.autocast(x.device.type, enabled=False):
            if not isinstance(self.patch_embed, SpectralPatchEmbed):
                assert modality is not None
                tokens, (gh, gw) = self.patch_embed[modality](x.float())
                return tokens + self.pos_embed(gh, gw, tokens.device) + self.modality_embed[modality]
            if wavelengths_um is None:
                assert modality is not None
                tokens, (gh, gw) = self.patch_embed(x.float(), *self.band_keys(modality, bands))
            else:
                tokens, (gh, gw) = self.patch_embed(x.float(), wavelengths_um.float())
        if self.stem is not None:
            # the stem works on features the spectral embedding made, no longer on radiometry: autocast may apply
            tokens, (gh, gw) = self.stem(tokens, (gh, gw))
        return tokens + self.pos_embed(gh, gw, tokens.device)

    def forward_features(self, x: Tensor, modality: str | None, wavelengths_um: Tensor | None = None,
                         bands: Sequence[str] | None = None) -> Tensor:
        """``(B, C, H, W)`` -> patch tokens ``(B, N, D)``: final-normed, except under ``mean_norm`` pooling,
        where (as timm does with ``fc_norm``) the norm comes after the mean, in :meth:`pool`
        (:func:`~ofa_embed.model.pooling.final_tokens`).
        """
        return self.finish(self.blocks(self.embed_tokens(x, modality, wavelengths_um, bands)))

    def finish(self, encoded: Tensor) -> Tensor:
        """Output of the blocks ``(B, N, D)`` -> the tokens :meth:`forward_features` returns."""
        return final_tokens(encoded, self.config.pooling, self.norm)

    def pool(self, tokens: Tensor) -> Tensor:
        """Patch tokens from :meth:`forward_features` ``(B, N, D)`` -> embeddings ``(B, E)``
        (:func:`~ofa_embed.model.pooling.pool_tokens`).
        """
        return pool_tokens(tokens, self.config.pooling, self.norm)

    def forward(self, x: Tensor, modality: str | None, wavelengths_um: Tensor | None = None,
                bands: Sequence[str] | None = None) -> Tensor:
        """``(B, C, H, W)`` -> embeddings ``(B, E)``, E = :attr:`embedding_dim`."""
        return self.pool(self.forward_features(x, modality, wavelengths_um, bands))


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
