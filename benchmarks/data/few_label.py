"""The pure parts of the backbone harness (``benchmarks/harness.py``): spatial blocks, few-label draws,
all-label folds and the interval arithmetic. numpy, scipy and scikit-learn only: no data, no model, so
``tests/test_harness_protocol.py`` checks them on synthetic labels.

- :func:`spatial_blocks`: the group of each chip is the square block (``block_m`` metres, in its own
  projected CRS) that holds its centre; chips of different CRSs never share a block. A split over these
  groups never puts one block on both sides.
- :func:`few_label_split`: one draw of the few-label regime. The groups are split into a held-out test
  side (about ``test_share`` of the chips, stratified by class where the groups allow) and a training
  side, then ``n`` chips of every class are drawn from the training side without replacement. Seeded:
  the same seed gives the same draw. None when a class has fewer than ``n`` chips on the training side.
- :func:`all_label_folds`: the "all labels" regime, grouped stratified folds (every chip is tested once).
- :func:`mean_interval`: mean over draws with a 95 % Student-t interval (the spread of the draws, not
  a bootstrap); :func:`overlap` says whether two intervals overlap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats
from sklearn.model_selection import StratifiedGroupKFold

__all__ = ["all_label_folds", "few_label_split", "mean_interval", "overlap", "spatial_blocks"]

CONFIDENCE = 0.95


def spatial_blocks(x: np.ndarray, y: np.ndarray, crs: Sequence[str], block_m: float) -> np.ndarray:
    """``(N,)`` int group ids: chips whose centres ``(x, y)`` (metres in ``crs``) fall in one ``block_m``
    square of one CRS share a group; ids are numbered from 0 in sorted key order."""
    if block_m <= 0:
        raise ValueError(f"block size must be positive, got {block_m}")
    keys = [(str(c), int(np.floor(a / block_m)), int(np.floor(b / block_m)))
            for c, a, b in zip(crs, np.asarray(x, float), np.asarray(y, float), strict=True)]
    index = {key: i for i, key in enumerate(sorted(set(keys)))}
    return np.array([index[k] for k in keys], np.int64)


def _test_side(labels: np.ndarray, groups: np.ndarray, test_share: float, seed: int) -> np.ndarray:
    """Boolean mask of the held-out side: one fold of ``round(1 / test_share)`` grouped stratified folds."""
    folds = max(2, round(1 / test_share))
    folds = min(folds, len(np.unique(groups)))
    splitter = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
    _, test = next(iter(splitter.split(np.zeros(len(labels)), labels, groups)))
    mask = np.zeros(len(labels), bool)
    mask[test] = True
    return mask


def few_label_split(labels: np.ndarray, groups: np.ndarray, n: int | None, seed: int,
                    test_share: float = 1 / 3) -> tuple[np.ndarray, np.ndarray] | None:
    """One seeded draw: ``(train, test)`` chip indices, train = ``n`` chips of every class (all of the
    training side when ``n`` is None), test = every chip of the held-out groups.

    Returns None when some class has fewer than ``n`` chips on the training side of this draw.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    held_out = _test_side(labels, groups, test_share, seed)
    pool = np.flatnonzero(~held_out)
    if n is None:
        return pool, np.flatnonzero(held_out)
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(labels):
        members = pool[labels[pool] == cls]
        if len(members) < n:
            return None
        chosen.append(rng.choice(members, n, replace=False))
    return np.sort(np.concatenate(chosen)), np.flatnonzero(held_out)


def all_label_folds(labels: np.ndarray, groups: np.ndarray, folds: int = 5,
                    seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Grouped stratified folds over all chips: ``[(train, test), ...]``, each chip tested exactly once."""
    folds = min(folds, len(np.unique(groups)))
    splitter = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels, groups))


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``values`` with a two-sided Student-t interval over them
    (``mean +- t_{(1+confidence)/2, n-1} * sd / sqrt(n)``, sd with ``n - 1``); NaN bounds for one value."""
    values = np.asarray(values, float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf((1 + confidence) / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half


def overlap(a: tuple[float, float, float], b: tuple[float, float, float]) -> bool:
    """Whether two ``(value, low, high)`` intervals overlap (NaN bounds count as overlapping)."""
    if any(np.isnan(v) for v in (*a[1:], *b[1:])):
        return True
    return not (a[2] < b[1] or b[2] < a[1])
