"""How a backbone's patch tokens become one embedding: the one pooling policy of every backbone family.

A pooling is named by one of :data:`POOLINGS` (``OFAConfig.pooling``, ``DOFAConfig.pooling``) and says
where the backbone's final LayerNorm goes relative to the mean over patch tokens:

- ``token_mean``: the norm on every token, then their mean (MAE's and the shipped checkpoint's read-out);
- ``mean_norm``: the mean of the un-normed tokens, then the norm (timm's ``global_pool="avg"`` with
  ``fc_norm``, DOFA's read-out).

The backbone API splits a pooling in two steps, as timm does: :func:`final_tokens` is what
``forward_features`` returns (the blocks' output, normed here or not), :func:`pool_tokens` what ``pool``
does with it; their composition is the embedding.

Shapes: blocks' output and tokens ``(B, N, D)`` (N patch tokens, no class token) -> embeddings ``(B, D)``.

Torch is not imported here (the functions only call tensor methods), so that the torch-free configs and
the CLI can name the poolings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["POOLINGS", "POOLING_DESCRIPTIONS", "check_pooling", "final_tokens", "pool_tokens"]

POOLINGS = ("token_mean", "mean_norm")
# what a store file records as its model's pooling (the words are part of the store metadata: keep them)
POOLING_DESCRIPTIONS = {
    "token_mean": "mean of final-normed patch tokens",
    "mean_norm": "final norm of the mean of patch tokens",
}


def check_pooling(method: str) -> str:
    """``method`` if it is one of :data:`POOLINGS`.

    Raises:
        ValueError: any other name, with the valid ones.
    """
    if method not in POOLINGS:
        raise ValueError(f"pooling {method!r}: choose one of {', '.join(POOLINGS)}")
    return method


def final_tokens(encoded: Tensor, method: str, norm: Callable[[Tensor], Tensor]) -> Tensor:
    """The blocks' output ``(B, N, D)`` -> the patch tokens ``forward_features`` returns ``(B, N, D)``:
    normed by ``norm`` under ``token_mean``, unchanged under ``mean_norm`` (the norm comes after the mean).

    Raises:
        ValueError: an unknown ``method``.
    """
    return encoded if check_pooling(method) == "mean_norm" else norm(encoded)


def pool_tokens(tokens: Tensor, method: str, norm: Callable[[Tensor], Tensor]) -> Tensor:
    """Patch tokens from :func:`final_tokens` ``(B, N, D)`` -> embeddings ``(B, D)``: their mean, normed by
    ``norm`` under ``mean_norm``.

    Raises:
        ValueError: an unknown ``method``.
    """
    pooled = tokens.mean(dim=1)
    return norm(pooled) if check_pooling(method) == "mean_norm" else pooled
