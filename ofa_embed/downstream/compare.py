"""Several stores' embeddings on the same labels: the same spatial split, probe and kNN for each, one table.

Each store is probed and queried by kNN exactly as ``ofa-embed probe`` / ``knn`` do, with one block size (metres)
for every store, so that blocks, and so folds, are laid on the ground the same way whatever each store's tile
size; each store's tiles are labelled by the same label features. Intervals are the probes' 95 % block bootstrap.

With ``band_stats`` (the default), the first store whose scenes are at hand (:func:`~ofa_embed.downstream.band_stats.
scenes_at_hand`) also gives a baseline row: the per-band mean and std of its tiles, read from those scenes, probed and
queried the same way (:mod:`ofa_embed.downstream.band_stats`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ofa_embed.defaults import BOOTSTRAP_REPLICATES, CV_FOLDS, KNN_NEIGHBOURS
from ofa_embed.downstream.band_stats import band_stats_store, scenes_at_hand
from ofa_embed.downstream.experiment import knn, probe
from ofa_embed.errors import ConfigError
from ofa_embed.location import AnyPath
from ofa_embed.store import describe_store, read_metadata

__all__ = ["COMPARE_BLOCK_M", "ComparedRow", "compare"]

COMPARE_BLOCK_M = 2000.0


@dataclass(frozen=True)
class ComparedRow:
    """One method on one store: its metric with the 95 % interval and how many tiles were labelled."""

    store: str
    origin: str
    method: str
    metric: str
    value: float
    low: float
    high: float
    tiles: int


def _origin(store: str | AnyPath) -> str:
    meta = read_metadata(describe_store(store)[0].path)
    imported = meta.get("imported")
    if imported:
        return f"{imported['product']} {imported['version']} ({imported['model']})"
    return f"{meta['model']['name']} ({meta['model']['weights_hash']})"


def compare(stores: Sequence[str | AnyPath], labels: str | Path | None, target: str, *, task: str = "classify",
            folds: int = CV_FOLDS, block_size_m: float = COMPARE_BLOCK_M, k: int = KNN_NEIGHBOURS, seed: int = 0,
            n_boot: int = BOOTSTRAP_REPLICATES, band_stats: bool = True) -> list[ComparedRow]:
    """Probe and kNN of every store on the same labels and split, and of the band statistics of the first store
    whose scenes are at hand (``band_stats``; no such row when none is).

    Raises:
        ConfigError: fewer than one store.
        LabelError: labels that match no tile of a store.
    """
    if not stores:
        raise ConfigError("give at least one store to compare")
    metric = "macro_f1" if task == "classify" else "r2" if task == "regress" else "macro_f1"
    rows: list[ComparedRow] = []
    for store in stores:
        rows += _rows(store, _origin(store), labels, target, task, metric, folds, block_size_m, k, seed, n_boot)
    at_hand = next((store for store in stores if scenes_at_hand(store)), None) if band_stats else None
    if at_hand is not None:
        with tempfile.TemporaryDirectory(prefix="ofa-band-stats-") as folder:
            features = band_stats_store(at_hand, Path(folder) / "store")
            rows += [ComparedRow(f"{at_hand} (its scenes)", row.origin, row.method, row.metric, row.value, row.low,
                                 row.high, row.tiles)
                     for row in _rows(features, "band mean + std per tile", labels, target, task, metric, folds,
                                      block_size_m, k, seed, n_boot)]
    return rows


def _rows(store: str | AnyPath, origin: str, labels: str | Path | None, target: str, task: str, metric: str,
          folds: int, block_size_m: float, k: int, seed: int, n_boot: int) -> list[ComparedRow]:
    rows: list[ComparedRow] = []
    for method, report in (
        ("probe", probe(store, labels, target, task=task, folds=folds, block_size_m=block_size_m, seed=seed,
                        n_boot=n_boot)),
        (f"knn k={k}", knn(store, labels, target, k=k, task=task, folds=folds, block_size_m=block_size_m, seed=seed,
                           n_boot=n_boot)),
    ):
        for name in ("accuracy", metric) if task == "classify" else (metric,):
            estimate = report.evaluation.metrics[name]
            rows.append(ComparedRow(str(store), origin, method, name, float(estimate.value), float(estimate.low),
                                    float(estimate.high), int(report.evaluation.samples)))
    return rows
