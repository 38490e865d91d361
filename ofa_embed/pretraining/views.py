"""Multi-crop views for self-distillation, made in torch from the sampler's batch of tiles.

Every augmentation here keeps radiometry, because in Earth observation the values of a place are signal:
crops, flips, quarter turns, a small change of scale (area-weighted resampling, which keeps the mean of
a window) and band dropout (a subset of the bands, fed by wavelength, never altered values). No colour
jitter, blur or solarisation: those are what natural-image recipes use and what a spectral embedding
must not learn to ignore.

Random numbers come from ``generator`` or, when it is None, from torch's global generator, whose state
``state.pt`` saves: a resumed run draws the same crops.

Shapes: tiles ``(B, C, S, S)`` -> crops ``(B, C, E, E)``; one edge E per call, so a call's crops batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["crop_edges", "draw_edge", "keep_bands", "random_crops"]


def crop_edges(low: int, high: int, patch: int, limit: int) -> list[int]:
    """The multiples of ``patch`` within ``[low, high]`` and at most ``limit`` (the source tile's edge).

    Raises:
        ValueError: no such multiple.
    """
    edges = [e for e in range(patch, min(high, limit) + 1, patch) if e >= low]
    if not edges:
        raise ValueError(f"no multiple of the patch size {patch} within [{low}, {min(high, limit)}]")
    return edges


def draw_edge(edges: list[int], generator: torch.Generator | None = None) -> int:
    """One of ``edges``, uniformly."""
    return edges[int(torch.randint(len(edges), (1,), generator=generator))]


def random_crops(tiles: Tensor, edge: int, scale_jitter: float, generator: torch.Generator | None = None) -> Tensor:
    """One random crop of every tile, ``(B, C, S, S)`` -> ``(B, C, edge, edge)``.

    The window's edge is ``edge * s`` (``s`` uniform in ``[1 - scale_jitter, 1 + scale_jitter]``, one per
    call, clipped to the tile), at an independent random position per tile, flipped left-right at random
    and turned by a random multiple of 90 degrees, then resampled to ``edge`` with an area-weighted
    (anti-aliased bilinear) filter where the window differs from ``edge``.
    """
    size, _, height, width = tiles.shape
    scale = 1.0 + scale_jitter * (2 * float(torch.rand((), generator=generator)) - 1)
    window = max(1, min(round(edge * scale), height, width))
    rows = torch.randint(height - window + 1, (size,), generator=generator).tolist()
    cols = torch.randint(width - window + 1, (size,), generator=generator).tolist()
    flips = torch.randint(2, (size,), generator=generator).tolist()
    turns = torch.randint(4, (size,), generator=generator).tolist()
    crops = []
    for i in range(size):
        cut = tiles[i, :, rows[i] : rows[i] + window, cols[i] : cols[i] + window]
        if flips[i]:
            cut = cut.flip(-1)
        crops.append(torch.rot90(cut, turns[i], (1, 2)) if turns[i] else cut)
    out = torch.stack(crops)
    if window != edge:
        out = F.interpolate(out, size=(edge, edge), mode="bilinear", align_corners=False, antialias=True)
    return out


def keep_bands(bands: int, probability: float, generator: torch.Generator | None = None) -> list[int] | None:
    """Band dropout: with ``probability``, the sorted indices of a random subset of at least half of ``bands``
    (and fewer than all); otherwise, or with a single band, None (all bands).
    """
    if bands < 2 or float(torch.rand((), generator=generator)) >= probability:
        return None
    low = (bands + 1) // 2
    kept = int(torch.randint(low, bands, (1,), generator=generator))
    return sorted(torch.randperm(bands, generator=generator)[:kept].tolist())
