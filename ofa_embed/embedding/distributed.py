"""Extraction on a Dask cluster (``extract(..., client=...)``, ``ofa-embed extract --dask ADDRESS``).

The client opens and checks every scene, as a local run does, before anything is submitted. The work is
then done by tasks on the workers:

- Scenes of at most ``tiles_per_task`` tiles are packed, consecutive ones together, into tasks of at most
  ``tiles_per_task`` tiles, and into at least as many tasks as the cluster has threads. A task reopens its
  scenes from their paths and embeds them through the local path's shared pipeline (the next scene is read
  while the model runs on the last), writing each scene's store file. A larger scene's tiles are cut
  into ranges of at most ``tiles_per_task``. Each range is a task that reopens
  the scene from its path, embeds those tiles with the worker's model, and writes them to a part file.
  The model is loaded once per worker process. Parts go under ``STORE/.parts/<scene>/``, written under a
  temporary name and renamed.
- One merge task per scene runs once all its parts are done. It concatenates them in tile order and
  writes the scene's store file, with the same metadata, through the same atomic rename as a local run.
  Then it removes the parts.

No embedding passes through the scheduler; only counts come back. A worker lost mid-run takes its tasks
with it, and the scheduler runs them again elsewhere. A part written twice is the same part, and a store
file appears only when it is whole. The paths of scenes must mean the same on every worker (a shared
filesystem); the store is a shared folder or an fsspec URL every worker can reach (``s3://bucket/emb``).

Object stores have no rename: there a part or a store file is written locally and uploaded whole as one
object (a PUT is atomic: readers see the old object or the new one); see :mod:`ofa_embed.location`.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ofa_embed.atomic import atomic_target
from ofa_embed.cluster import dask_client
from ofa_embed.embedding.forward import resolve_device
from ofa_embed.embedding.options import TILES_PER_TASK, RunOptions
from ofa_embed.embedding.pipeline import RunModel, embed_plan, feed, load_run_model
from ofa_embed.embedding.scene_files import SceneReport, extract_plans, scene_partition, write_plan
from ofa_embed.errors import ConfigError, TilingError
from ofa_embed.location import AnyPath, as_location, remove_tree
from ofa_embed.progress import ProgressCallback
from ofa_embed.raster.opening import open_scene
from ofa_embed.raster.reader import TilePlan, plan_tiles
from ofa_embed.raster.source import gdal_block_cache
from ofa_embed.sensors import CUSTOM
from ofa_embed.store import TileRecords

__all__ = ["TILES_PER_TASK", "RunSpec", "SceneJob", "extract_on_cluster", "pack_scenes", "restore_malloc_thresholds",
           "run_jobs", "scene_job", "worker_device"]

PARTS_DIR = ".parts"


@dataclass(frozen=True)
class SceneJob:
    """One scene as the workers reopen it: what ``open_scene`` and ``plan_tiles`` are given, the number of
    tiles the client planned, and the store partition of its file.
    """

    source: Path | list[Path]
    name: str
    open_args: dict[str, Any]
    tile_size: int | None
    stride: int | None
    tiles: int
    partition: dict[str, str] | None
    input_values: dict[str, Any]  # the client's value check of the scene, recorded as a local run records it


@dataclass(frozen=True)
class RunSpec:
    """What every task of a run shares: the store (an absolute path or a URL) and the run's options, with the
    weights as an absolute path and the precision the client resolved (``fp32`` or ``bf16``).
    """

    store: AnyPath
    options: RunOptions


# the model of a run, loaded once per worker process
_worker_model = functools.lru_cache(maxsize=2)(load_run_model)

# glibc's mmap threshold once an explicit trim threshold has frozen it (its dynamic ceiling on 64-bit), and a
# trim threshold above it
_MMAP_THRESHOLD = 32 << 20
_TRIM_THRESHOLD = 64 << 20


@functools.cache
def restore_malloc_thresholds() -> bool:
    """Undo what Dask's nanny does to a worker's allocator, once per worker process; whether it did.

    The nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``. Setting any trim threshold stops glibc from
    raising its mmap threshold, so every array over 128 KiB (each tile batch, each band window) is a fresh
    mmap whose pages fault in, and is unmapped when freed: extraction in a worker is much slower than in a
    plain process. Fixing both thresholds at glibc's own 64-bit ceiling restores the plain process's speed.
    """
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt parameters, malloc.h
    return bool(libc.mallopt(m_mmap_threshold, _MMAP_THRESHOLD) and libc.mallopt(m_trim_threshold, _TRIM_THRESHOLD))


def worker_device(device: str | None) -> str | None:
    """The device this worker runs ``device`` on: on a host of several GPUs, a CUDA device without an index
    (``"cuda"``, or the default where CUDA is there) becomes the GPU of the worker's number in a LocalCluster
    (its workers are named 0, 1, ...: :func:`~ofa_embed.cluster.dask_client` starts one per GPU), so they do
    not all run on the first; anything else is left as given.
    """
    resolved = resolve_device(device)
    count = torch.cuda.device_count() if resolved.type == "cuda" and resolved.index is None else 0
    if count < 2:
        return device
    from distributed import get_worker

    try:
        name = get_worker().name
    except ValueError:  # not in a worker
        return device
    return f"cuda:{name % count}" if isinstance(name, int) else device


@contextmanager
def _opened_plan(job: SceneJob, run: RunSpec) -> Iterator[tuple[TilePlan, RunModel]]:
    restore_malloc_thresholds()
    options = run.options
    model = _worker_model(options.weights, options.model, options.weights_layout, worker_device(options.device),
                          options.precision)
    # the client checked the values already: reading the check's sample again on every task is wasted work
    with gdal_block_cache(), open_scene(job.source, **job.open_args, check_values=False) as scene:
        scene.input_values = job.input_values
        yield plan_tiles(scene, job.tile_size, job.stride, model.loaded.model.patch_size), model


def embed_part(job: SceneJob, run: RunSpec, start: int, stop: int, part: AnyPath) -> tuple[int, int]:
    """Task: embed tiles ``start:stop`` of the scene into the part file ``part``; ``(kept, skipped)`` tiles."""
    with _opened_plan(job, run) as (plan, model):
        if len(plan.tiles) != job.tiles:
            raise TilingError(f"{plan.scene.path}: {len(plan.tiles)} tiles on this worker, {job.tiles} on the client; "
                              "is the same file mounted at the same path?")
        subset = TilePlan(plan.scene, plan.tiles[start:stop], plan.tile_size, plan.stride)
        records, skipped = embed_plan(subset, model, feed(plan.scene, model.loaded), run.options, None)
    part.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(part) as tmp, tmp.open("wb") as handle:
        np.savez(handle, **asdict(records))
    return len(records.rows), skipped


def embed_scenes(jobs: list[SceneJob], run: RunSpec) -> list[tuple[str, int, int]]:
    """Task: scenes of one part each, embedded as a local run embeds them (one pipeline for consecutive
    scenes fed alike) and written straight to their store files; ``(path, tiles, skipped)`` per scene.
    """
    with ExitStack() as stack:
        opened = [stack.enter_context(_opened_plan(job, run)) for job in jobs]
        plans = [plan for plan, _ in opened]
        reports = extract_plans(plans, opened[0][1], run.store, run.options, None)
    return [(str(r.path), r.tiles, r.skipped_tiles) for r in reports]


def pack_scenes(jobs: Sequence[SceneJob], tiles_per_task: int, slots: int) -> list[list[SceneJob]]:
    """Consecutive ``jobs`` (each of at most ``tiles_per_task`` tiles) in groups of at most ``tiles_per_task``
    tiles, and at least ``min(slots, len(jobs))`` groups of about equal tile counts, so that every thread of
    the cluster gets work.
    """
    total = sum(job.tiles for job in jobs)
    groups = min(len(jobs), max(slots, -(-total // tiles_per_task)))
    packed: list[list[SceneJob]] = []
    share = total / max(groups, 1)
    tiles = 0
    for job in jobs:
        if not packed or sum(j.tiles for j in packed[-1]) + job.tiles > tiles_per_task or tiles >= share * len(packed):
            packed.append([])
        packed[-1].append(job)
        tiles += job.tiles
    return packed


def merge_parts(job: SceneJob, run: RunSpec, parts: list[AnyPath], *counts: tuple[int, int]) -> tuple[str, int, int]:
    """Task: the scene's store file from its parts (in tile order); ``(path, tiles, skipped)``."""
    with _opened_plan(job, run) as (plan, model):
        columns: dict[str, list[np.ndarray]] = {name: [] for name in TileRecords.__dataclass_fields__}
        for path in parts:
            with path.open("rb") as handle, np.load(handle) as part:
                for name, values in columns.items():
                    values.append(part[name])
        records = TileRecords(**{name: np.concatenate(values) for name, values in columns.items()})
        skipped = sum(s for _, s in counts)
        path = write_plan(plan, records, model, feed(plan.scene, model.loaded), run.store, run.options, job.partition)
    remove_tree(parts[0].parent)
    return str(path), len(records.rows), skipped


def scene_job(plan: TilePlan, source: Path | list[Path], options: RunOptions) -> SceneJob:
    """How the workers reopen the scene of ``plan``, opened on the client from ``source`` (a file or folder, or
    its band files) with ``options``.
    """
    scene = plan.scene
    open_args = options.open_args()
    if scene.modality.name == CUSTOM:  # the normalisation the client chose for the store, not the worker's own
        open_args["statistics"] = (scene.modality.mean.tolist(), scene.modality.std.tolist())
    # workers do not share the client's working directory: absolute paths
    resolved = [Path(p).resolve() for p in source] if isinstance(source, list) else Path(source).resolve()
    return SceneJob(resolved, scene.name, open_args, options.tile_size, options.stride, len(plan.tiles),
                    scene_partition(scene, options.partition_by), dict(scene.input_values))


def extract_on_cluster(client: Any, todo: Sequence[tuple[TilePlan, Path | list[Path]]], store: AnyPath,
                       options: RunOptions, precision: str, tiles_per_task: int,
                       on_progress: ProgressCallback | None) -> list[SceneReport]:
    """Embed and write the scenes of ``todo`` (each planned and checked on the client, beside the source it was
    opened from) into ``store`` on the Dask cluster of ``client`` (a ``distributed.Client``, an address or
    ``"local"``: :func:`~ofa_embed.cluster.dask_client`), forward passes at the client's resolved ``precision``:
    one report per scene, in ``todo`` order.
    """
    jobs = [scene_job(plan, source, options) for plan, source in todo]
    weights = str(Path(options.weights).resolve()) if options.weights is not None else None
    run = RunSpec(store.resolve(), replace(options, weights=weights, precision=precision))
    gpus = torch.cuda.device_count() if resolve_device(options.device).type == "cuda" else 0
    with dask_client(client, gpus) as connected:
        return run_jobs(connected, jobs, run, tiles_per_task, on_progress)


def run_jobs(client: Any, jobs: Sequence[SceneJob], run: RunSpec, tiles_per_task: int,
             on_progress: ProgressCallback | None) -> list[SceneReport]:
    """Run ``jobs`` on ``client`` (a ``distributed.Client``): one report per scene, in ``jobs`` order.

    On an error or an interrupt the run's tasks are cancelled before it is re-raised.
    """
    from distributed import as_completed

    if tiles_per_task < 1:
        raise ConfigError(f"tiles_per_task must be at least 1, got {tiles_per_task}")
    started = time.perf_counter()
    progress: dict[Any, list[tuple[SceneJob, int]]] = {}  # a task's future -> the tiles it embeds, per scene
    packed: dict[Any, list[SceneJob]] = {}  # a task of whole scenes -> its scenes, in the order of its results
    merges: dict[str, Any] = {}  # a split scene's name -> its merge task
    small = [job for job in jobs if job.tiles <= tiles_per_task]  # no part file, no merge
    for number, group in enumerate(pack_scenes(small, tiles_per_task, sum(client.nthreads().values()) or 1)):
        task = client.submit(embed_scenes, group, run, pure=False, key=f"ofa-embed-scenes-{number}-{time.time_ns()}")
        progress[task] = [(job, job.tiles) for job in group]
        packed[task] = group
    for job in jobs:
        if job.tiles <= tiles_per_task:
            continue
        folder = run.store / PARTS_DIR / job.name
        parts, futures = [], []
        for number, start in enumerate(range(0, job.tiles, tiles_per_task)):
            stop = min(start + tiles_per_task, job.tiles)
            parts.append(folder / f"part-{number:05d}.npz")
            future = client.submit(embed_part, job, run, start, stop, parts[-1], pure=False,
                                   key=f"ofa-embed-{job.name}-{number}-{time.time_ns()}")
            progress[future] = [(job, stop - start)]
            futures.append(future)
        merges[job.name] = client.submit(merge_parts, job, run, parts, *futures, pure=False,
                                         key=f"ofa-embed-merge-{job.name}-{time.time_ns()}")
    everything = list({*progress, *merges.values()})
    try:
        done: dict[str, int] = {}
        for future in as_completed(list(progress)):
            future.result()  # re-raises a task's error here
            for job, count in progress[future]:
                done[job.name] = done.get(job.name, 0) + count
                if on_progress:
                    on_progress(job.name, done[job.name], job.tiles)
        written = {name: merge.result() for name, merge in merges.items()}
        for task, group in packed.items():
            written.update(zip([job.name for job in group], task.result(), strict=True))
        reports = []
        for job in jobs:
            path, tiles, skipped = written[job.name]
            reports.append(SceneReport(job.name, as_location(path), tiles, skipped, seconds=time.perf_counter() - started))
        return reports
    except BaseException:
        client.cancel(everything)
        raise
    finally:
        try:
            (run.store / PARTS_DIR).rmdir()  # only when empty: another run's parts may be there
        except OSError:
            pass
