"""``extract``: scenes -> tiles -> shared backbone -> one GeoParquet file per scene in a store.

Reading runs in a background thread that fills batches of normalised tiles while the model embeds
earlier ones (rasterio, numpy and torch all release the GIL), so end-to-end throughput approaches
the model's; the forward passes run as :mod:`ofa_embed.embedding.forward` decides (on CPU, concurrent
single-thread workers). The reader thread and the model workers are stopped and joined when a scene
ends, on every exit path (error, interrupt), before the scene's files are closed.

Every scene is opened (bands, grid, modality) before any is read, then closed until the reader reaches it
(:func:`~ofa_embed.raster.scene.open_scenes`), so a run of thousands of scenes holds one scene's files
open. Their values are checked in a thread beside the reading and the model
(:class:`~ofa_embed.raster.scene.ValueChecks`), begun once the model has embedded its first batch: a bad
scene stops the run within a few batches, and nothing is written until every scene has passed. Each scene
file is written under a temporary name and renamed when complete, so an interrupted run leaves no partial
file and a rerun skips the scenes already in the store.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ofa_embed import __version__
from ofa_embed.embedding.forward import (
    ModelInput,
    batches_held,
    embed_batches,
    model_input,
    model_workers,
    resolve_device,
    resolve_precision,
)
from ofa_embed.errors import ModalityError, StoreError, TilingError
from ofa_embed.location import AnyPath, RemotePath, as_location
from ofa_embed.model.checkpoint import LoadedModel
from ofa_embed.model.config import DEFAULT_MODEL
from ofa_embed.model.weights import load_weights
from ofa_embed.raster.reader import TileBatch, TilePlan, TileRing, plan_tiles, prefetched, read_tile_batches
from ofa_embed.raster.scene import (
    Scene,
    ValueChecks,
    gdal_block_cache,
    group_band_files,
    open_scenes,
    sample_statistics,
)
from ofa_embed.sensors import CUSTOM, custom_modality
from ofa_embed.store import TileRecords, describe_store, partition_of, read_metadata, store_files, write_scene
from ofa_embed.store.metadata import ChipsRecord, ModelRecord, SceneRecord, TilingRecord, emb_metadata, scene_metadata
from ofa_embed.store.quantise import check_dtype
from ofa_embed.tiling import DEFAULT_MIN_VALID, TileWindow, footprints, to_lonlat

__all__ = [
    "extract", "ExtractReport", "SceneReport",
    "DEFAULT_MODEL", "DEFAULT_MIN_VALID",
]

logger = logging.getLogger(__name__)


SceneInput = str | Path | Sequence[str | Path]
ProgressCallback = Callable[[str, int, int], None]


@dataclass
class SceneReport:
    """What happened to one scene.

    Attributes:
        scene: scene name.
        path: the store file (existing one when skipped).
        tiles: tiles written.
        skipped_tiles: tiles below ``min_valid``.
        skipped_existing: the scene was already in the store and was not recomputed.
        seconds: wall time for the scene.
    """

    scene: str
    path: AnyPath
    tiles: int = 0
    skipped_tiles: int = 0
    skipped_existing: bool = False
    seconds: float = 0.0


@dataclass
class ExtractReport:
    """What one extraction wrote to a store.

    Attributes:
        store: the store directory.
        weights_hash: 16-hex content hash of the backbone weights.
        weights_source: where the weights came from (a path, or ``random-init(seed=0)``).
        pretrained: False for a random initialisation.
        device: the torch device the backbone ran on (e.g. ``cpu``, ``cuda:0``).
        precision: ``fp32`` or ``bf16``, as the forward passes ran.
        embedding_dtype: how the embeddings are stored (``float32``, ``float16``, ``int8``).
        scenes: one report per scene, in the order processed.
    """

    store: AnyPath
    weights_hash: str
    weights_source: str
    pretrained: bool
    device: str
    precision: str
    embedding_dtype: str = "float32"
    scenes: list[SceneReport] = field(default_factory=list)

    @property
    def tiles(self) -> int:
        """Tiles embedded over all scenes."""
        return sum(s.tiles for s in self.scenes)


def check_same_embeddings(store: AnyPath, loaded: LoadedModel, embedding_dtype: str) -> None:
    """A store holds the embeddings of one set of weights, stored in one dtype: refuse to add others."""
    if not store_files(store):
        return
    held = describe_store(store)[0]
    if held.weights_hash != loaded.weights_hash:
        raise StoreError(
            f"{store}: holds embeddings of weights {held.weights_hash} ({held.name}); these are weights "
            f"{loaded.weights_hash} ({loaded.source}): write them to another store (--out)"
        )
    if held.embedding_dtype != embedding_dtype:
        raise StoreError(
            f"{store}: holds {held.embedding_dtype} embeddings ({held.name}); these would be {embedding_dtype}: "
            f"use --embedding-dtype {held.embedding_dtype} or another store (--out)"
        )


def share_custom_statistics(scenes: list[Scene], store: AnyPath) -> None:
    """One normalisation per store for a sensor given by wavelengths, so that its scenes' embeddings compare:
    the one the store already records, else the mean/std of all these scenes' samples pooled.
    """
    if not scenes:
        return
    wavelengths = [b.wavelength_um for b in scenes[0].modality.bands]
    for scene in scenes[1:]:
        if [b.wavelength_um for b in scene.modality.bands] != wavelengths:
            raise ModalityError(f"{scene.path}: its band wavelengths differ from {scenes[0].path}'s; "
                                "extract each sensor into its own store")
    metas = [(path, read_metadata(path)) for path in store_files(store)] if store.is_dir() else []
    recorded = [(path, meta) for path, meta in metas if meta["modality"]["name"] == CUSTOM]
    if recorded:
        path, meta = recorded[0]
        fed = meta["model_input"]
        if fed["wavelengths_um"] != wavelengths:
            raise ModalityError(f"{scenes[0].path}: band wavelengths {wavelengths} differ from those of the sensor "
                                f"in {store} ({fed['wavelengths_um']}); use another store")
        mean, std, source = fed["mean"], fed["std"], f"as recorded in {path.name}"
    else:
        sampled_mean, sampled_std, source = sample_statistics(scenes)
        mean, std = sampled_mean.tolist(), sampled_std.tolist()
    for scene in scenes:
        scene.modality = custom_modality(wavelengths, mean, std, stats_source=source, labels=scene.modality.band_names)


def check_writable(store: AnyPath) -> None:
    """Refuse a local store whose nearest existing folder cannot be written (a remote store fails at its first
    write, with the filesystem's own error, before any file of it exists).
    """
    if isinstance(store, RemotePath):
        return
    existing = store
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise StoreError(f"{store}: output location is not a writable directory ({existing})")


def check_batching(min_valid: float, batch_size: int) -> None:
    """Refuse a ``min_valid`` outside [0, 1] or a batch size below 1."""
    if not 0.0 <= min_valid <= 1.0:
        raise TilingError(f"min_valid must be within [0, 1], got {min_valid}")
    if batch_size <= 0:
        raise TilingError(f"batch_size must be positive, got {batch_size}")


def load_run_model(weights: str | Path | None, model: str, weights_layout: str | None, device: str | None,
                   precision: str) -> tuple[LoadedModel, torch.device, str]:
    """A run's model on its device, the device, and the precision the forward passes run at."""
    loaded = load_weights(weights, model, weights_layout)
    torch_device = resolve_device(device)
    loaded.model.to(torch_device)
    return loaded, torch_device, resolve_precision(precision, torch_device)


def check_model_takes(scene: Scene, loaded: LoadedModel) -> None:
    """Refuse a scene the model has no input for (a modality it lacks, wavelengths it cannot take)."""
    if scene.modality.name == CUSTOM:
        model_input(loaded.model, scene.modality)
    elif scene.modality.name not in loaded.model.modalities:
        raise ModalityError(f"{scene.path}: the model has no patch embedding for {scene.modality.name}")


def feed(scene: Scene, loaded: LoadedModel) -> ModelInput:
    """What the model is fed for ``scene``, with a line logged for given wavelengths and for untrained bands."""
    fed = model_input(loaded.model, scene.modality, scene.missing_bands)
    if scene.modality.name == CUSTOM:
        logger.info("%s: fed at the given wavelengths %s µm", scene.path, ", ".join(map(str, fed.wavelengths_um or ())))
    elif unseen := loaded.model.unseen_bands(scene.modality.name, fed.bands):
        logger.warning("%s: %s was not trained on %s band(s) %s; they are fed at their physical centre wavelengths",
                       scene.path, loaded.model.config.name, scene.modality.name, ", ".join(unseen))
    return fed


def _chained(plans: Sequence[TilePlan], batch_size: int, min_valid: float, stop: threading.Event,
             held: int) -> Iterator[TileBatch]:
    """The batches of every plan in turn, each tagged with its plan's position; a scene's files are open while
    it is read (the reader opens the next as the model embeds the last batches of the previous), and all share
    one ring of arrays.
    """
    ring = TileRing(held)
    for number, plan in enumerate(plans):
        if stop.is_set():  # stopped (an error, an interrupt): the scenes left are not reopened
            return
        with plan.scene.reading():
            edges = (number == 0, number == len(plans) - 1)
            for batch in read_tile_batches(plan, batch_size, min_valid, stop, held, ring, edges):
                batch.scene = number
                yield batch


def embed_plans(
    plans: Sequence[TilePlan], loaded: LoadedModel, fed: ModelInput, device: torch.device, batch_size: int,
    min_valid: float, on_progress: ProgressCallback | None, precision: str,
) -> Generator[tuple[TilePlan, TileRecords, int], None, None]:
    """Embed the tiles of ``plans`` (scenes fed alike, as ``fed``: :func:`feed`) through one reader thread and one
    set of model workers: ``(plan, kept tiles' records, tiles skipped below min_valid)`` per scene, in order,
    as soon as its last batch is embedded.

    The reader goes on into the next scene, and the model with it, while the caller writes the previous
    one, so a run of many scenes never waits at a scene boundary. A scene whose every tile is below
    ``min_valid`` gets empty records.
    """
    dim = loaded.model.config.embed_dim
    # filled in place: keeping each batch's small output tensor alive instead pins freed batch-sized
    # heap blocks around it (glibc cannot trim them): +270 MB over 200 batches when measured. Allocated
    # when a scene's first batch arrives and dropped once it is handed over, so a run of many scenes
    # holds about one scene's arrays.
    arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    kept: list[list[TileWindow]] = [[] for _ in plans]
    skipped = [0] * len(plans)
    stop = threading.Event()
    workers, threads = model_workers(device)
    reader = _chained(plans, batch_size, min_valid, stop, batches_held(workers))
    finished = 0
    with prefetched(reader, stop) as batches, closing(
        embed_batches(batches, loaded.model, fed, device, workers, threads, precision)
    ) as embedded:
        for batch, batch_embeddings in embedded:
            number, plan = batch.scene, plans[batch.scene]
            if number not in arrays:
                arrays[number] = (np.empty(len(plan.tiles), np.float32), np.empty((len(plan.tiles), dim), np.float32))
            fractions, embeddings = arrays[number]
            done = len(kept[number])
            if batch.tiles:
                embeddings[done : done + len(batch.tiles)] = batch_embeddings
                fractions[done : done + len(batch.tiles)] = batch.valid_fraction
            kept[number] += batch.tiles
            skipped[number] += batch.skipped
            if on_progress:
                on_progress(plan.scene.name, len(kept[number]) + skipped[number], len(plan.tiles))
            while finished < len(plans) and len(kept[finished]) + skipped[finished] == len(plans[finished].tiles):
                fractions, embeddings = arrays.pop(finished)
                yield plans[finished], _records(plans[finished], kept[finished], fractions, embeddings), skipped[finished]
                kept[finished] = []
                finished += 1


def _records(plan: TilePlan, kept: list[TileWindow], fractions: np.ndarray, embeddings: np.ndarray) -> TileRecords:
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


def embed_plan(
    plan: TilePlan, loaded: LoadedModel, fed: ModelInput, device: torch.device, batch_size: int, min_valid: float,
    on_progress: ProgressCallback | None, precision: str,
) -> tuple[TileRecords, int]:
    """One scene's :func:`embed_plans`: its records and skipped count."""
    (_, records, skipped), = embed_plans([plan], loaded, fed, device, batch_size, min_valid, on_progress, precision)
    return records, skipped


def write_plan(plan: TilePlan, records: TileRecords, loaded: LoadedModel, fed: ModelInput, store: AnyPath,
               min_valid: float, precision: str, partition: dict[str, str] | None, embedding_dtype: str) -> AnyPath:
    """Write the embedded tiles of ``plan`` as its scene's store file, with the scene's metadata; embeddings
    stored as ``embedding_dtype``.

    Raises:
        TilingError: no tile was kept (every one below ``min_valid``): nothing is written.
    """
    scene = plan.scene
    if not len(records.rows):
        raise TilingError(f"{scene.path}: no tile has at least {min_valid:.0%} valid pixels (all nodata?); nothing written")
    where = SceneRecord(scene.name, str(scene.path), scene.crs.to_wkt(), list(scene.transform)[:6], scene.width,
                        scene.height, scene.nodata)
    return write_scene(
        store, scene.name, modality=scene.modality.name, acquired=scene.acquired, tile_size=plan.tile_size,
        missing_bands=list(scene.missing_bands), records=records,
        metadata=file_metadata(scene, model_record(loaded, precision), fed,
                               TilingRecord(plan.tile_size, plan.stride, min_valid), where),
        emb_metadata=emb_metadata(model_record(loaded, precision), [scene.acquired], embedding_dtype),
        partition=partition,
    )


def extract_plans(
    plans: list[TilePlan], loaded: LoadedModel, store: AnyPath, device: torch.device, batch_size: int, min_valid: float,
    on_progress: ProgressCallback | None, precision: str, partition_by: Sequence[str] | None, embedding_dtype: str,
    checks: ValueChecks | None = None,
) -> list[SceneReport]:
    """Embed and write ``plans``; consecutive scenes fed alike share one pipeline (:func:`embed_plans`). The
    scenes' value ``checks``, begun here once the first batch is embedded and running beside it, stop it at the
    batch after one fails and are awaited before the first write (None: checked already).
    """
    reports: list[SceneReport] = []
    feds = [feed(plan.scene, loaded) for plan in plans]

    def progress(name: str, done: int, total: int) -> None:
        if checks is not None:
            checks.begin()  # the model is busy: its first batch is embedded, the next are read
            checks.raise_failure()
        if on_progress:
            on_progress(name, done, total)

    def same_input(pair: tuple[TilePlan, ModelInput]) -> str:
        return json.dumps(pair[1].record, sort_keys=True, default=str)

    for _, group in itertools.groupby(zip(plans, feds, strict=True), key=same_input):
        members = list(group)
        start = time.perf_counter()
        # closed on every exit path: the pipeline's reader thread and model workers stop with it
        with closing(embed_plans([plan for plan, _ in members], loaded, members[0][1], device, batch_size, min_valid,
                                 progress, precision)) as embedded:
            for plan, records, skipped in embedded:
                if checks is not None:
                    checks.wait()
                path = write_plan(plan, records, loaded, members[0][1], store, min_valid, precision,
                                  scene_partition(plan.scene, partition_by), embedding_dtype)
                reports.append(SceneReport(plan.scene.name, path, len(records.rows), skipped,
                                           seconds=time.perf_counter() - start))
                start = time.perf_counter()
    return reports


def model_record(loaded: LoadedModel, precision: str) -> ModelRecord:
    model = loaded.model
    return ModelRecord(model.config.name, model.config.to_dict(), loaded.weights_hash, loaded.source, loaded.pretrained,
                       model.pooling, precision, model.embed_dim)


def file_metadata(scene: Scene, record: ModelRecord, fed: ModelInput, tiling: TilingRecord,
                  where: SceneRecord | ChipsRecord) -> dict[str, object]:
    """The ``ofa_embed`` record of a store file of ``scene`` (or of chips read like it, ``where``)."""
    return scene_metadata(
        package_version=__version__, model=record, modality=scene.modality.to_metadata(), model_input=fed.record,
        input_values=scene.input_values, source_bands=list(scene.source_labels),
        missing_bands=list(scene.missing_bands), tiling=tiling, scene=where,
    )


def _extract_on_cluster(
    client: Any, todo: list[tuple[TilePlan, Any]], store: AnyPath, loaded: LoadedModel, open_args: dict[str, Any],
    stride: int | None, partition_by: Sequence[str] | None, tiles_per_task: int, on_progress: ProgressCallback | None,
    device: str | None, precision: str, batch_size: int, min_valid: float, weights: str | Path | None,
    weights_layout: str | None, model: str, tile_size: int | None, embedding_dtype: str,
) -> list[SceneReport]:
    from ofa_embed.cluster import dask_client
    from ofa_embed.embedding.distributed import RunSpec, SceneJob, extract_on_cluster

    jobs = []
    for plan, item in todo:
        scene = plan.scene
        scene_args = dict(open_args)
        if scene.modality.name == CUSTOM:  # the normalisation the client chose for the store, not the worker's own
            scene_args["statistics"] = (scene.modality.mean.tolist(), scene.modality.std.tolist())
        # workers do not share the client's working directory: absolute paths
        source = [Path(p).resolve() for p in item] if isinstance(item, list) else Path(item).resolve()
        jobs.append(SceneJob(source, scene.name, scene_args, tile_size, stride, len(plan.tiles),
                             scene_partition(scene, partition_by), dict(scene.input_values)))
    weights_path = str(Path(weights).resolve()) if weights is not None else None
    run = RunSpec(store.resolve(), weights_path, weights_layout, model, device, precision, batch_size, min_valid,
                  embedding_dtype, tuple(partition_by or ()))
    gpus = torch.cuda.device_count() if resolve_device(device).type == "cuda" else 0
    with dask_client(client, gpus) as connected:
        return extract_on_cluster(connected, jobs, run, tiles_per_task, on_progress)


def scene_partition(scene: Scene, keys: Sequence[str] | None) -> dict[str, str] | None:
    """The hive partition of ``scene`` in a store partitioned by ``keys`` (None: unpartitioned)."""
    if not keys:
        return None
    left, bottom, right, top = scene.footprint_bounds()
    lon, lat = to_lonlat(np.array([(left + right) / 2]), np.array([(bottom + top) / 2]), scene.crs)
    return partition_of(keys, float(lon[0]), float(lat[0]), scene.acquired)


def extract(
    scenes: SceneInput | Sequence[SceneInput],
    store: str | AnyPath = "embeddings",
    *,
    modality: str | None = None,
    bands: Sequence[str] | None = None,
    nodata: float | None = None,
    wavelengths: Sequence[float] | None = None,
    sar_scale: str = "db",
    tile_size: int | None = None,
    stride: int | None = None,
    min_valid: float = DEFAULT_MIN_VALID,
    weights: str | Path | None = None,
    weights_layout: str | None = None,
    model: str = DEFAULT_MODEL,
    batch_size: int = 32,
    device: str | None = None,
    precision: str = "auto",
    embedding_dtype: str = "float32",
    overwrite: bool = False,
    partition_by: Sequence[str] | None = None,
    client: Any = None,
    tiles_per_task: int = 1024,
    on_progress: ProgressCallback | None = None,
) -> ExtractReport:
    """Embed every tile of every scene into ``store`` (one GeoParquet file per scene).

    Args:
        scenes: a scene, or a list of scenes; a scene is a multi-band raster, a folder of band files,
            or a list of single-band files (a nested list). Single-band files given together whose names
            share a product id are grouped into one scene per product (``group_band_files``).
        store: store directory (created when missing).
        modality: registered modality; detected per scene when None.
        bands: names of the file's bands in file order (subset input; missing bands are mean-filled).
        nodata: nodata value overriding the file's.
        wavelengths: centre wavelength (µm) of each band in file order, for a sensor the registry does not
            know (wavelength-conditioned models only; normalised with a sample of the scenes' own values).
        sar_scale: Sentinel-1 values in ``db`` (default), or linear ``power`` / ``amplitude`` to convert.
        tile_size: tile edge in pixels (default: the modality's); must be a multiple of the patch size.
        stride: step between tiles in pixels (default: ``tile_size``; smaller overlaps).
        min_valid: tiles with a smaller fraction of valid (non-nodata) pixels are skipped.
        weights: checkpoint path (an ofa-embed ``.safetensors`` or a published DOFA ``.pth``); default: the
            packaged checkpoint, else a seeded random init.
        weights_layout: kernel layout of a DOFA ``.pth`` that is not a recognised release (``bands_first``
            for TorchGeo's files, ``legacy`` for DOFA's first release).
        model: model size used for the random init when no checkpoint is available.
        batch_size: the most tiles per forward pass (a scene's batch is one window of whole tile rows of it).
        device: ``"cpu"``, ``"cuda"``, ... (default: CUDA when available).
        precision: ``auto`` (bfloat16 on CUDA and on CPUs with native bfloat16, else float32), ``fp32`` or
            ``bf16``; recorded in every scene file.
        embedding_dtype: how embeddings are stored: ``float32`` (default), ``float16`` (about half the bytes) or
            ``int8`` (about a third, with a per-vector scale; :mod:`ofa_embed.store.quantise`). One per store.
        overwrite: recompute scenes already in the store (default: skip them).
        partition_by: write scene files into hive folders by these keys (``utm_zone``, ``year``; see
            :func:`ofa_embed.store.partition_of`), which DuckDB and geopandas prune on.
        client: run on a Dask cluster (:mod:`ofa_embed.embedding.distributed`): a ``distributed.Client``, a
            scheduler address (``tcp://host:8786``) or ``"local"`` (a LocalCluster, one worker per core, or per GPU).
        tiles_per_task: with ``client``, the most tiles one task embeds (larger scenes are split).
        on_progress: called as ``(scene_name, tiles_done, tiles_total)`` after every batch.

    Raises:
        OFAEmbedError subclasses for bad input, before anything is written.
    """
    check_batching(min_valid, batch_size)
    check_dtype(embedding_dtype)
    if partition_by:
        partition_of(partition_by, 0.0, 0.0, None)  # refuses unknown keys before anything is read
    items = group_band_files([scenes] if isinstance(scenes, (str, Path)) else list(scenes))
    store = as_location(store)
    open_args: dict[str, Any] = {"modality": modality, "bands": bands, "nodata": nodata, "wavelengths": wavelengths,
                                 "sar_scale": sar_scale}
    with gdal_block_cache():
        opened: list[Scene] = []
        plans: list[TilePlan] = []
        try:
            opened = open_scenes(items, **open_args, check_values=False)
            loaded, torch_device, precision = load_run_model(weights, model, weights_layout, device, precision)
            for scene in opened:
                check_model_takes(scene, loaded)
                plans.append(plan_tiles(scene, tile_size, stride, loaded.model.patch_size))
            names = [p.scene.name for p in plans]
            if duplicate := next((n for n in names if names.count(n) > 1), None):
                raise StoreError(f"two scenes are both named {duplicate!r}; a store holds one file per scene name")
            check_writable(store)
            check_same_embeddings(store, loaded, embedding_dtype)
            share_custom_statistics([s for s in opened if s.modality.name == CUSTOM], store)
            report = ExtractReport(store, loaded.weights_hash, loaded.source, loaded.pretrained, str(torch_device),
                                   precision, embedding_dtype)
            held = {path.stem: path for path in store_files(store)} if store.is_dir() else {}
            todo = []
            for plan, item in zip(plans, items, strict=True):
                if plan.scene.name in held and not overwrite:
                    logger.info("%s: already in %s, skipped (use overwrite to recompute)", plan.scene.name, store)
                    report.scenes.append(SceneReport(plan.scene.name, held[plan.scene.name], skipped_existing=True))
                else:
                    todo.append((plan, item))
            if todo:
                store.mkdir(parents=True, exist_ok=True)
            # a sensor given by wavelengths was sampled for its statistics when opened, not value-checked
            checked = [plan.scene for plan, _ in todo if plan.scene.modality.name != CUSTOM]
            with ValueChecks(checked, begun=False) as checks:
                if client is not None and todo:
                    checks.wait()  # the workers record the client's checks
                    done = _extract_on_cluster(client, todo, store, loaded, open_args, stride, partition_by,
                                               tiles_per_task, on_progress, device, precision, batch_size, min_valid,
                                               weights, weights_layout, model, tile_size, embedding_dtype)
                else:
                    done = extract_plans([plan for plan, _ in todo], loaded, store, torch_device, batch_size,
                                         min_valid, on_progress, precision, partition_by, embedding_dtype, checks)
            for scene_report in done:
                existing = held.get(scene_report.scene)
                # workers report absolute paths; a scene recomputed into another partition leaves its old file
                if existing is not None and existing.resolve() != scene_report.path.resolve():
                    existing.unlink()
            report.scenes += done
            return report
        finally:
            for scene in opened:
                scene.close()
