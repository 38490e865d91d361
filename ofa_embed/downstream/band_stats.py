"""Band statistics of a store's tiles: each tile's per-band mean and standard deviation, read from its scene.

The simplest features a tile has (what a probe on spectra alone can do), as the baseline row of
``benchmark compare``. Each tile's window (``row``, ``col``, ``width``, ``height`` of its store row) is read from
the scene the store file records (``scene.path``), or a chip from its ``path`` column, with the recorded modality
and bands, normalised as the model was fed (:meth:`ofa_embed.raster.scene.Scene.read`); the mean and std are over
the window's valid pixels, per band of the modality (a band the scene lacks is 0, the mean). The features are
written as a copy of the store (:func:`ofa_embed.store.write_with_embeddings`), so they are probed by the same
code, split and labels as any store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ofa_embed.errors import OFAEmbedError, StoreError
from ofa_embed.location import AnyPath, as_location
from ofa_embed.store import describe_store, read_metadata, read_parquet, write_with_embeddings

__all__ = ["BAND_STATS_MODEL", "band_stats_store", "scenes_at_hand"]

logger = logging.getLogger(__name__)

BAND_STATS_MODEL = "band-mean-std"


def _scene_paths(meta: dict[str, Any], table_paths: list[str] | None) -> list[str]:
    if table_paths is not None:
        return sorted(set(table_paths))
    path = meta.get("scene", {}).get("path")
    return [path] if path else []


def scenes_at_hand(store: str | AnyPath) -> bool:
    """Whether every scene (or chip) the store's files were read from is a file or folder here."""
    root = as_location(store)
    if not isinstance(root, Path):
        return False
    for described in describe_store(root):
        meta = read_metadata(described.path)
        if "imported" in meta:
            return False
        chips = read_parquet(described.path, ["path"]).column("path").to_pylist() if "chips" in meta else None
        paths = _scene_paths(meta, chips)
        if not paths or not all(Path(p).exists() for p in paths):
            return False
    return True


@contextmanager
def _opened(path: str, meta: dict[str, Any]) -> Iterator[Any]:
    from ofa_embed.raster.opening import open_scene

    modality = meta.get("modality", {}).get("name")
    bands = meta.get("source_bands") or None
    try:
        scene = open_scene(path, modality=modality, bands=bands, check_values=False)
    except OFAEmbedError:  # band labels that are not band names (unnamed bands): the recorded modality alone
        scene = open_scene(path, modality=modality, check_values=False)
    with scene:
        yield scene


def _window_stats(scene: Any, row: int, col: int, width: int, height: int) -> np.ndarray:
    from rasterio.windows import Window

    data, valid = scene.read(Window(col, row, min(width, scene.width - col), min(height, scene.height - row)))
    pixels = data[:, valid] if valid.any() else data.reshape(len(data), -1)
    return np.concatenate([pixels.mean(axis=1), pixels.std(axis=1)]).astype(np.float32)


def band_stats_store(store: str | AnyPath, out: str | Path) -> Path:
    """Write to ``out`` a copy of ``store`` whose embedding of every tile is its per-band mean and std.

    Raises:
        StoreError: a store whose scenes are not at hand (:func:`scenes_at_hand`), an imported product, or a
            missing store.
        OFAEmbedError subclasses: a scene that cannot be read.
    """
    root = as_location(store)
    if not scenes_at_hand(root):
        raise StoreError(f"{root}: the scenes its tiles were read from are not all here (or it is an imported "
                         "product): no band statistics")
    target = Path(out)
    for described in describe_store(root):
        meta = read_metadata(described.path)
        table = read_parquet(described.path)
        windows = zip(*(table.column(c).to_pylist() for c in ("row", "col", "width", "height")), strict=True)
        if "chips" in meta:
            features = []
            for path, (row, col, width, height) in zip(table.column("path").to_pylist(), windows, strict=True):
                with _opened(path, meta) as scene:
                    features.append(_window_stats(scene, row, col, width, height))
        else:
            with _opened(meta["scene"]["path"], meta) as scene:
                features = [_window_stats(scene, *window) for window in windows]
        write_with_embeddings(described.path, target / described.name, np.stack(features),
                              weights_hash=BAND_STATS_MODEL, model=BAND_STATS_MODEL)
        logger.info("band statistics of %d tiles of %s", len(features), described.name)
    return target
