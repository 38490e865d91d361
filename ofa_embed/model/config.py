"""Backbone configurations: a dataclass per architecture and the named sizes (no torch needed).

Kept apart from the model code so that the CLI and the store metadata can name and describe models
without importing torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ofa_embed.model.pooling import POOLINGS, check_pooling
from ofa_embed.sensors.registry import MODALITIES

__all__ = ["CONFIG_VERSION", "CONFIGS", "DEFAULT_MODEL", "DOFA_CONFIGS", "PATCH_EMBEDS", "POOLINGS", "STEMS",
           "STEM_PATCH", "DOFAConfig", "ModelConfig", "OFAConfig", "config_from_dict", "list_models"]

# 2: patch_embed, wave_dim and pooling added; a version-1 config is the per-modality, token-mean model
# 3: stem added; a version-2 (or 1) config has none
# 4: pooling token_mean_std added (embeddings of 2 x embed_dim); older configs pool as they name
CONFIG_VERSION = 4
PATCH_EMBEDS = ("spectral", "per_modality")
STEMS = ("none", "conv")
# pixel edge of the spectral embedding's cells under the conv stem: the stem's strided convolutions then
# halve the grid until it is the patch grid, so patch_size / STEM_PATCH must be a power of two
STEM_PATCH = 4


def _checked_version(data: dict[str, Any]) -> int:
    version = int(data.get("config_version", CONFIG_VERSION))
    if version > CONFIG_VERSION:
        raise ValueError(f"model config version {version} is newer than this ofa-embed ({CONFIG_VERSION})")
    return version


def _registered_in_chans() -> dict[str, int]:
    return {name: m.num_bands for name, m in MODALITIES.items()}


@dataclass(frozen=True)
class _ViTShape:
    """The fields every backbone config starts with: size name and the Vision Transformer's shape."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    patch_size: int = 16


@dataclass(frozen=True)
class OFAConfig(_ViTShape):
    """Architecture of an OFA backbone; serialised as JSON next to its weights.

    Attributes:
        name: size name (``ofa_tiny``, ``ofa_small``, ``ofa_base``, ``ofa_test``).
        embed_dim: token width D (= embedding dimension).
        depth: number of shared Transformer blocks.
        num_heads: attention heads per block.
        mlp_ratio: hidden width of each block's MLP relative to D.
        patch_size: patch edge in pixels; tile edges must be multiples of it.
        in_chans: band count per modality (a per-modality patch embedding and an MAE head each).
        patch_embed: ``spectral``: one wavelength-conditioned patch embedding shared by every sensor
            (its kernel is generated from each band's centre wavelength, as in DOFA), so a sensor never
            seen in training still has a trained embedding; ``per_modality``: OFA-Net's one Conv2d per
            modality plus a learned modality embedding (the version-1 design).
        wave_dim: width of the sin-cos wavelength code of the spectral patch embedding.
        pooling: how patch tokens become one embedding, one of :data:`POOLINGS`
            (:mod:`ofa_embed.model.pooling`).
        stem: ``none``: the spectral embedding cuts ``patch_size`` patches, one token each (ViT's
            "patchify" stem); ``conv``: it cuts :data:`STEM_PATCH` px cells into ``embed_dim / 4`` channels
            and overlapping 3 x 3 stride-2 convolutions bring them to the patch grid
            (:class:`~ofa_embed.model.layers.ConvStem`; Xiao et al. 2021, "Early convolutions help
            transformers see better"): a spatial prior for small tiles, the spectral embedding still
            the only way bands enter. Spectral patch embedding only.
        config_version: schema version of this dataclass, bumped on incompatible changes.
    """

    in_chans: dict[str, int] = field(default_factory=_registered_in_chans)
    patch_embed: str = "spectral"
    wave_dim: int = 128
    pooling: str = "token_mean"
    stem: str = "none"
    config_version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        if self.patch_embed not in PATCH_EMBEDS:
            raise ValueError(f"patch_embed {self.patch_embed!r}: choose one of {', '.join(PATCH_EMBEDS)}")
        check_pooling(self.pooling)
        if self.stem not in STEMS:
            raise ValueError(f"stem {self.stem!r}: choose one of {', '.join(STEMS)}")
        if self.stem == "conv":
            ratio = self.patch_size // STEM_PATCH
            if self.patch_embed != "spectral" or self.patch_size % STEM_PATCH or ratio < 2 or ratio & (ratio - 1):
                raise ValueError(f"the conv stem needs the spectral patch embedding and a patch size of {STEM_PATCH} "
                                 f"times a power of two (8, 16, 32), got {self.patch_embed}, {self.patch_size}")

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OFAConfig:
        """The configuration in ``data`` (from :meth:`to_dict`); unknown keys are ignored.

        Raises:
            ValueError: ``config_version`` is newer than this ofa-embed.
        """
        version = _checked_version(data)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if version < 2:
            known |= {"patch_embed": "per_modality", "pooling": "token_mean"}
        if version < 3:
            known["stem"] = "none"
        known["config_version"] = CONFIG_VERSION
        return cls(**known)


@dataclass(frozen=True)
class DOFAConfig(_ViTShape):
    """Architecture of a DOFA backbone (Xiong et al. 2024; ``ofa_embed/model/dofa.py``), as the released
    weights define it: a ViT behind DOFA's wavelength-conditioned patch embedding.

    Attributes:
        name: size name (``dofa_small``, ``dofa_base``, ``dofa_large``, ``dofa_huge``).
        embed_dim, depth, num_heads, mlp_ratio, patch_size: the ViT.
        wave_dim: width of the sin-cos wavelength code (128 in every release).
        img_size: tile edge the weights were trained on; other multiples of ``patch_size`` are valid.
        kernel_layout: how generated kernels are laid out (``SpectralPatchEmbed``): ``bands_first`` for
            TorchGeo's released files, ``legacy`` for DOFA's first release.
        band_wavelengths: per modality, per band, the wavelength (µm) the weights were trained with;
            bands not listed get the registry's physical centre.
        band_stats: per modality, per band, ``[mean, std]`` of the physical (scaled) value the weights
            were trained with, where documented; other bands are normalised with the registry's.
        trained_modalities: modalities the weights saw in training; other sensors still embed (the
            patch embedding is wavelength-conditioned), with a warning.
        positions: the position embedding; DOFA's fixed 2-D sin-cos (column half first, a zero code
            for the class token), evaluated on each tile's own patch grid, so tiles other than
            ``img_size`` get the formula's values rather than an interpolated table.
        pooling: one of :data:`POOLINGS` (DOFA: ``fc_norm`` of the mean of patch tokens).
        source_sha256: SHA-256 of the published file these weights were converted from.
        family: ``dofa``.
    """

    wave_dim: int = 128
    img_size: int = 224
    kernel_layout: str = "bands_first"
    band_wavelengths: dict[str, dict[str, float]] = field(default_factory=dict)
    band_stats: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    trained_modalities: tuple[str, ...] = ()
    positions: str = "sincos_2d_column_first_on_tile_grid"
    pooling: str = "mean_norm"
    source_sha256: str = ""
    family: str = "dofa"
    config_version: int = CONFIG_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a JSON-ready dict."""
        data = asdict(self)
        data["trained_modalities"] = list(self.trained_modalities)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DOFAConfig:
        """The configuration in ``data`` (from :meth:`to_dict`); unknown keys are ignored."""
        _checked_version(data)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["trained_modalities"] = tuple(known.get("trained_modalities", ()))
        return cls(**known)


ModelConfig = OFAConfig | DOFAConfig


def config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """The configuration of either family from its JSON dict (``family`` absent: an OFA config).

    Raises:
        ValueError: a newer config version or an unknown family.
    """
    family = data.get("family", "ofa")
    if family == "dofa":
        return DOFAConfig.from_dict(data)
    if family != "ofa":
        raise ValueError(f"unknown model family {family!r} in config")
    return OFAConfig.from_dict(data)


# --- sizes --------------------------------------------------------------------------------------------
CONFIGS: dict[str, OFAConfig] = {
    # a few hundred thousand parameters: unit tests only
    "ofa_test": OFAConfig("ofa_test", embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0),
    # ViT-Ti width, half depth: the CPU default
    "ofa_tiny": OFAConfig("ofa_tiny", embed_dim=192, depth=6, num_heads=3),
    "ofa_small": OFAConfig("ofa_small", embed_dim=384, depth=12, num_heads=6),
    "ofa_base": OFAConfig("ofa_base", embed_dim=768, depth=12, num_heads=12),
}

DEFAULT_MODEL = "ofa_tiny"

# DOFA's sizes (TorchGeo's builders); published weights exist for base and large
DOFA_CONFIGS: dict[str, DOFAConfig] = {
    "dofa_small": DOFAConfig("dofa_small", embed_dim=384, depth=12, num_heads=6),
    "dofa_base": DOFAConfig("dofa_base", embed_dim=768, depth=12, num_heads=12),
    "dofa_large": DOFAConfig("dofa_large", embed_dim=1024, depth=24, num_heads=16),
    "dofa_huge": DOFAConfig("dofa_huge", embed_dim=1280, depth=32, num_heads=16, patch_size=14),
}


def list_models() -> list[str]:
    """The names of the model sizes in :data:`CONFIGS`."""
    return list(CONFIGS)
