"""Backbone configurations: a dataclass per architecture and the named sizes (no torch needed).

Kept apart from the model code so that the CLI and the store metadata can name and describe models
without importing torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ofa_embed.sensors.registry import MODALITIES

__all__ = ["CONFIG_VERSION", "CONFIGS", "DEFAULT_MODEL", "PATCH_EMBEDS", "POOLINGS", "OFAConfig", "list_models"]

# 2: patch_embed, wave_dim and pooling added; a version-1 config is the per-modality, token-mean model
CONFIG_VERSION = 2
PATCH_EMBEDS = ("spectral", "per_modality")
POOLINGS = {
    "token_mean": "mean of final-normed patch tokens",
    "mean_norm": "final norm of the mean of patch tokens",
}


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
        in_chans: band count per modality (a per-modality patch embedding and an MAE head each).
        patch_embed: ``spectral``: one wavelength-conditioned patch embedding shared by every sensor
            (its kernel is generated from each band's centre wavelength, as in DOFA), so a sensor never
            seen in training still has a trained embedding; ``per_modality``: OFA-Net's one Conv2d per
            modality plus a learned modality embedding (the version-1 design).
        wave_dim: width of the sin-cos wavelength code of the spectral patch embedding.
        pooling: how patch tokens become one embedding, a key of :data:`POOLINGS`.
        config_version: schema version of this dataclass, bumped on incompatible changes.
    """

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    patch_size: int = 16
    in_chans: dict[str, int] = field(default_factory=_registered_in_chans)
    patch_embed: str = "spectral"
    wave_dim: int = 128
    pooling: str = "token_mean"
    config_version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        if self.patch_embed not in PATCH_EMBEDS:
            raise ValueError(f"patch_embed {self.patch_embed!r}: choose one of {', '.join(PATCH_EMBEDS)}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling {self.pooling!r}: choose one of {', '.join(POOLINGS)}")

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OFAConfig:
        """The configuration in ``data`` (from :meth:`to_dict`); unknown keys are ignored.

        Raises:
            ValueError: ``config_version`` is newer than this ofa-embed.
        """
        version = int(data.get("config_version", CONFIG_VERSION))
        if version > CONFIG_VERSION:
            raise ValueError(f"model config version {version} is newer than this ofa-embed ({CONFIG_VERSION})")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if version < 2:
            known |= {"patch_embed": "per_modality", "pooling": "token_mean"}
        known["config_version"] = CONFIG_VERSION
        return cls(**known)


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


def list_models() -> list[str]:
    """The names of the model sizes in :data:`CONFIGS`."""
    return list(CONFIGS)
