"""``ofa-embed probe``: linear probe on the frozen embeddings of a store."""

from __future__ import annotations

from pathlib import Path
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
from ofa_embed.defaults import BOOTSTRAP_REPLICATES, CV_FOLDS


def probe(
    store: Store, target: Target, labels: Labels = None, task: Task = "classify", split: Split = "spatial-block",
    folds: Folds = CV_FOLDS, block_size: BlockSize = None, min_overlap: MinOverlap = None,
    save: Annotated[Path | None, typer.Option("--save", help="Write the probe fitted on all labels (JSON).")] = None,
    predict: Predict = None, plot: Plot = None, bootstrap: Bootstrap = BOOTSTRAP_REPLICATES, seed: Seed = 0,
    as_json: AsJson = False,
    dense: Annotated[bool, typer.Option(
        "--dense", help="Segment the store's embedding fields per pixel (labels: polygons); --predict is then a folder "
                        "of class COGs.")] = False,
    quiet: Quiet = False,
) -> None:
    """Fit a linear probe on labelled tiles: cross-validated metrics, the probe, predictions for every tile."""
    setup_logging(quiet or as_json)
    if dense:
        from ofa_embed.cli.segmentation_output import print_segmentation
        from ofa_embed.downstream.segmentation import segment

        if labels is None:
            raise typer.BadParameter("--dense needs --labels (polygons or points)")
        with errors_to_exit(), progress_bar(quiet or as_json, "steps") as on_progress:
            seg = segment(store, labels, target, folds=folds, block_size_m=block_size, predict=predict, save=save,
                          n_boot=bootstrap, seed=seed, on_progress=on_progress)
        print_segmentation(seg, as_json)
        return
    with errors_to_exit(), progress_bar(quiet or as_json, "steps") as on_progress:
        report = ofa_embed.probe(
            store, labels, target, task=task, split=split, folds=folds, block_size_m=block_size,
            min_overlap=min_overlap, save=save, predict=predict, plot=plot, n_boot=bootstrap, seed=seed,
            on_progress=on_progress,
        )
    print_report(report, as_json)
