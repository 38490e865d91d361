"""How a backbone's patch tokens become one embedding: the one pooling policy of every backbone family.

A pooling is named by one of :data:`POOLINGS` (``OFAConfig.pooling``, ``DOFAConfig.pooling``) and says
where the backbone's final LayerNorm goes relative to the mean over patch tokens:

- ``token_mean``: the norm on every token, then their mean (MAE's and the shipped checkpoint's read-out);
- ``mean_norm``: the mean of the un-normed tokens, then the norm (timm's ``global_pool="avg"`` with
  ``fc_norm``, DOFA's read-out);
- ``token_mean_std``: the norm on every token, then their mean and their standard deviation over the tile,
  concatenated (``2 D`` numbers): the mean says what a tile holds, the spread how uneven it is (texture,
  edges, mixed cover), which a mean alone averages away. Chosen by the backbone harness for the v3
  checkpoint (its model card has the table of readouts).

The backbone API splits a pooling in two steps, as timm does: :func:`final_tokens` is what
``forward_features`` returns (the blocks' output, normed here or not), :func:`pool_tokens` what ``pool``
does with it; their composition is the embedding.

Shapes: blocks' output and tokens ``(B, N, D)`` (N patch tokens, no class token) -> embeddings ``(B, D)``
(``(B, 2 D)`` under ``token_mean_std``: :func:`pooled_dim`).

Torch is not imported at module level (only inside :func:`pool_tokens`, given torch's tensors), so that
the torch-free configs and the CLI can name the poolings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["POOLINGS", "POOLING_DESCRIPTIONS", "check_pooling", "final_tokens", "pool_tokens", "pooled_dim"]

POOLINGS = ("token_mean", "mean_norm", "token_mean_std")
# what a store file records as its model's pooling (the words are part of the store metadata: keep them)
POOLING_DESCRIPTIONS = {
    "token_mean": "mean of final-normed patch tokens",
    "mean_norm": "final norm of the mean of patch tokens",
    "token_mean_std": "mean and standard deviation of final-normed patch tokens",
}


def check_pooling(method: str) -> str:
    """``method`` if it is one of :data:`POOLINGS`.

    Raises:
        ValueError: any other name, with the valid ones.
    """
    if method not in POOLINGS:
        raise ValueError(f"pooling {method!r}: choose one of {', '.join(POOLINGS)}")
    return method


def pooled_dim(method: str, width: int) -> int:
    """Length of the embedding that ``method`` pools from tokens of ``width`` numbers.

    Raises:
        ValueError: an unknown ``method``.
    """
    return 2 * width if check_pooling(method) == "token_mean_std" else width


def final_tokens(encoded: Tensor, method: str, norm: Callable[[Tensor], Tensor]) -> Tensor:
    """The blocks' output ``(B, N, D)`` -> the patch tokens ``forward_features`` returns ``(B, N, D)``:
    normed by ``norm`` under ``token_mean``, unchanged under ``mean_norm`` (the norm comes after the mean).

    Raises:
        ValueError: an unknown ``method``.
    """
    return encoded if check_pooling(method) == "mean_norm" else norm(encoded)


def pool_tokens(tokens: Tensor, method: str, norm: Callable[[Tensor], Tensor]) -> Tensor:
    """Patch tokens from :func:`final_tokens` ``(B, N, D)`` -> embeddings ``(B, D)``: their mean, normed by
    ``norm`` under ``mean_norm``; ``(B, 2 D)`` under ``token_mean_std``: the mean, then the population
    standard deviation over the N tokens (0 for a one-patch tile).

    Raises:
        ValueError: an unknown ``method``.
    """
    method = check_pooling(method)
    pooled = tokens.mean(dim=1)
    if method == "token_mean_std":
        # in float32 whatever the tokens' dtype: a spread of bfloat16 numbers loses its last digits
        spread = tokens.float().std(dim=1, correction=0).to(pooled.dtype)
        import torch  # loaded already: the tokens are torch's

        return torch.cat((pooled, spread), dim=-1)
    return norm(pooled) if method == "mean_norm" else pooled
