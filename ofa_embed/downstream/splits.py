"""Cross-validation folds for labelled tiles: spatial blocks (default), random, or by a column.

Neighbouring tiles look alike and share labels, so a random split puts near-copies of test tiles in
the training set and overstates accuracy. A spatially blocked split cuts the plane into square
blocks (``block_size`` metres on a Lambert azimuthal equal-area projection centred on the labelled
tiles, so blocks have equal areas anywhere on Earth, poles included) and keeps every block
whole in one fold; evaluation is then on places the probe has not seen. Blocks are also the
bootstrap units of the confidence intervals (``metrics.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from ofa_embed.errors import ConfigError

__all__ = ["DEFAULT_BLOCK_TILES", "SPLITS", "Split", "assign_folds", "make_split", "spatial_blocks"]

SPLITS = ("spatial-block", "random")
DEFAULT_BLOCK_TILES = 4  # default block edge, in (median) tile widths


@dataclass
class Split:
    """Folds of the labelled samples.

    Attributes:
        kind: ``spatial-block``, ``random`` or ``column:<name>``.
        folds: ``(N,)`` fold of each sample, 0..k-1.
        groups: ``(N,)`` the unit kept whole (block, column value, or the sample itself for random).
        block_size_m: edge of the spatial blocks in metres (spatial-block only).
    """

    kind: str
    folds: np.ndarray
    groups: np.ndarray
    block_size_m: float | None = None

    @property
    def k(self) -> int:
        """The number of folds."""
        return int(self.folds.max()) + 1

    @property
    def grouped(self) -> bool:
        """Whether groups are larger than one sample (then they are the bootstrap and inner-CV units)."""
        return self.kind != "random"

    def describe(self) -> str:
        """A one-line summary: kind, block size (km) or number of units, and folds."""
        units = len(np.unique(self.groups))
        if self.kind == "spatial-block" and self.block_size_m is not None:
            return f"spatial-block ({self.block_size_m / 1000:.3g} km blocks, {units} blocks, {self.k} folds)"
        if self.kind == "random":
            return f"random ({self.k} folds; neighbouring tiles may fall on both sides, so scores can be optimistic)"
        return f"{self.kind} ({units} values, {self.k} folds)"


def _local_projection(footprints: gpd.GeoSeries) -> gpd.GeoSeries:
    """Footprints on a Lambert azimuthal equal-area projection centred on their bounding box, in metres."""
    lonlat = footprints.to_crs("OGC:CRS84")
    west, south, east, north = lonlat.total_bounds
    centre_lon = (west + east) / 2 if east - west <= 180 else 0.0
    return lonlat.to_crs(f"+proj=laea +lat_0={(south + north) / 2} +lon_0={centre_lon} +datum=WGS84 +units=m")


def spatial_blocks(footprints: gpd.GeoSeries, block_size_m: float | None = None) -> tuple[np.ndarray, float]:
    """Block id of each footprint's centroid on a ``block_size_m`` grid of the local projection, and
    the block size used (default: ``DEFAULT_BLOCK_TILES`` median tile widths, in metres).

    The grid starts at the south-west corner of the footprints, so blocks of whole tiles line up with
    a regular tiling.
    """
    projected = _local_projection(footprints)
    if block_size_m is None:
        bounds = projected.bounds
        block_size_m = float(DEFAULT_BLOCK_TILES * np.median(bounds["maxx"] - bounds["minx"]))
    if block_size_m <= 0:
        raise ConfigError(f"--block-size must be positive, got {block_size_m:g} m")
    corner = projected.total_bounds[:2]
    centres = projected.centroid
    cells = np.floor((np.column_stack([centres.x, centres.y]) - corner) / block_size_m).astype(np.int64)
    return np.unique(cells, axis=0, return_inverse=True)[1].ravel(), block_size_m


def assign_folds(groups: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Fold of each sample, keeping groups whole and balancing fold sizes.

    Groups are visited largest first (ties in random order) and each goes to the fold with the fewest
    samples so far.

    Raises:
        ConfigError: fewer groups than folds.
    """
    units, unit_of, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    if len(units) < k:
        raise ConfigError(f"only {len(units)} groups for {k} folds; use fewer --folds, a smaller --block-size, or "
                          "--split random (which holds no place out)")
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.permutation(len(units)), -sizes))
    fold_of_unit = np.empty(len(units), dtype=np.int64)
    load = np.zeros(k, dtype=np.int64)
    for unit in order:
        fold = int(np.argmin(load))
        fold_of_unit[unit] = fold
        load[fold] += sizes[unit]
    return fold_of_unit[unit_of.ravel()]


def make_split(
    kind: str, footprints: gpd.GeoSeries, k: int, *, block_size_m: float | None = None,
    column: pd.Series | None = None, seed: int = 0,
) -> Split:
    """Folds for ``kind``: ``spatial-block``, ``random`` or the name of a label column (``column`` given).

    Args:
        kind: ``spatial-block``, ``random``, or a column name (then ``column`` must be given).
        footprints: tile footprints (any CRS), one per labelled sample.
        k: number of folds (>= 2).
        block_size_m: spatial block edge in metres (default: :data:`DEFAULT_BLOCK_TILES` median tile widths).
        column: ``(N,)`` values of the split column, one per sample; samples sharing a value stay together.
        seed: seed of the tie-breaking order in :func:`assign_folds`.

    Raises:
        ConfigError: ``k`` below 2 or above the number of samples or groups, a non-positive block size, or
            an unknown ``kind`` without ``column``.
    """
    if k < 2:
        raise ConfigError(f"--folds must be at least 2, got {k}")
    if len(footprints) < k:
        raise ConfigError(f"{len(footprints)} labelled tiles are fewer than --folds {k}")
    if kind == "spatial-block":
        groups, size = spatial_blocks(footprints, block_size_m)
        return Split(kind, assign_folds(groups, k, seed), groups, size)
    if kind == "random":
        groups = np.arange(len(footprints))
        return Split(kind, assign_folds(groups, k, seed), groups)
    if column is None:
        raise ConfigError(f"--split {kind!r}: choose {', '.join(SPLITS)} or the name of a label column")
    groups = pd.factorize(column.astype(str))[0]
    return Split(f"column:{kind}", assign_folds(groups, k, seed), groups)
