"""``ofa-embed knn``: k-nearest-neighbour classification or regression through the FAISS index."""

from __future__ import annotations

from typing import Annotated

import typer

import ofa_embed
from ofa_embed.cli.common import Quiet, errors_to_exit, progress_bar, setup_logging
from ofa_embed.cli.downstream_options import (
    AsJson,
    BlockSize,
    Bootstrap,
    Folds,
    Labels,
    MinOverlap,
    Plot,
    Predict,
    Seed,
    Split,
    Store,
    Target,
    Task,
    print_report,
)
from ofa_embed.defaults import BOOTSTRAP_REPLICATES, CV_FOLDS, KNN_NEIGHBOURS


def knn(
    store: Store, target: Target, labels: Labels = None,
    k: Annotated[int, typer.Option("--k", "-k", help="Neighbours that vote.")] = KNN_NEIGHBOURS,
    task: Task = "classify", split: Split = "spatial-block", folds: Folds = CV_FOLDS, block_size: BlockSize = None,
    min_overlap: MinOverlap = None, predict: Predict = None, plot: Plot = None, bootstrap: Bootstrap = BOOTSTRAP_REPLICATES,
    seed: Seed = 0, as_json: AsJson = False,
    dense: Annotated[bool, typer.Option(
        "--dense", help="Segment the store's embedding fields per pixel by a vote of the k most similar labelled pixels "
                        "(labels: polygons); --predict is then a folder of class COGs.")] = False,
    quiet: Quiet = False,
) -> None:
    """Nearest-neighbour vote (kNN) over labelled tiles, through the store's index when built: metrics and predictions."""
    setup_logging(quiet or as_json)
    if dense:
        from ofa_embed.cli.segmentation_output import print_segmentation
        from ofa_embed.downstream.segmentation import segment

        if labels is None:
            raise typer.BadParameter("--dense needs --labels (polygons or points)")
        with errors_to_exit(), progress_bar(quiet or as_json, "steps") as on_progress:
            seg = segment(store, labels, target, folds=folds, block_size_m=block_size, predict=predict,
                          n_boot=bootstrap, seed=seed, on_progress=on_progress, method="knn", k=k)
        print_segmentation(seg, as_json)
        return
    with errors_to_exit(), progress_bar(quiet or as_json, "steps") as on_progress:
        report = ofa_embed.knn(
            store, labels, target, k=k, task=task, split=split, folds=folds, block_size_m=block_size,
            min_overlap=min_overlap, predict=predict, plot=plot, n_boot=bootstrap, seed=seed, on_progress=on_progress,
        )
    print_report(report, as_json)
