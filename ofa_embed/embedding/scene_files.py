"""A run's scenes into store files: one GeoParquet file per scene, with the scene's record, the model's and
the tiling's (:mod:`ofa_embed.embedding.records`), in the scene's hive partition of a partitioned store.

Used by a local ``extract`` run and by a Dask run's tasks (whole scenes, and the merge of a split scene's
parts). Each file is written under a temporary name and renamed when complete
(:func:`ofa_embed.store.write_scene`), so an interrupted run leaves no partial file.
"""

from __future__ import annotations

import functools
import itertools
import json
import time
from collections.abc import Sequence
from contextlib import closing, nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ofa_embed.embedding.fields import FieldBuilder, FieldWriter, pixel_rule
from ofa_embed.embedding.forward import ModelInput
from ofa_embed.embedding.options import RunOptions
from ofa_embed.embedding.pipeline import RunModel, embed_plans, feed
from ofa_embed.embedding.records import file_metadata, model_record
from ofa_embed.errors import TilingError
from ofa_embed.field_files import FIELDS_DIR, INT8_SCHEME, FieldGrid, field_path, write_field
from ofa_embed.location import AnyPath
from ofa_embed.progress import ProgressCallback
from ofa_embed.raster.checks import ValueChecks
from ofa_embed.raster.reader import TileBatch, TilePlan
from ofa_embed.raster.scene import Scene
from ofa_embed.store import TileRecords, partition_of, write_scene
from ofa_embed.store.metadata import SceneRecord, TilingRecord, emb_metadata
from ofa_embed.tiling import to_lonlat

__all__ = ["SceneReport", "extract_plans", "field_builder", "scene_partition", "write_plan", "write_plan_field"]


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


def scene_partition(scene: Scene, keys: Sequence[str] | None) -> dict[str, str] | None:
    """The hive partition of ``scene`` in a store partitioned by ``keys`` (None: unpartitioned)."""
    if not keys:
        return None
    left, bottom, right, top = scene.footprint_bounds()
    lon, lat = to_lonlat(np.array([(left + right) / 2]), np.array([(bottom + top) / 2]), scene.crs)
    return partition_of(keys, float(lon[0]), float(lat[0]), scene.acquired)


def write_plan(plan: TilePlan, records: TileRecords, run: RunModel, fed: ModelInput, store: AnyPath,
               options: RunOptions, partition: dict[str, str] | None, field: dict[str, Any] | None = None) -> AnyPath:
    """Write the embedded tiles of ``plan`` as its scene's store file in ``partition``, with the scene's
    metadata (and ``field``: the record of its field, written before); embeddings stored as
    ``options.embedding_dtype``.

    Raises:
        TilingError: no tile was kept (every one below ``options.min_valid``): nothing is written.
    """
    scene = plan.scene
    if not len(records.rows):
        size = plan.tile_size
        covered = min(scene.width, size) * min(scene.height, size) / size**2
        if covered < options.min_valid:  # the tile's padding, not the file's nodata, left too few valid pixels
            fits = max(s for s in (16, 32, 64, 128, 224, 256) if s <= max(16, min(scene.width, scene.height)))
            raise TilingError(f"{scene.path}: the scene ({scene.width} x {scene.height} px) fills {covered:.0%} of "
                              f"one {size} px tile, the rest is padding, below --min-valid {options.min_valid:.0%}; "
                              f"pass --tile-size {fits} (or a lower --min-valid); nothing written")
        raise TilingError(f"{scene.path}: no tile has at least {options.min_valid:.0%} valid pixels (all nodata?); "
                          "nothing written")
    where = SceneRecord(scene.name, str(scene.path), scene.crs.to_wkt(), list(scene.transform)[:6], scene.width,
                        scene.height, scene.nodata)
    metadata = file_metadata(scene, model_record(run.loaded, run.precision), fed,
                             TilingRecord(plan.tile_size, plan.stride, options.min_valid), where)
    if field is not None:
        metadata["field"] = field
    return write_scene(
        store, scene.name, modality=scene.modality.name, acquired=scene.acquired, tile_size=plan.tile_size,
        missing_bands=list(scene.missing_bands), records=records,
        metadata=metadata,
        emb_metadata=emb_metadata(model_record(run.loaded, run.precision), [scene.acquired], options.embedding_dtype),
        partition=partition,
    )


def field_builder(plan: TilePlan, run: RunModel, options: RunOptions) -> FieldBuilder:
    """An empty field of ``plan``'s scene for ``run``'s tokens."""
    scene, patch = plan.scene, run.loaded.model.patch_size
    grid = FieldGrid.of_scene(scene.transform, scene.width, scene.height, patch, scene.crs.to_wkt())
    return FieldBuilder(grid, (scene.height, scene.width), run.loaded.model.embed_dim, options.min_valid)


def write_plan_field(plan: TilePlan, builder: FieldBuilder, run: RunModel, store: AnyPath,
                     options: RunOptions) -> dict[str, Any]:
    """Write the field ``builder`` holds as ``plan``'s scene's COG in ``store``; its record (for the scene's file).

    Raises:
        StoreError: the field cannot be written.
    """
    patch = run.loaded.model.patch_size
    record = builder.record({
        "path": f"{FIELDS_DIR}/{plan.scene.name}.tif", "scene": plan.scene.name, "dtype": options.field_dtype,
        "pixel": pixel_rule(plan.tile_size, plan.stride, patch, options.min_valid),
        "tile_size": plan.tile_size, "stride": plan.stride, "min_valid": options.min_valid,
        "quantization": INT8_SCHEME if options.field_dtype == "int8" else None,
        "datetime": plan.scene.acquired.isoformat() if plan.scene.acquired else None,
        "model": asdict(model_record(run.loaded, run.precision)),
    })
    write_field(field_path(store, plan.scene.name), builder.values, builder.grid, options.field_dtype, record)
    return record


def extract_plans(plans: list[TilePlan], run: RunModel, store: AnyPath, options: RunOptions,
                  on_progress: ProgressCallback | None, checks: ValueChecks | None = None) -> list[SceneReport]:
    """Embed and write ``plans``; consecutive scenes fed alike share one pipeline
    (:func:`~ofa_embed.embedding.pipeline.embed_plans`). The scenes' value ``checks``, begun here once the first
    batch is embedded and running beside it, stop it at the batch after one fails and are awaited before the
    first write (None: checked already). A dense run places and writes its fields, and then its store files,
    in a :class:`~ofa_embed.embedding.fields.FieldWriter` thread while the model goes on.
    """
    reports: list[SceneReport] = []
    feds = [feed(plan.scene, run.loaded) for plan in plans]
    clock = [time.perf_counter()]

    def progress(name: str, done: int, total: int) -> None:
        if checks is not None:
            checks.begin()  # the model is busy: its first batch is embedded, the next are read
            checks.raise_failure()
        if on_progress:
            on_progress(name, done, total)

    def same_input(pair: tuple[TilePlan, ModelInput]) -> str:
        return json.dumps(pair[1].record, sort_keys=True, default=str)

    def write(plan: TilePlan, fed: ModelInput, records: TileRecords, skipped: int,
              builder: FieldBuilder | None = None) -> None:
        field = None
        if options.dense and len(records.rows):
            field = write_plan_field(plan, builder or field_builder(plan, run, options), run, store, options)
        path = write_plan(plan, records, run, fed, store, options, scene_partition(plan.scene, options.partition_by),
                          field)
        reports.append(SceneReport(plan.scene.name, path, len(records.rows), skipped,
                                   seconds=time.perf_counter() - clock[0]))
        clock[0] = time.perf_counter()

    with FieldWriter(lambda number: field_builder(plans[number], run, options)) if options.dense \
            else nullcontext() as writer:
        first = 0
        for _, group in itertools.groupby(zip(plans, feds, strict=True), key=same_input):
            members = list(group)
            fed = members[0][1]

            def tokens(number: int, batch: TileBatch, values: np.ndarray, first: int = first) -> None:
                assert writer is not None and batch.patch_valid is not None
                writer.add(first + number, batch.tiles, batch.patch_valid, values)

            # closed on every exit path: the pipeline's reader thread and model workers stop with it
            with closing(embed_plans([plan for plan, _ in members], run, fed, options, progress,
                                     tokens if writer is not None else None)) as embedded:
                for number, (plan, records, skipped) in enumerate(embedded):
                    if checks is not None:
                        checks.wait()
                    if writer is None:
                        write(plan, fed, records, skipped)
                    else:
                        writer.finish(first + number, functools.partial(write, plan, fed, records, skipped))
            first += len(members)
    return reports
