"""The run pipeline shared by a local extraction and a Dask run's tasks: a run's model, what each scene feeds
it, and planned scenes -> batches of tiles -> embeddings, as per-scene tile records.

Reading runs in a background thread that fills batches of normalised tiles while the model embeds
earlier ones (rasterio, numpy and torch all release the GIL), so end-to-end throughput approaches
the model's; the forward passes run as :mod:`ofa_embed.embedding.forward` decides (on CPU, concurrent
single-thread workers). The reader thread and the model workers are stopped and joined when the pipeline
is closed, on every exit path (error, interrupt), before the scenes' files are closed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ofa_embed.embedding.forward import (
    DenseOutput,
    ModelInput,
    batches_held,
    dense_batches,
    embed_batches,
    model_input,
    model_workers,
    resolve_device,
    resolve_precision,
)
from ofa_embed.embedding.options import RunOptions
from ofa_embed.model.checkpoint import LoadedModel
from ofa_embed.model.weights import load_weights
from ofa_embed.progress import ProgressCallback
from ofa_embed.raster.reader import TileBatch, TilePlan, TileRing, prefetched, read_tile_batches
from ofa_embed.raster.scene import Scene
from ofa_embed.sensors import CUSTOM
from ofa_embed.store import TileRecords
from ofa_embed.tiling import TileWindow, footprints

__all__ = ["RunModel", "TokenSink", "embed_plan", "embed_plans", "feed", "load_run_model", "read_plans"]

logger = logging.getLogger(__name__)


class RunModel(NamedTuple):
    """A run's model on its device, and the precision its forward passes run at (``fp32`` or ``bf16``)."""

    loaded: LoadedModel
    device: torch.device
    precision: str


def load_run_model(weights: str | Path | None, model: str, weights_layout: str | None, device: str | None,
                   precision: str) -> RunModel:
    """A run's model (:func:`~ofa_embed.model.weights.load_weights`) moved to its device, with ``precision``
    resolved for that device (:func:`~ofa_embed.embedding.forward.resolve_precision`).

    Raises:
        OFAEmbedError subclasses: weights that cannot be loaded, an unknown model or precision.
    """
    loaded = load_weights(weights, model, weights_layout)
    torch_device = resolve_device(device)
    loaded.model.to(torch_device)
    return RunModel(loaded, torch_device, resolve_precision(precision, torch_device))


def feed(scene: Scene, loaded: LoadedModel) -> ModelInput:
    """What the model is fed for ``scene``, with a line logged for given wavelengths and for untrained bands."""
    fed = model_input(loaded.model, scene.modality, scene.missing_bands, scene.band_scaling())
    if scene.modality.name == CUSTOM:
        logger.info("%s: fed at the given wavelengths %s µm", scene.path, ", ".join(map(str, fed.wavelengths_um or ())))
    elif unseen := loaded.model.unseen_bands(scene.modality.name, fed.bands):
        logger.warning("%s: %s was not trained on %s band(s) %s; they are fed at their physical centre wavelengths",
                       scene.path, loaded.model.config.name, scene.modality.name, ", ".join(unseen))
    return fed


def read_plans(plans: Sequence[TilePlan], batch_size: int, min_valid: float, stop: threading.Event,
               held: int, patch: int = 0) -> Iterator[TileBatch]:
    """The batches of every plan in turn, as a run reads them, each tagged with its plan's position
    (``batch.scene``); ``patch``: each batch with the valid fraction of each patch of that size
    (``batch.patch_valid``).

    A scene's files are open while it is read (the reader opens the next as the model embeds the last batches
    of the previous), and all share one ring of ``held`` arrays
    (:func:`~ofa_embed.embedding.forward.batches_held`); the run's first and last windows are read in halves.
    Once ``stop`` is set, the scenes left are not opened.
    """
    ring = TileRing(held)
    for number, plan in enumerate(plans):
        if stop.is_set():  # stopped (an error, an interrupt): the scenes left are not reopened
            return
        with plan.scene.reading():
            edges = (number == 0, number == len(plans) - 1)
            for batch in read_tile_batches(plan, batch_size, min_valid, stop, held, ring, edges, patch):
                batch.scene = number
                yield batch


# called with (plan position, batch (tiles, patch_valid), its patch tokens (B, N, D)), in the consumer's thread
TokenSink = Callable[[int, TileBatch, np.ndarray], None]


def embed_plans(
    plans: Sequence[TilePlan], run: RunModel, fed: ModelInput, options: RunOptions, on_progress: ProgressCallback | None,
    on_tokens: TokenSink | None = None,
) -> Generator[tuple[TilePlan, TileRecords, int], None, None]:
    """Embed the tiles of ``plans`` (scenes fed alike, as ``fed``: :func:`feed`) through one reader thread and one
    set of model workers: ``(plan, kept tiles' records, tiles skipped below min_valid)`` per scene, in order,
    as soon as its last batch is embedded. ``options`` give the batch size and ``min_valid``.

    The reader goes on into the next scene, and the model with it, while the caller writes the previous
    one, so a run of many scenes never waits at a scene boundary. A scene whose every tile is below
    ``min_valid`` gets empty records. Close the generator (``contextlib.closing``) to stop the reader and the
    workers early.

    ``on_tokens`` (a dense run): the forward passes return patch tokens, handed to it with their batch (whose
    ``patch_valid`` the reader counted), and each tile's embedding is the backbone's pooling of them, pooled
    in the model workers (:func:`~ofa_embed.embedding.forward.embed_dense`). ``batch.data`` is not for the sink
    to keep: the reader reuses it.
    """
    loaded, device, precision = run
    dim = loaded.model.embedding_dim
    # filled in place: keeping each batch's small output tensor alive instead pins freed batch-sized
    # heap blocks around it (glibc cannot trim them). Allocated when a scene's first batch arrives and
    # dropped once it is handed over, so a run of many scenes holds about one scene's arrays.
    arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    kept: list[list[TileWindow]] = [[] for _ in plans]
    skipped = [0] * len(plans)
    stop = threading.Event()
    workers, threads = model_workers(device)
    patch = loaded.model.patch_size if on_tokens is not None else 0
    reader = read_plans(plans, options.batch_size, options.min_valid, stop, batches_held(workers), patch)
    finished = 0
    forward = embed_batches if on_tokens is None else dense_batches
    with prefetched(reader, stop) as batches, closing(
        forward(batches, loaded.model, fed, device, workers, threads, precision)
    ) as embedded:
        output: np.ndarray | DenseOutput
        for batch, output in embedded:
            number, plan = batch.scene, plans[batch.scene]
            if isinstance(output, DenseOutput):  # pooled in the worker: the consumer runs no torch
                if on_tokens is not None and batch.tiles:
                    on_tokens(number, batch, output.tokens)
                output = output.pooled
            if number not in arrays:
                arrays[number] = (np.empty(len(plan.tiles), np.float32), np.empty((len(plan.tiles), dim), np.float32))
            fractions, embeddings = arrays[number]
            done = len(kept[number])
            if batch.tiles:
                embeddings[done : done + len(batch.tiles)] = output
                fractions[done : done + len(batch.tiles)] = batch.valid_fraction
            kept[number] += batch.tiles
            skipped[number] += batch.skipped
            if on_progress:
                on_progress(plan.scene.name, len(kept[number]) + skipped[number], len(plan.tiles))
            while finished < len(plans) and len(kept[finished]) + skipped[finished] == len(plans[finished].tiles):
                fractions, embeddings = arrays.pop(finished)
                yield plans[finished], _tile_records(plans[finished], kept[finished], fractions, embeddings), skipped[finished]
                kept[finished] = []
                finished += 1


def embed_plan(plan: TilePlan, run: RunModel, fed: ModelInput, options: RunOptions,
               on_progress: ProgressCallback | None) -> tuple[TileRecords, int]:
    """One scene's :func:`embed_plans`: its records and skipped count."""
    (_, records, skipped), = embed_plans([plan], run, fed, options, on_progress)
    return records, skipped


def _tile_records(plan: TilePlan, kept: list[TileWindow], fractions: np.ndarray, embeddings: np.ndarray) -> TileRecords:
    """The store columns of a scene's ``kept`` tiles, from its filled ``fractions`` and ``embeddings``."""
    if not kept:
        empty = np.empty(0, np.int64)
        return TileRecords(empty, empty, empty, empty, np.empty(0, bool), fractions[:0], np.empty((0, 4, 2)),
                           embeddings[:0])
    _, lonlat = footprints(kept, plan.scene.transform, plan.scene.crs)
    return TileRecords(
        rows=np.array([t.row for t in kept]), cols=np.array([t.col for t in kept]),
        heights=np.array([t.height for t in kept]), widths=np.array([t.width for t in kept]),
        padded=np.array([t.padded for t in kept]), valid_fraction=fractions[: len(kept)],
        lonlat=lonlat, embeddings=embeddings[: len(kept)],
    )
