"""``extract``: scenes -> tiles -> shared backbone -> one GeoParquet file per scene in a store.

The entry point of a scene run: it opens and checks everything, then hands the scenes to the shared run
pipeline (:mod:`ofa_embed.embedding.pipeline`, written by :mod:`ofa_embed.embedding.scene_files`), here or on a
Dask cluster (:mod:`ofa_embed.embedding.distributed`). What the run does is one
:class:`~ofa_embed.embedding.options.RunOptions`.

Every scene is opened (bands, grid, modality) before any is read, then closed until the reader reaches it
(:func:`~ofa_embed.raster.scene.open_scenes`), so a run of thousands of scenes holds one scene's files
open. Their values are checked in a thread beside the reading and the model
(:class:`~ofa_embed.raster.scene.ValueChecks`), begun once the model has embedded its first batch: a bad
scene stops the run within a few batches, and nothing is written until every scene has passed. Each scene
file is written under a temporary name and renamed when complete, so an interrupted run leaves no partial
file and a rerun skips the scenes already in the store.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Unpack

from ofa_embed.embedding.checks import (
    check_model_takes,
    check_options,
    check_writable,
    share_custom_statistics,
    store_identity,
)
from ofa_embed.embedding.distributed import extract_on_cluster
from ofa_embed.embedding.fields import check_field_tiling, field_stride
from ofa_embed.embedding.options import TILES_PER_TASK, OptionKeywords, RunOptions, run_options
from ofa_embed.embedding.pipeline import RunModel, load_run_model
from ofa_embed.embedding.scene_files import SceneReport, extract_plans
from ofa_embed.errors import ConfigError, StoreError
from ofa_embed.field_files import check_field_dtype, list_fields
from ofa_embed.location import AnyPath, as_location
from ofa_embed.model.config import DEFAULT_MODEL
from ofa_embed.progress import ProgressCallback
from ofa_embed.raster.checks import ValueChecks
from ofa_embed.raster.files import group_band_files
from ofa_embed.raster.opening import open_scenes
from ofa_embed.raster.reader import TilePlan, plan_tiles
from ofa_embed.raster.scene import Scene
from ofa_embed.raster.source import gdal_block_cache
from ofa_embed.sensors import CUSTOM
from ofa_embed.store import partition_of, store_files
from ofa_embed.store.claim import claimed_store
from ofa_embed.tiling import DEFAULT_MIN_VALID

__all__ = [
    "extract", "ExtractReport", "RunOptions", "SceneReport",
    "DEFAULT_MODEL", "DEFAULT_MIN_VALID",
]

logger = logging.getLogger(__name__)


SceneInput = str | Path | Sequence[str | Path]


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


def extract(
    scenes: SceneInput | Sequence[SceneInput],
    store: str | AnyPath = "embeddings",
    *,
    options: RunOptions | None = None,
    client: Any = None,
    tiles_per_task: int = TILES_PER_TASK,
    on_progress: ProgressCallback | None = None,
    **keywords: Unpack[OptionKeywords],
) -> ExtractReport:
    """Embed every tile of every scene into ``store`` (one GeoParquet file per scene).

    Args:
        scenes: a scene, or a list of scenes; a scene is a multi-band raster, a folder of band files,
            or a list of single-band files (a nested list). Single-band files given together whose names
            share a product id are grouped into one scene per product (``group_band_files``).
        store: store directory (created when missing).
        options: how to read, tile, embed and store (:class:`~ofa_embed.embedding.options.RunOptions`);
            default: its defaults.
        client: run on a Dask cluster (:mod:`ofa_embed.embedding.distributed`): a ``distributed.Client``, a
            scheduler address (``tcp://host:8786``) or ``"local"`` (a LocalCluster, one worker per core, or per GPU).
        tiles_per_task: with ``client``, the most tiles one task embeds (larger scenes are split).
        on_progress: called as ``(scene_name, tiles_done, tiles_total)`` after every batch.
        **keywords: any field of :class:`~ofa_embed.embedding.options.RunOptions` by name (``tile_size=64``,
            ``model="ofa_base"``, ``overwrite=True``, ...), overriding ``options``.

    Raises:
        TypeError: a keyword that is not a field of ``RunOptions``.
        OFAEmbedError subclasses for bad input, before anything is written.
    """
    options = run_options("extract", options, keywords)
    check_options(options)
    check_field_dtype(options.field_dtype)
    if options.dense and client is not None:
        raise ConfigError("dense: fields are made by local runs only; drop --dask (or dense) for this run")
    if options.partition_by:
        partition_of(options.partition_by, 0.0, 0.0, None)  # refuses unknown keys before anything is read
    items = group_band_files([scenes] if isinstance(scenes, (str, Path)) else list(scenes))
    store = as_location(store)
    with gdal_block_cache():
        opened: list[Scene] = []
        try:
            opened = open_scenes(items, **options.open_args(), check_values=False)
            run = load_run_model(options.weights, options.model, options.weights_layout, options.device,
                                 options.precision)
            plans = _plan_scenes(opened, run, options)
            check_writable(store)
            with claimed_store(store, store_identity(run.loaded, options.embedding_dtype)):
                share_custom_statistics([s for s in opened if s.modality.name == CUSTOM], store)
                report = ExtractReport(store, run.loaded.weights_hash, run.loaded.source, run.loaded.pretrained,
                                       str(run.device), run.precision, options.embedding_dtype)
                held = {path.stem: path for path in store_files(store)} if store.is_dir() else {}
                if options.dense:  # a scene without its field is not done
                    fields = list_fields(store)
                    held = {name: path for name, path in held.items() if name in fields}
                todo = []
                for plan, item in zip(plans, items, strict=True):
                    if plan.scene.name in held and not options.overwrite:
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
                        done = extract_on_cluster(client, todo, store, options, run.precision, tiles_per_task, on_progress)
                    else:
                        done = extract_plans([plan for plan, _ in todo], run, store, options, on_progress, checks)
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


def _plan_scenes(opened: list[Scene], run: RunModel, options: RunOptions) -> list[TilePlan]:
    """The tiles of each scene, once the model is known to take it.

    Raises:
        ModalityError: the model cannot take a scene's bands.
        TilingError: tiling that does not fit a scene or the model's patch size.
        StoreError: two scenes of the same name (a store holds one file per scene name).
    """
    plans = []
    for scene in opened:
        check_model_takes(scene, run.loaded)
        patch = run.loaded.model.patch_size
        plan = plan_tiles(scene, options.tile_size, options.stride, patch)
        if options.dense:
            if options.stride is None:  # overlapping tiles, their borders cropped (ofa_embed.embedding.fields)
                plan = plan_tiles(scene, plan.tile_size, field_stride(plan.tile_size, patch), patch)
            check_field_tiling(plan.tile_size, plan.stride, patch, str(scene.path))
        plans.append(plan)
    names = [p.scene.name for p in plans]
    if duplicate := next((n for n in names if names.count(n) > 1), None):
        raise StoreError(f"two scenes are both named {duplicate!r}; a store holds one file per scene name")
    return plans
