"""Extraction on a Dask cluster (``extract(..., client=...)``, ``ofa-embed extract --dask ADDRESS``).

The client opens and checks every scene, as a local run does, before anything is submitted. The work is
then done by tasks on the workers:

- A scene of at most ``tiles_per_task`` tiles is one task: it reopens the scene from its path, embeds it
  with the worker's model and writes its store file. A larger scene's tiles are cut into ranges of at
  most ``tiles_per_task``. Each range is a task that reopens
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

import functools
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ofa_embed.atomic import atomic_target
from ofa_embed.embedding.extract import ProgressCallback, SceneReport, embed_plan, feed, load_run_model, write_plan
from ofa_embed.errors import ConfigError, TilingError
from ofa_embed.location import AnyPath, as_location, remove_tree
from ofa_embed.model.checkpoint import LoadedModel
from ofa_embed.raster.reader import TilePlan, plan_tiles
from ofa_embed.raster.scene import gdal_block_cache, open_scene
from ofa_embed.store import TileRecords

__all__ = ["TILES_PER_TASK", "RunSpec", "SceneJob", "extract_on_cluster"]

TILES_PER_TASK = 1024
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
    """What every task of a run shares: the store and its embedding dtype, the weights, the forward pass and the
    tile filter.
    """

    store: AnyPath
    weights: str | None
    weights_layout: str | None
    model: str
    device: str | None
    precision: str
    batch_size: int
    min_valid: float
    embedding_dtype: str


# the model of a run, loaded once per worker process
_worker_model = functools.lru_cache(maxsize=2)(load_run_model)


@contextmanager
def _opened_plan(job: SceneJob, run: RunSpec) -> Iterator[tuple[TilePlan, LoadedModel, torch.device, str]]:
    loaded, device, precision = _worker_model(run.weights, run.model, run.weights_layout, run.device, run.precision)
    # the client checked the values already: reading the check's sample again on every task is wasted work
    with gdal_block_cache(), open_scene(job.source, **job.open_args, check_values=False) as scene:
        scene.input_values = job.input_values
        yield plan_tiles(scene, job.tile_size, job.stride, loaded.model.patch_size), loaded, device, precision


def embed_part(job: SceneJob, run: RunSpec, start: int, stop: int, part: AnyPath) -> tuple[int, int]:
    """Task: embed tiles ``start:stop`` of the scene into the part file ``part``; ``(kept, skipped)`` tiles."""
    with _opened_plan(job, run) as (plan, loaded, device, precision):
        if len(plan.tiles) != job.tiles:
            raise TilingError(f"{plan.scene.path}: {len(plan.tiles)} tiles on this worker, {job.tiles} on the client; "
                              "is the same file mounted at the same path?")
        subset = TilePlan(plan.scene, plan.tiles[start:stop], plan.tile_size, plan.stride)
        records, skipped = embed_plan(subset, loaded, feed(plan.scene, loaded), device, run.batch_size, run.min_valid,
                                      None, precision)
    part.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(part) as tmp, tmp.open("wb") as handle:
        np.savez(handle, **asdict(records))
    return len(records.rows), skipped


def embed_scene(job: SceneJob, run: RunSpec) -> tuple[str, int, int]:
    """Task: a scene of one part embedded and written straight to its store file; ``(path, tiles, skipped)``."""
    with _opened_plan(job, run) as (plan, loaded, device, precision):
        fed = feed(plan.scene, loaded)
        records, skipped = embed_plan(plan, loaded, fed, device, run.batch_size, run.min_valid, None, precision)
        path = write_plan(plan, records, loaded, fed, run.store, run.min_valid, precision, job.partition,
                          run.embedding_dtype)
    return str(path), len(records.rows), skipped


def merge_parts(job: SceneJob, run: RunSpec, parts: list[AnyPath], *counts: tuple[int, int]) -> tuple[str, int, int]:
    """Task: the scene's store file from its parts (in tile order); ``(path, tiles, skipped)``."""
    with _opened_plan(job, run) as (plan, loaded, _, precision):
        columns: dict[str, list[np.ndarray]] = {name: [] for name in TileRecords.__dataclass_fields__}
        for path in parts:
            with path.open("rb") as handle, np.load(handle) as part:
                for name, values in columns.items():
                    values.append(part[name])
        records = TileRecords(**{name: np.concatenate(values) for name, values in columns.items()})
        skipped = sum(s for _, s in counts)
        path = write_plan(plan, records, loaded, feed(plan.scene, loaded), run.store, run.min_valid, precision,
                          job.partition, run.embedding_dtype)
    remove_tree(parts[0].parent)
    return str(path), len(records.rows), skipped


def extract_on_cluster(client: Any, jobs: Sequence[SceneJob], run: RunSpec, tiles_per_task: int,
                       on_progress: ProgressCallback | None) -> list[SceneReport]:
    """Run ``jobs`` on ``client`` (a ``distributed.Client``): one report per scene, in ``jobs`` order.

    On an error or an interrupt the run's tasks are cancelled before it is re-raised.
    """
    from distributed import as_completed

    if tiles_per_task < 1:
        raise ConfigError(f"tiles_per_task must be at least 1, got {tiles_per_task}")
    started = time.perf_counter()
    ranges: dict[Any, tuple[SceneJob, int]] = {}
    merges = []
    for job in jobs:
        if job.tiles <= tiles_per_task:  # one task does it all: no part file, no merge
            whole = client.submit(embed_scene, job, run, pure=False, key=f"ofa-embed-{job.name}-{time.time_ns()}")
            ranges[whole] = (job, job.tiles)
            merges.append(whole)
            continue
        folder = run.store / PARTS_DIR / job.name
        parts, futures = [], []
        for number, start in enumerate(range(0, job.tiles, tiles_per_task)):
            stop = min(start + tiles_per_task, job.tiles)
            parts.append(folder / f"part-{number:05d}.npz")
            future = client.submit(embed_part, job, run, start, stop, parts[-1], pure=False,
                                   key=f"ofa-embed-{job.name}-{number}-{time.time_ns()}")
            ranges[future] = (job, stop - start)
            futures.append(future)
        merges.append(client.submit(merge_parts, job, run, parts, *futures, pure=False,
                                    key=f"ofa-embed-merge-{job.name}-{time.time_ns()}"))
    everything = list({*ranges, *merges})
    try:
        done: dict[str, int] = {}
        for future in as_completed(list(ranges)):
            future.result()  # re-raises a task's error here
            job, count = ranges[future]
            done[job.name] = done.get(job.name, 0) + count
            if on_progress:
                on_progress(job.name, done[job.name], job.tiles)
        reports = []
        for job, merge in zip(jobs, merges, strict=True):
            path, tiles, skipped = merge.result()
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
