"""Backbone models: configs, the OFA-Net architecture and its factory.

The configs load without torch; ``OFANet`` and ``create_model`` import torch on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ofa_embed.model.config import CONFIGS, DEFAULT_MODEL, OFAConfig, list_models

if TYPE_CHECKING:
    from ofa_embed.model.ofa import OFANet, create_model

__all__ = ["CONFIGS", "DEFAULT_MODEL", "OFAConfig", "OFANet", "create_model", "list_models"]


def __getattr__(name: str) -> object:
    """Load the torch-backed names on first use."""
    if name in ("OFANet", "create_model"):
        from ofa_embed.lazy import import_whole

        return getattr(import_whole("ofa_embed.model.ofa"), name)
    raise AttributeError(f"module 'ofa_embed.model' has no attribute {name!r}")
