"""``extract_chips``: a collection of small rasters (chips) -> one tile per chip -> store files of N chips.

Chip datasets (EuroSAT's 64 px tiles, BigEarthNet's 120 px patches, a labelling tool's exports) come as
thousands of small GeoTIFFs, often in a folder per class. Extracting each as a scene would give each
its own store file and batches of one tile; here the chips are read in a background thread into full
batches across files, embedded as ``extract`` embeds tiles (:mod:`ofa_embed.embedding.forward`), and
written ``chips_per_file`` to a store file (``chips-00000.parquet``, ...) with each chip's path, label
and CRS as columns.

Every chip is embedded whole: the collection's tile is the first chip's longer side rounded up to a
multiple of the patch size (or ``tile_size``), smaller chips are padded (flagged ``padded``) and a larger
one is an error. The first chip is opened like a scene (sensor detection, value check); the others
must have its band count, data type and band descriptions, and are read with its band mapping.

Resuming: a chip whose path a chip file of the store already holds is not embedded again. The store's
files are the record of what is done (each written atomically); a separate manifest could disagree
with them after a crash between the two writes. A bad chip stops the run naming the file; the files
written before it are complete, so a rerun after fixing or removing it continues from there.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Unpack

import numpy as np
from rasterio.crs import CRS
from rasterio.windows import Window

from ofa_embed.embedding.checks import (
    check_model_takes,
    check_options,
    check_writable,
    share_custom_statistics,
    store_identity,
)
from ofa_embed.embedding.forward import batches_held, embed_batches, model_workers
from ofa_embed.embedding.options import CHIPS_PER_FILE, SCENE_ONLY, ChipOptionKeywords, RunOptions, run_options
from ofa_embed.embedding.pipeline import RunModel, feed, load_run_model
from ofa_embed.embedding.records import file_metadata, model_record
from ofa_embed.errors import SceneNotFoundError, StoreError, TilingError
from ofa_embed.location import AnyPath, as_location
from ofa_embed.progress import ProgressCallback
from ofa_embed.raster.files import RASTER_SUFFIXES
from ofa_embed.raster.opening import open_like, open_scene
from ofa_embed.raster.reader import TileBatch, TileRing, prefetched
from ofa_embed.raster.scene import Scene
from ofa_embed.raster.source import gdal_block_cache
from ofa_embed.sensors import CUSTOM
from ofa_embed.store import ChipColumns, TileRecords, parquet_schema, read_parquet, store_files, write_chips
from ofa_embed.store.claim import claimed_store
from ofa_embed.store.metadata import ChipsRecord, TilingRecord, emb_metadata
from ofa_embed.tiling import TileWindow, to_lonlat, validate_tiling

__all__ = ["CHIPS_PER_FILE", "Chip", "ChipsReport", "RunOptions", "extract_chips", "find_chips"]

logger = logging.getLogger(__name__)

LABEL_SOURCE = "parent folder"
# chips of a custom sensor (given by wavelengths) pooled for its normalisation statistics
STATISTICS_CHIPS = 32
# a first "chip" this many default tiles wide is a scene given by mistake: refused rather than read whole
MAX_CHIP_TILES = 4
_CHIP_FILE = re.compile(r"^chips-(\d+)$")


@dataclass(frozen=True)
class Chip:
    """One chip file: its absolute path, its name in the store (ids derive from it) and its label (or None)."""

    path: Path
    name: str
    label: str | None


@dataclass
class ChipsReport:
    """What one chip extraction wrote to a store.

    Attributes:
        store: the store directory.
        weights_hash, weights_source, pretrained, device, precision: as in ``ExtractReport``.
        chips: chips embedded this run; ``skipped_existing``: chips the store already held;
            ``skipped_invalid``: chips with fewer than ``min_valid`` valid pixels.
        tile_size: the collection's tile edge in pixels.
        embedding_dtype: how the embeddings are stored (``float32``, ``float16``, ``int8``).
        files: the store files written this run.
        seconds: wall time of the run.
    """

    store: AnyPath
    weights_hash: str
    weights_source: str
    pretrained: bool
    device: str
    precision: str
    tile_size: int = 0
    embedding_dtype: str = "float32"
    chips: int = 0
    skipped_existing: int = 0
    skipped_invalid: int = 0
    files: list[AnyPath] = field(default_factory=list)
    seconds: float = 0.0


def find_chips(sources: Sequence[str | Path]) -> list[Chip]:
    """The chips of ``sources``: files as given, and every raster below a folder (recursively, sorted).

    A chip below a given folder is named by its path relative to the folder (without suffix) and labelled
    with its parent folder's name (EuroSAT's ``AnnualCrop/AnnualCrop_1.tif`` -> ``AnnualCrop``); one directly
    in the folder, or given as a file, is named by its stem and has no label.

    Raises:
        SceneNotFoundError: a source does not exist, or no raster was found.
        StoreError: two chips with the same name.
    """
    chips: list[Chip] = []
    # absolute: the store records chips by path, and a rerun from another directory must find them
    for source in (Path(source).absolute() for source in sources):
        if not source.exists():
            raise SceneNotFoundError(f"{source}: no such file or folder")
        if source.is_file():
            chips.append(Chip(source, source.stem, None))
            continue
        for path in sorted(source.rglob("*")):
            if path.is_file() and path.suffix.lower() in RASTER_SUFFIXES and not path.name.startswith("."):
                relative = path.relative_to(source)
                label = relative.parent.name if len(relative.parts) > 1 else None
                chips.append(Chip(path, relative.with_suffix("").as_posix(), label))
    if not chips:
        raise SceneNotFoundError(f"{', '.join(map(str, sources))}: no chip rasters ({', '.join(RASTER_SUFFIXES)})")
    seen: dict[str, Path] = {}
    for chip in chips:
        if chip.name in seen:
            raise StoreError(f"{chip.path} and {seen[chip.name]} are both named {chip.name!r} in the store; "
                             "extract them into separate stores or rename one")
        seen[chip.name] = chip.path
    return chips


@functools.lru_cache(maxsize=64)
def _crs_text(crs: CRS) -> str:
    """``EPSG:<code>``, else WKT; once per CRS (finding the code is slow next to a chip's read; a collection
    has few CRSs).
    """
    code = crs.to_epsg()
    return f"EPSG:{code}" if code else crs.to_wkt()


@dataclass
class ChipBatch(TileBatch):
    """A batch of chips, one tile each (``tiles`` are their windows), and what the store needs of them.

    Attributes:
        chips: the chips in the batch.
        lonlat: ``(B, 4, 2)`` chip corners in EPSG:4326.
        crs: each chip's native CRS as text.
        acquired: each chip's acquisition time, or None.
    """

    chips: list[Chip] = field(default_factory=list)
    lonlat: np.ndarray = field(default_factory=lambda: np.empty((0, 4, 2)))
    crs: list[str] = field(default_factory=list)
    acquired: list[datetime | None] = field(default_factory=list)


def _corners(scene: Scene) -> np.ndarray:
    """``(4, 2)`` corners (top-left, top-right, bottom-right, bottom-left) of a chip in its CRS."""
    t, w, h = scene.transform, scene.width, scene.height
    return np.array([t * (0, 0), t * (w, 0), t * (w, h), t * (0, h)], np.float64)


def _lonlat(corners: list[np.ndarray], crs: list[CRS]) -> np.ndarray:
    """``(B, 4, 2)`` longitude/latitude of chips' native ``corners``, transformed once per CRS of the batch."""
    if not corners:
        return np.empty((0, 4, 2))
    native = np.array(corners)
    out = np.empty_like(native)
    for system in set(crs):
        rows = [i for i, c in enumerate(crs) if c == system]
        lon, lat = to_lonlat(native[rows, :, 0], native[rows, :, 1], system)
        out[rows] = np.stack([lon, lat], axis=-1)
    return out


def _read_chip_batches(template: Scene, chips: Sequence[Chip], tile_size: int, batch_size: int, min_valid: float,
                       nodata: float | None, stop: threading.Event, held: int) -> Iterator[ChipBatch]:
    """Batches of ``batch_size`` kept chips read whole into zero-padded ``tile_size`` tiles (see the ring of
    :func:`ofa_embed.raster.reader.read_tile_batches`). A chip's valid fraction is over its own pixels:
    padding a smaller chip to the tile is not missing data.
    """
    channels = template.modality.num_bands
    shape = (batch_size, channels, tile_size, tile_size)
    ring = TileRing(held)
    skipped = 0
    batch = ChipBatch([], ring.next_batch(shape), np.empty(0), 0)
    fractions: list[float] = []
    corners: list[np.ndarray] = []
    crs_objects: list[CRS] = []
    for chip in chips:
        if stop.is_set():
            return
        with open_like(template, chip.path, chip.name, nodata) as scene:
            if max(scene.width, scene.height) > tile_size:
                raise TilingError(f"{chip.path}: {scene.width} x {scene.height} px, larger than the collection's "
                                  f"{tile_size} px tile (from its first chip {template.path}); give --tile-size")
            slot = batch.data[len(batch.tiles)]  # read in place; a skipped chip's is overwritten by the next
            _, valid = scene.read(Window(0, 0, scene.width, scene.height), slot[:, : scene.height, : scene.width])
            fraction = float(valid.mean())
            if fraction < min_valid:
                skipped += 1
                continue
            window = TileWindow(0, 0, scene.height, scene.width, tile_size)
            if window.padded:
                slot[:, scene.height :] = 0.0
                slot[:, : scene.height, scene.width :] = 0.0
            corners.append(_corners(scene))
            crs_objects.append(scene.crs)
            batch.tiles.append(window)
            batch.chips.append(chip)
            batch.crs.append(_crs_text(scene.crs))
            batch.acquired.append(scene.acquired)
            fractions.append(fraction)
        if len(batch.tiles) == batch_size:
            batch.valid_fraction, batch.lonlat, batch.skipped = np.array(fractions), _lonlat(corners, crs_objects), skipped
            yield batch
            batch = ChipBatch([], ring.next_batch(shape), np.empty(0), 0)
            fractions, corners, crs_objects, skipped = [], [], [], 0
    if batch.tiles or skipped:
        batch.data = batch.data[: len(batch.tiles)]
        batch.valid_fraction, batch.lonlat, batch.skipped = np.array(fractions), _lonlat(corners, crs_objects), skipped
        yield batch


def _stored_chips(store: AnyPath) -> tuple[dict[str, str], int]:
    """The chips a store holds (``path -> name``) and the number of the next chip file."""
    held: dict[str, str] = {}
    next_number = 0
    for path in store_files(store) if store.is_dir() else []:
        if match := _CHIP_FILE.match(path.stem):
            next_number = max(next_number, int(match.group(1)) + 1)
        if "path" in parquet_schema(path).names:
            table = read_parquet(path, ["path", "scene"])
            held.update(zip(table.column("path").to_pylist(), table.column("scene").to_pylist(), strict=True))
    return held, next_number


@dataclass
class _Pending:
    """Embedded chips not yet written to a store file, one entry per chip."""

    chips: list[Chip] = field(default_factory=list)
    windows: list[TileWindow] = field(default_factory=list)
    crs: list[str] = field(default_factory=list)
    acquired: list[datetime | None] = field(default_factory=list)
    fractions: list[float] = field(default_factory=list)
    corners: list[np.ndarray] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)

    def add(self, batch: ChipBatch, embeddings: np.ndarray) -> None:
        """Keep a batch's chips (only small per-chip arrays: the reader reuses the batch's tile array)."""
        self.chips += batch.chips
        self.windows += batch.tiles
        self.crs += batch.crs
        self.acquired += batch.acquired
        self.fractions += batch.valid_fraction.tolist()
        self.corners += list(batch.lonlat)
        self.embeddings += list(embeddings)

    def take(self, count: int) -> tuple[ChipColumns, TileRecords]:
        """The first ``count`` pending chips as store columns, removed from the pending ones."""
        chips, windows = self.chips[:count], self.windows[:count]
        columns = ChipColumns(
            names=[chip.name for chip in chips], paths=[str(chip.path) for chip in chips],
            labels=[chip.label for chip in chips], crs=self.crs[:count], acquired=self.acquired[:count],
        )
        records = TileRecords(
            rows=np.zeros(len(windows), np.int64), cols=np.zeros(len(windows), np.int64),
            heights=np.array([w.height for w in windows]), widths=np.array([w.width for w in windows]),
            padded=np.array([w.padded for w in windows]), valid_fraction=np.array(self.fractions[:count], np.float32),
            lonlat=np.array(self.corners[:count]), embeddings=np.array(self.embeddings[:count]),
        )
        for values in (self.chips, self.windows, self.crs, self.acquired, self.fractions, self.corners, self.embeddings):
            del values[:count]
        return columns, records


def extract_chips(
    sources: str | Path | Sequence[str | Path],
    store: str | AnyPath = "embeddings",
    *,
    options: RunOptions | None = None,
    chips_per_file: int = CHIPS_PER_FILE,
    on_progress: ProgressCallback | None = None,
    **keywords: Unpack[ChipOptionKeywords],
) -> ChipsReport:
    """Embed every chip of ``sources`` (files, or folders of chips, e.g. ``class/*.tif``) into ``store``.

    Args:
        sources: chip files and folders (see :func:`find_chips` for names and labels).
        store: store directory (created when missing); it may also hold scene files of the same weights.
        options: how to read, tile, embed and store (:class:`~ofa_embed.embedding.options.RunOptions`), as for
            ``extract``: the modality is detected from the first chip, a sensor given by wavelengths is normalised
            with the store's statistics, else those of the first chips' values pooled, and ``tile_size`` is the
            tile every chip is padded into (default: the first chip's longer side rounded up to a multiple of
            the patch size). Chips are embedded whole, once: ``stride``, ``overwrite`` and ``partition_by``
            do not apply.
        chips_per_file: chips per store file.
        on_progress: called as ``("chips", chips_done, chips_total)`` after every batch.
        **keywords: any field of ``RunOptions`` by name but those three (``tile_size=64``, ...), overriding
            ``options``.

    Raises:
        TypeError: a keyword that is not a field of ``RunOptions``, or one of the three.
        OFAEmbedError subclasses: bad input (the first chip before anything is written; a later chip
        when it is read, after the files before it are complete).
    """
    start = time.perf_counter()
    options = run_options("extract_chips", options, keywords, refused=SCENE_ONLY)
    check_options(options)
    if chips_per_file <= 0:
        raise TilingError(f"chips_per_file must be positive, got {chips_per_file}")
    roots = [sources] if isinstance(sources, (str, Path)) else list(sources)
    chips = find_chips(roots)
    store = as_location(store)
    with gdal_block_cache(), open_scene(chips[0].path, **options.open_args()) as template:
        run = load_run_model(options.weights, options.model, options.weights_layout, options.device, options.precision)
        check_model_takes(template, run.loaded)
        longer = max(template.width, template.height)
        if options.tile_size is None and longer > MAX_CHIP_TILES * template.modality.default_tile_size:
            raise TilingError(f"{template.path}: {template.width} x {template.height} px is a scene, not a chip; "
                              "extract it with ofa-embed extract (or give --tile-size for chips this large)")
        patch = run.loaded.model.patch_size
        size = options.tile_size or -(-longer // patch) * patch
        validate_tiling(size, size, patch, width=template.width, height=template.height, name=str(template.path),
                        whole=True)
        check_writable(store)
        with claimed_store(store, store_identity(run.loaded, options.embedding_dtype)):
            if template.modality.name == CUSTOM:
                _share_chip_statistics(template, chips, options.nodata, store)
            held, number = _stored_chips(store)
            for chip in chips:
                if held.get(str(chip.path), chip.name) != chip.name:
                    raise StoreError(f"{chip.path}: {store} holds it as {held[str(chip.path)]!r}, not {chip.name!r}")
            held_names = set(held.values())
            todo = [chip for chip in chips if str(chip.path) not in held]
            if clash := next((chip for chip in todo if chip.name in held_names), None):
                raise StoreError(f"{clash.path}: {store} already holds another chip named {clash.name!r}; "
                                 "use another store or rename it")
            report = ChipsReport(store, run.loaded.weights_hash, run.loaded.source, run.loaded.pretrained, str(run.device),
                                 run.precision, tile_size=size, embedding_dtype=options.embedding_dtype,
                                 skipped_existing=len(chips) - len(todo))
            if todo:
                store.mkdir(parents=True, exist_ok=True)
                _embed_chips(template, todo, report, run, options, chips_per_file, number, [str(root) for root in roots],
                             on_progress)
    report.seconds = time.perf_counter() - start
    return report


def _share_chip_statistics(template: Scene, chips: Sequence[Chip], nodata: float | None, store: AnyPath) -> None:
    """A custom sensor's normalisation for the whole collection: the store's, else its first chips' pooled."""
    opened = [open_like(template, chip.path, chip.name, nodata) for chip in chips[1:STATISTICS_CHIPS]]
    try:
        share_custom_statistics([template, *opened], store)
    finally:
        for scene in opened:
            scene.close()


def _embed_chips(template: Scene, chips: list[Chip], report: ChipsReport, run: RunModel, options: RunOptions,
                 chips_per_file: int, number: int, roots: list[str], on_progress: ProgressCallback | None) -> None:
    """Read, embed and write ``chips``, ``chips_per_file`` to each new store file numbered from ``number``."""
    loaded, device, precision = run
    min_valid = options.min_valid
    fed = feed(template, loaded)
    record = model_record(loaded, precision)
    labelled = any(chip.label is not None for chip in chips)

    def write(pending: _Pending) -> None:
        columns, records = pending.take(chips_per_file)
        name = f"chips-{number + len(report.files):05d}"
        metadata = file_metadata(template, record, fed, TilingRecord(report.tile_size, report.tile_size, min_valid),
                                 ChipsRecord(len(columns.names), roots, LABEL_SOURCE if labelled else None))
        report.files.append(write_chips(
            report.store, name, modality=template.modality.name, tile_size=report.tile_size,
            missing_bands=list(template.missing_bands), chips=columns, records=records, metadata=metadata,
            emb_metadata=emb_metadata(record, columns.acquired, report.embedding_dtype),
        ))
        report.chips += len(columns.names)

    stop = threading.Event()
    workers, threads = model_workers(device)
    reader = _read_chip_batches(template, chips, report.tile_size, options.batch_size, min_valid, options.nodata, stop,
                                held=batches_held(workers))
    pending, done = _Pending(), 0
    with prefetched(reader, stop) as batches, closing(
        embed_batches(batches, loaded.model, fed, device, workers, threads, precision)
    ) as embedded:
        for batch, embeddings in embedded:
            pending.add(batch, embeddings)
            report.skipped_invalid += batch.skipped
            done += len(batch.tiles) + batch.skipped
            while len(pending.chips) >= chips_per_file:
                write(pending)
            if on_progress:
                on_progress("chips", done, len(chips))
    if pending.chips:
        write(pending)
    if not report.chips and not report.skipped_existing:
        raise TilingError(f"{template.path} and the other chips: none has at least {min_valid:.0%} valid pixels; "
                          "nothing written")
