"""What a ``probe`` or ``knn`` run measured and wrote (:class:`DownstreamReport`), for the run that makes it,
the plots drawn from it and the CLI that prints it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np

from ofa_embed.downstream.labels import LabelJoin
from ofa_embed.downstream.metrics import Evaluation
from ofa_embed.downstream.probe import ProbeModel
from ofa_embed.downstream.splits import Split
from ofa_embed.location import AnyPath

__all__ = ["DownstreamReport"]


@dataclass
class DownstreamReport:
    """What a ``probe`` or ``knn`` run measured and wrote.

    Attributes:
        method: ``linear probe`` or ``kNN (k=K, <index>)``.
        evaluation: out-of-fold metrics with intervals.
        model: the probe refitted on all labelled tiles (None for kNN).
        out_of_fold: labelled tiles with ``truth``, ``prediction`` and ``fold`` columns.
    """

    method: str
    task: str
    target: str
    store: AnyPath
    labels: LabelJoin
    split: Split
    evaluation: Evaluation
    out_of_fold: gpd.GeoDataFrame
    model: ProbeModel | None = None
    predictions: Path | None = None
    plots: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready plain types (paths as strings; the out-of-fold frame left out)."""
        return {
            "method": self.method, "task": self.task, "target": self.target, "store": str(self.store),
            "labels": {"file": self.labels.source, "kind": self.labels.kind, "rows": self.labels.labels,
                       "matched": self.labels.matched, "tiles": len(self.labels.tiles), "unmatched": self.labels.unmatched},
            "split": {"kind": self.split.kind, "folds": self.split.k, "units": len(np.unique(self.split.groups)),
                      "block_size_m": self.split.block_size_m, "description": self.split.describe()},
            "evaluation": self.evaluation.to_dict(),
            "model": None if self.model is None else {"regularisation": self.model.regularisation,
                                                      "inner_cv_score": self.model.inner_score},
            "predictions": None if self.predictions is None else str(self.predictions),
            "plots": [str(p) for p in self.plots],
        }
