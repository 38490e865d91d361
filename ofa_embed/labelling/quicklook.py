"""Quicklooks: each tile's own pixels as a PNG, read from its scene, so that a labeller sees what they label.

The bands: true colour (the source bands nearest 665, 560 and 490 nm, each within 40 nm) where a sensor has
them; Sentinel-1's usual false colour (VV, VH, VV - VH in dB) for SAR; otherwise the first three bands (or one
band as grey). Each channel gets a 2-98 % stretch computed once per scene over the scene's value sample
(:meth:`~ofa_embed.raster.scene.Scene.sample_raw`: windows spread over the whole scene), so neighbouring tiles
of a scene share one stretch and their seams match. Nodata pixels are transparent; the padded part of an edge
tile is not drawn (a tile's footprint is its in-scene extent).

Where the recorded scene (``ofa_embed`` metadata ``scene.path``; a chip's ``path`` column) no longer exists,
:class:`Quicklooks` says so (:meth:`Quicklooks.missing`), the API answers 404 with that reason and the page
keeps the embedding colours for those tiles.

PNGs are cached in memory (the last :data:`MEMORY_CACHE` tiles) and on disk in ``STORE/_quicklooks/`` (written
atomically; a folder :func:`~ofa_embed.store.store_files` never lists), so a restarted server serves them without
reading the scenes again. A read-only store caches in memory only.
"""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ofa_embed.atomic import atomic_target
from ofa_embed.errors import OFAEmbedError, StoreError
from ofa_embed.store import StoreFile, parquet_schema, read_metadata, read_parquet

__all__ = ["QUICKLOOK_DIR", "Quicklooks", "QuicklookMissing", "TRUE_COLOUR_UM"]

logger = logging.getLogger(__name__)

QUICKLOOK_DIR = "_quicklooks"
TRUE_COLOUR_UM = (0.665, 0.56, 0.49)  # red, green, blue centre wavelengths
TOLERANCE_UM = 0.04
STRETCH = (2.0, 98.0)
MAX_SIDE = 256  # a quicklook's longer side in pixels; a 128 px tile keeps every pixel
MEMORY_CACHE = 2048
OPEN_SCENES = 4


class QuicklookMissing(StoreError):
    """No quicklook for a tile: its scene is not at its recorded path, or cannot be read."""


@dataclass
class _SceneLook:
    """An opened scene, the source bands drawn as red, green, blue (``-1``: VV - VH), and their stretch."""

    scene: Any
    bands: list[int]
    low: np.ndarray
    high: np.ndarray
    nodata: float | None
    lock: threading.Lock


def _recorded(file: StoreFile) -> dict[str, Any]:
    meta = read_metadata(file.path)
    return {"scene": meta.get("scene"), "modality": meta.get("modality", {}).get("name"),
            "bands": meta.get("source_bands"), "chips": "chips" in meta}


def choose_bands(scene: Any) -> list[int]:
    """Source band indices drawn as red, green and blue (see the module docstring); ``-1`` is VV - VH."""
    modality = scene.modality
    wavelengths = np.asarray(modality.wavelengths_um, np.float64)
    names = [band.name for band in modality.bands]
    if scene.spectral_matrix is not None:  # hyperspectral: the source band weighing most in each canonical band
        source_of = np.asarray(scene.spectral_matrix).argmax(axis=1)
        present = np.asarray(scene.spectral_matrix).sum(axis=1) > 0
    else:
        source_of = np.full(len(names), -2)
        source_of[list(scene.band_positions)] = np.arange(len(scene.band_positions))
        present = source_of >= 0
    if modality.value_kind == "sar_db":
        by_name = {names[c]: int(source_of[c]) for c in range(len(names)) if present[c]}
        if "VV" in by_name and "VH" in by_name:
            return [by_name["VV"], by_name["VH"], -1]
    chosen = []
    for target in TRUE_COLOUR_UM:
        gaps = np.where(present, np.abs(wavelengths - target), np.inf)
        if gaps.min() > TOLERANCE_UM:
            break
        chosen.append(int(source_of[int(gaps.argmin())]))
    if len(chosen) == 3:
        return chosen
    count = len(scene.band_positions) if scene.spectral_matrix is None else np.asarray(scene.spectral_matrix).shape[1]
    return [0, 1, 2] if count >= 3 else [0, 0, 0]


def _channel(raw: np.ndarray, band: int) -> np.ndarray:
    return raw[0] - raw[1] if band == -1 else raw[band]  # VV - VH: the first two drawn bands


def _stretch(scene: Any, bands: list[int]) -> tuple[np.ndarray, np.ndarray]:
    sample = scene.sample_raw()  # (source bands, n) valid pixels over the whole scene
    drawn = np.stack([sample[bands[0]], sample[bands[1]],
                      sample[bands[0]] - sample[bands[1]] if bands[2] == -1 else sample[bands[2]]])
    low, high = np.nanpercentile(drawn, STRETCH, axis=1) if drawn.shape[1] else (np.zeros(3), np.ones(3))
    return np.asarray(low, np.float64), np.where(high > low, high, low + 1.0)


def render_png(rgb: np.ndarray, valid: np.ndarray) -> bytes:
    """``(3, h, w)`` values in [0, 1] and ``(h, w)`` validity to PNG bytes (RGBA, invalid transparent), the
    longer side reduced to at most :data:`MAX_SIDE` by taking every n-th pixel (pixels stay pixels).
    """
    from PIL import Image

    step = max(1, int(np.ceil(max(rgb.shape[1:]) / MAX_SIDE)))
    rgb, valid = rgb[:, ::step, ::step], valid[::step, ::step]
    pixels = np.empty((*rgb.shape[1:], 4), np.uint8)
    pixels[..., :3] = np.round(np.clip(np.nan_to_num(np.moveaxis(rgb, 0, -1)), 0, 1) * 255)
    pixels[..., 3] = np.where(valid, 255, 0)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


class Quicklooks:
    """PNG quicklooks of a store's tiles (see the module docstring); safe to call from several threads."""

    def __init__(self, store: Path, files: list[StoreFile]) -> None:
        """Read each file's recorded scene (footers only); nothing else is opened until a quicklook is asked for."""
        self.store = Path(store)
        self.files = files
        self.offsets = np.cumsum([0] + [f.rows for f in files])
        self.records = [_recorded(f) for f in files]
        self.memory: OrderedDict[str, bytes] = OrderedDict()
        self.windows: dict[int, dict[str, np.ndarray]] = {}
        self.scenes: OrderedDict[str, _SceneLook] = OrderedDict()
        self.lock = threading.Lock()
        self.cache_dir: Path | None = self.store / QUICKLOOK_DIR

    def missing(self) -> list[dict[str, str]]:
        """Scenes not at their recorded path: ``[{"scene", "file", "path"}]`` (a chip file: its first chip's path)."""
        gone = []
        for file, record in zip(self.files, self.records, strict=True):
            path = self._first_path(file, record)
            if path is not None and not Path(path).exists():
                name = file.name if record["chips"] else (record["scene"] or {}).get("name") or file.name
                gone.append({"scene": name, "file": file.name, "path": path})
        return gone

    def _first_path(self, file: StoreFile, record: dict[str, Any]) -> str | None:
        if record["chips"]:
            return str(read_parquet(file.path, ["path"]).column("path")[0]) if file.rows else None
        return (record["scene"] or {}).get("path")

    def _window(self, index: int, row: int) -> dict[str, Any]:
        with self.lock:
            columns = self.windows.get(index)
        if columns is None:
            file = self.files[index]
            names = parquet_schema(file.path).names
            wanted = [c for c in ("row", "col", "width", "height", "path") if c in names]
            table = read_parquet(file.path, wanted)
            columns = {c: table.column(c).to_numpy(zero_copy_only=False) for c in wanted}
            with self.lock:
                self.windows[index] = columns
        return {c: values[row] for c, values in columns.items()}

    def _look(self, path: str, record: dict[str, Any]) -> _SceneLook:
        with self.lock:
            look = self.scenes.get(path)
            if look is not None:
                self.scenes.move_to_end(path)
                return look
        if not Path(path).exists():
            raise QuicklookMissing(f"scene {path} is not at its recorded path: moved or deleted")
        from ofa_embed.raster.opening import open_scene  # rasterio loads only once imagery is asked for

        try:
            try:
                scene = open_scene(path, modality=record["modality"], check_values=False)
            except OFAEmbedError:
                scene = open_scene(path, modality=record["modality"], bands=record["bands"], check_values=False)
            bands = choose_bands(scene)
            low, high = _stretch(scene, bands)
        except OFAEmbedError as exc:
            raise QuicklookMissing(f"scene {path}: cannot be read for a quicklook ({exc})") from None
        look = _SceneLook(scene, bands, low, high, scene.nodata, threading.Lock())
        with self.lock:
            self.scenes[path] = look
            while len(self.scenes) > OPEN_SCENES:
                _, old = self.scenes.popitem(last=False)
                with old.lock:
                    old.scene.close()
        return look

    def png(self, position: int, tile_id: str) -> bytes:
        """The quicklook of the tile at store ``position`` (with id ``tile_id``, the cache key).

        Raises:
            QuicklookMissing: its scene is gone or unreadable.
        """
        with self.lock:
            cached = self.memory.get(tile_id)
        if cached is not None:
            return cached
        disk = self.cache_dir / f"{tile_id}.png" if self.cache_dir is not None else None
        if disk is not None and disk.exists():
            data = disk.read_bytes()
        else:
            data = self._render(position)
            if disk is not None:
                try:
                    disk.parent.mkdir(exist_ok=True)
                    with atomic_target(disk) as tmp:
                        tmp.write_bytes(data)
                except (OSError, StoreError) as exc:
                    logger.info("quicklooks cached in memory only: %s", exc)
                    self.cache_dir = None
        with self.lock:
            self.memory[tile_id] = data
            while len(self.memory) > MEMORY_CACHE:
                self.memory.popitem(last=False)
        return data

    def _render(self, position: int) -> bytes:
        from rasterio.windows import Window

        index = int(np.searchsorted(self.offsets, position, side="right") - 1)
        record, row = self.records[index], int(position - self.offsets[index])
        window = self._window(index, row)
        if record["chips"]:
            path, look = str(window["path"]), self._look(str(window["path"]), record)
            box = Window(0, 0, look.scene.width, look.scene.height)
        else:
            path = (record["scene"] or {}).get("path") or ""
            look = self._look(path, record)
            box = Window(int(window["col"]), int(window["row"]), int(window["width"]), int(window["height"]))
        with look.lock:
            try:
                raw = look.scene.read_raw(box)
            except OFAEmbedError as exc:
                raise QuicklookMissing(f"scene {path}: cannot be read for a quicklook ({exc})") from None
        valid = np.isfinite(raw).all(axis=0)
        if look.nodata is not None:
            valid &= ~(raw == look.nodata).any(axis=0)
        drawn = np.stack([_channel(raw, b) if b == -1 else raw[b] for b in look.bands])
        rgb = (drawn - look.low[:, None, None]) / (look.high - look.low)[:, None, None]
        return render_png(rgb, valid)

    def close(self) -> None:
        """Close every scene held open."""
        with self.lock:
            for look in self.scenes.values():
                with look.lock:
                    look.scene.close()
            self.scenes.clear()
