"""``curate``: scenes -> a pre-training corpus of normalised tiles, sharded per modality.

Layout::

    CORPUS/
      manifest.json                 format version, tile size, tiles per modality and per scene, shards
      stats.json                    per-modality, per-band mean/std of the physical values (reflectance,
                                    dB, ...) over the curated tiles, in the modality's band order (the few
                                    nodata pixels that min_valid lets through enter as the band mean)
      <modality>/shard-00000.npy    float16 (N, C, T, T) tiles, normalised with the registered statistics

Why ``.npy`` shards: a 4-D tensor per shard, written with no extra dependency, memory-mapped at training
time for random access without loading the corpus; Parquet is row-oriented for tables and zarr would be
a new dependency for what one file format does here. Tiles stream from the scene reader into a shard
buffer of ``shard_size`` tiles, flushed (temporary name, then rename) when full, so memory is bounded by
one shard and the corpus can be larger than RAM. Curating into an existing corpus appends to it, so
scenes that need different options (``--bands``, ``--modality``) are added by separate calls.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ofa_embed.atomic import atomic_target
from ofa_embed.defaults import CORPUS_MIN_VALID, CORPUS_SHARD_SIZE
from ofa_embed.errors import StoreError, TilingError
from ofa_embed.pretraining.config import DEFAULT_TILE_SIZE, PATCH_MULTIPLE
from ofa_embed.progress import ProgressCallback
from ofa_embed.raster.opening import open_scenes
from ofa_embed.raster.reader import plan_tiles, prefetched, read_tile_batches
from ofa_embed.raster.scene import Scene
from ofa_embed.raster.source import gdal_block_cache

__all__ = ["curate", "CorpusReport", "load_manifest", "CORPUS_VERSION"]

CORPUS_VERSION = 1


@dataclass
class CorpusReport:
    """What :func:`curate` wrote.

    Attributes:
        corpus: the corpus directory.
        tiles: modality -> tiles in the whole corpus.
        added: scene -> tiles added by this call.
        skipped: scene -> tiles left out for a valid fraction below ``min_valid``.
    """

    corpus: Path
    tiles: dict[str, int] = field(default_factory=dict)  # per modality, whole corpus
    added: dict[str, int] = field(default_factory=dict)  # per scene, this call
    skipped: dict[str, int] = field(default_factory=dict)  # per scene: tiles below min_valid


def load_manifest(corpus: str | Path) -> dict[str, Any]:
    """The corpus manifest.

    Raises:
        StoreError: no corpus there.
    """
    path = Path(corpus) / "manifest.json"
    if not path.is_file():
        raise StoreError(f"{corpus}: not a corpus (no manifest.json; build one with ofa-embed curate)")
    manifest = json.loads(path.read_text())
    if manifest.get("corpus_version", 0) > CORPUS_VERSION:
        raise StoreError(f"{corpus}: corpus version {manifest['corpus_version']} is newer than this ofa-embed")
    return manifest


class _ShardWriter:
    """Buffers tiles of one modality and writes them as numbered ``.npy`` shards."""

    def __init__(self, folder: Path, channels: int, tile_size: int, shard_size: int, first_index: int) -> None:
        self.folder = folder
        self.buffer = np.empty((shard_size, channels, tile_size, tile_size), np.float16)
        self.count = 0
        self.index = first_index
        self.written: list[dict[str, object]] = []

    def add(self, tiles: np.ndarray) -> None:
        for tile in tiles:
            self.buffer[self.count] = tile
            self.count += 1
            if self.count == len(self.buffer):
                self.flush()

    def flush(self) -> None:
        if not self.count:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"shard-{self.index:05d}.npy"
        with atomic_target(self.folder / name) as tmp, tmp.open("wb") as handle:
            np.save(handle, self.buffer[: self.count])
        self.written.append({"file": f"{self.folder.name}/{name}", "tiles": self.count})
        self.index += 1
        self.count = 0


class _BandMoments:
    """Running per-band sums of physical values (float64) for mean/std."""

    def __init__(self, channels: int) -> None:
        self.n = 0
        self.total = np.zeros(channels)
        self.squares = np.zeros(channels)

    def add(self, physical: np.ndarray) -> None:
        values = physical.astype(np.float64).transpose(1, 0, 2, 3).reshape(physical.shape[1], -1)
        self.n += values.shape[1]
        self.total += values.sum(axis=1)
        self.squares += (values**2).sum(axis=1)

    def merge(self, other: dict[str, Any] | None) -> None:
        if other:
            self.n += int(other["n"])
            self.total += np.asarray(other["sum"])
            self.squares += np.asarray(other["sum_squares"])

    def to_dict(self) -> dict[str, object]:
        mean = self.total / max(self.n, 1)
        std = np.sqrt(np.maximum(self.squares / max(self.n, 1) - mean**2, 0))
        return {"n": self.n, "sum": self.total.tolist(), "sum_squares": self.squares.tolist(),
                "mean": mean.tolist(), "std": std.tolist()}


def curate(
    scenes: Sequence[str | Path | Sequence[str | Path]],
    corpus: str | Path,
    *,
    modality: str | None = None,
    bands: Sequence[str] | None = None,
    nodata: float | None = None,
    tile_size: int = DEFAULT_TILE_SIZE,
    stride: int | None = None,
    min_valid: float = CORPUS_MIN_VALID,
    shard_size: int = CORPUS_SHARD_SIZE,
    on_progress: ProgressCallback | None = None,
) -> CorpusReport:
    """Tile scenes into a pre-training corpus (appending to ``corpus`` if it exists).

    Args:
        scenes: scenes as for :func:`ofa_embed.extract`.
        corpus: corpus directory.
        modality: registered modality; detected per scene when None (as for :func:`ofa_embed.extract`).
        bands: names of the file's bands in file order (subset input; missing bands are mean-filled).
        nodata: nodata value overriding the file's.
        tile_size: tile edge in pixels; must match the corpus's if it exists.
        stride: step between tiles (default: ``tile_size``).
        min_valid: tiles with a smaller valid-pixel fraction are left out.
        shard_size: tiles per shard file.
        on_progress: called as ``(scene, tiles_done, tiles_total)``.

    Raises:
        OFAEmbedError subclasses for bad scenes, before anything is written;
        TilingError: tile size not a multiple of 16 or different from the existing corpus's.
    """
    corpus = Path(corpus)
    manifest: dict[str, Any] = load_manifest(corpus) if (corpus / "manifest.json").is_file() else {
        "corpus_version": CORPUS_VERSION, "tile_size": tile_size, "dtype": "float16",
        "normalisation": "registered modality statistics (ofa_embed/sensors/registry.py)",
        "modalities": {}, "scenes": {},
    }
    if manifest["tile_size"] != tile_size:
        raise TilingError(f"{corpus}: corpus tiles are {manifest['tile_size']} px, not {tile_size}")
    stats_path = corpus / "stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    with gdal_block_cache():
        opened: list[Scene] = []
        report = CorpusReport(corpus)
        try:
            opened = open_scenes(scenes, modality=modality, bands=bands, nodata=nodata)
            plans = [plan_tiles(scene, tile_size, stride, PATCH_MULTIPLE) for scene in opened]
            corpus.mkdir(parents=True, exist_ok=True)
            for plan in plans:
                scene, name = plan.scene, plan.scene.modality.name
                entry = manifest["modalities"].setdefault(
                    name, {"tiles": 0, "bands": list(scene.modality.band_names), "shards": []}
                )
                writer = _ShardWriter(corpus / name, scene.modality.num_bands, tile_size, shard_size, len(entry["shards"]))
                moments = _BandMoments(scene.modality.num_bands)
                moments.merge(stats.get(name))
                mean, std = scene.modality.mean[None, :, None, None], scene.modality.std[None, :, None, None]
                kept = skipped = 0
                stop = threading.Event()
                with scene.reading(), prefetched(read_tile_batches(plan, 64, min_valid, stop), stop) as batches:
                    for batch in batches:
                        writer.add(batch.data)
                        moments.add(batch.data * std + mean)
                        kept, skipped = kept + len(batch.tiles), skipped + batch.skipped
                        if on_progress:
                            on_progress(scene.name, kept + skipped, len(plan.tiles))
                writer.flush()
                entry["shards"] += writer.written
                entry["tiles"] += kept
                manifest["scenes"][scene.name] = {"path": str(scene.path), "modality": name, "tiles": kept,
                                                  "skipped": skipped, "missing_bands": list(scene.missing_bands)}
                stats[name] = {"bands": list(scene.modality.band_names), **moments.to_dict()}
                report.added[scene.name], report.skipped[scene.name] = kept, skipped
            for path, payload in ((stats_path, stats), (corpus / "manifest.json", manifest)):
                with atomic_target(path) as tmp:
                    tmp.write_text(json.dumps(payload, indent=1))
        finally:
            for scene in opened:
                scene.close()
        report.tiles = {m: e["tiles"] for m, e in manifest["modalities"].items()}
        return report
