"""Downstream tasks over the store: labels joined to tiles, linear probes and kNN with spatially
blocked cross-validation, bootstrapped metrics, predictions over the whole store, GEO-Bench.
"""

from ofa_embed.downstream.experiment import DownstreamReport, knn, predict, predict_store, probe
from ofa_embed.downstream.labels import LabelJoin, join_labels, read_labels
from ofa_embed.downstream.metrics import Estimate, Evaluation, evaluate
from ofa_embed.downstream.probe import ProbeModel, fit_probe
from ofa_embed.downstream.splits import Split, make_split

__all__ = [
    "DownstreamReport", "Estimate", "Evaluation", "LabelJoin", "ProbeModel", "Split", "evaluate", "fit_probe",
    "join_labels", "knn", "make_split", "predict", "predict_store", "probe", "read_labels",
]
