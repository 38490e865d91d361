"""Finding a scene's files: band files below a folder or inside an archive, band files given together grouped
into one scene per product, and the scene name they give.

How a sensor names its band files and the rasters beside them that are no bands is registry data
(:attr:`~ofa_embed.sensors.Modality.band_file_token`, :attr:`~ofa_embed.sensors.Modality.not_band_files`).
"""

from __future__ import annotations

import functools
import logging
import re
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from ofa_embed.errors import SceneReadError, first_line
from ofa_embed.sensors import MODALITIES, band_name_from_filename, without_band_token

logger = logging.getLogger(__name__)

__all__ = ["ARCHIVE_SUFFIXES", "RASTER_SUFFIXES", "archive_kind", "archive_members", "band_files", "group_band_files",
           "is_not_band", "scene_name"]

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")
ARCHIVE_SUFFIXES = {".zip": "/vsizip", ".tar": "/vsitar", ".tgz": "/vsitar", ".tar.gz": "/vsitar"}
# previews sit beside the band files of any product; what else is no band is each sensor's (registry data)
_NOT_BANDS_OF_ANY = ("preview",)


@functools.lru_cache(maxsize=8)
def _not_bands_regex(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("(" + "|".join(patterns) + ")", re.IGNORECASE)


def is_not_band(stem: str) -> bool:
    """Whether a file stem is a raster a product ships beside its band files (preview, quality or auxiliary
    layer of a registered sensor, e.g. ``..._TCI``, ``..._BQA``), not a band.
    """
    patterns = (*_NOT_BANDS_OF_ANY, *(p for m in MODALITIES.values() for p in m.not_band_files))
    return _not_bands_regex(tuple(dict.fromkeys(patterns))).search(stem) is not None


def archive_kind(path: Path) -> str | None:
    """GDAL's virtual file system prefix for an archive path (``/vsizip``, ``/vsitar``), None for another file."""
    name = path.name.lower()
    return next((vsi for suffix, vsi in ARCHIVE_SUFFIXES.items() if name.endswith(suffix)), None)


def archive_members(archive: Path) -> list[Path]:
    """The files of a ``.zip``/``.tar`` archive as GDAL virtual paths, sorted.

    Raises:
        SceneReadError: not a readable archive.
    """
    vsi = archive_kind(archive)
    try:
        if vsi == "/vsizip":
            with zipfile.ZipFile(archive) as handle:
                names = [n for n in handle.namelist() if not n.endswith("/")]
        else:
            with tarfile.open(archive) as handle:
                names = [m.name for m in handle.getmembers() if m.isfile()]
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as exc:
        raise SceneReadError(f"{archive}: not a readable archive ({first_line(exc)})") from None
    return [Path(f"{vsi}{archive.resolve()}/{name}") for name in sorted(names)]


def band_files(folder: Path) -> list[Path]:
    """Band files below a folder, or inside a ``.zip``/``.tar`` archive (SAFE ``GRANULE/*/IMG_DATA`` included).

    Previews, quality and auxiliary rasters (no band token of a registered sensor in the name) are left out; a band found at
    several resolutions (L2A ``R10m/R20m/R60m``) is taken at the finest. A folder holding a single
    raster yields that raster (a multi-band file). Archive members are read in place through GDAL's
    ``/vsizip/`` and ``/vsitar/`` (their paths here carry the prefix, see
    :func:`~ofa_embed.raster.source.open_dataset`).

    Raises:
        SceneReadError: no raster band files there, or an unreadable archive.
    """
    if folder.is_dir():
        candidates = [p for p in sorted(folder.rglob("*")) if p.is_file()]
        what = "folder"
    else:
        candidates = archive_members(folder)
        what = "archive"
    rasters = [p for p in candidates if p.suffix.lower() in RASTER_SUFFIXES and not is_not_band(p.stem)]
    if not rasters:
        raise SceneReadError(f"{folder}: {what} holds no raster band files ({', '.join(RASTER_SUFFIXES)})")
    finest: dict[str, tuple[int, Path]] = {}
    for path in rasters:
        band = band_name_from_filename(path.stem)
        if band is None:
            continue
        match = re.search(r"_(\d+)m$", path.stem)
        resolution = int(match.group(1)) if match else 0
        if band not in finest or resolution < finest[band][0]:
            finest[band] = (resolution, path)
    return [path for _, path in finest.values()] or rasters


def group_band_files(items: Sequence[str | Path | Sequence[str | Path]]) -> list[Path | list[Path]]:
    """Scenes from inputs given together: single-band files whose names share a product id (the name
    without its band token: ``LC08_L1TP_..._B4.TIF``, ``T33UUP_..._B02.jp2``, ``*_B<n>.tif``) become one
    scene per product, in the order first given; quality and preview files of such a product
    (``..._BQA.TIF``, ``..._TCI.jp2``) are left out. Lists (explicit stacks) and other files stay as given.
    """
    products: dict[tuple[Path, str], list[Path]] = {}
    order: list[tuple[Path, str] | Path | list[Path]] = []
    for item in items:
        if isinstance(item, (str, Path)) and Path(item).is_file() and band_name_from_filename(Path(item).stem):
            path = Path(item)
            key = (path.parent.resolve(), scene_name(path))
            if key not in products:
                products[key] = []
                order.append(key)
            products[key].append(path)
        else:
            order.append(Path(item) if isinstance(item, (str, Path)) else [Path(p) for p in item])
    scenes: list[Path | list[Path]] = []
    for entry in order:
        if isinstance(entry, tuple):
            files = products[entry]
            scenes.append(files if len(files) > 1 else files[0])
        elif isinstance(entry, Path) and is_not_band(entry.stem) and any(
                entry.parent.resolve() == folder and entry.stem.startswith(product) for folder, product in products):
            logger.info("%s: not a band of %s, left out", entry, entry.stem)
        else:
            scenes.append(entry)
    return scenes


def scene_name(label: Path) -> str:
    """Folder name (without ``.SAFE``), or for a list of band files the first file's stem without its
    band token: ``LC08_..._RT_B2`` -> ``LC08_..._RT``.
    """
    if label.is_dir():
        return label.name.removesuffix(".SAFE")
    if vsi := archive_kind(label):
        suffix = next(x for x, v in ARCHIVE_SUFFIXES.items() if v == vsi and label.name.lower().endswith(x))
        return label.name[: -len(suffix)].removesuffix(".SAFE")
    return without_band_token(label.stem)
