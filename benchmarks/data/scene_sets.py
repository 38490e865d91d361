"""Scene-level labelled chip sets for the backbone harness (``benchmarks/harness.py``), read the way a
user's chips are read and normalised exactly as ``extract`` normalises them.

    python benchmarks/data/scene_sets.py [NAME ...]   # build the sets and print their sizes and groups

Each :class:`ChipSet` holds ``(N, C, H, W)`` float32 chips in the modality's canonical band order,
normalised (``(physical - mean) / std`` with the registry's statistics), the bands the source lacks
listed in ``missing`` (0 in the stack; the model is fed the present bands only), one label per chip and
``groups``: the unit a split keeps whole. ``../shared/data`` (``$OFA_EMBED_SHARED_DATA`` overrides) is
read in place, never copied into the repository; a set whose folder is missing is skipped with a printed
reason. Nothing is cached: the three sets read in seconds.

- ``eurosat_ms``: 199 EuroSAT-MS chips (``geotorchai/eurosat_ms/<class>/*.tif``), 10 classes, 64 px at
  10 m, Sentinel-2 L1C, read one by one through the library's scene reader (``open_scene``), which detects
  EuroSAT's band order (B8A last) and says so; ``eurosat_order`` records that line. Places are held out
  spatially: groups are 10 km blocks of the chip centres in each chip's own UTM zone (:data:`EUROSAT_BLOCK_M`).
- ``aid``: AID aerial scenes (``aid/<class>/*.jpg``), 30 classes x 40, 150 px 8-bit RGB without
  georeferencing. The library's scene reader refuses files without georeferencing
  (``NoGeoreferenceError``), so they take the library's array path: decoded with Pillow, ``value / 255``
  (the ``rgb`` modality's scale), normalised with the ``rgb`` statistics (:func:`_normalise`); the first
  image is checked against the same image wrapped in a GeoTIFF with a dummy grid and read by
  ``open_scene`` (identical values). There are no places to hold out: groups are single images (a split by image).
- ``enmap_potsdam``: the 18 EnMAP tiles of Potsdam (``enmap-box/specdeepmap/images``, 32 x 32 px at 30 m,
  224 bands 418-2445 nm with the wavelength in each band's metadata) and their label tiles. Six bands
  (1331-1391 nm, water vapour absorption) are nodata (-32768) on every pixel: ``open_scene``'s
  hyperspectral path leaves them out and says so, and resamples the others onto the modality's 32
  wavelengths. Every tile is cut
  into four 16 px chips (one model patch each); a chip's label is the dominant class among its labelled
  pixels (0 = unlabelled), kept where at least :data:`ENMAP_MIN_LABELLED` of the chip is labelled;
  classes with fewer than :data:`MIN_CLASS_CHIPS` chips are dropped. The source names no classes: they
  are ``class 1`` .. ``class 6``. Groups = the 32 px tile a chip comes from (960 m; neighbouring tiles
  touch at their edges).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.data.few_label import spatial_blocks  # noqa: E402
from ofa_embed.raster.opening import open_scene  # noqa: E402
from ofa_embed.sensors.registry import Modality, get_modality  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("OFA_EMBED_SHARED_DATA", REPO.parent / "shared" / "data"))
EUROSAT_BLOCK_M = 10_000.0
ENMAP_CHIP = 16
ENMAP_MIN_LABELLED = 0.25
MIN_CLASS_CHIPS = 5


@dataclass
class ChipSet:
    """One labelled chip set.

    Attributes:
        name: short id; ``description``: source, licence, radiometry, how labels and groups are made.
        modality: registered modality name; ``missing``: canonical bands absent from the source.
        chips: ``(N, C, H, W)`` float32, normalised, canonical band order (missing bands 0).
        labels: ``(N,)`` class names; ``groups``: ``(N,)`` int, the unit a split keeps whole.
        split: how the groups hold places out, in words.
        notes: lines the harness prints under the set (band order detected, workarounds).
    """

    name: str
    description: str
    modality: str
    missing: tuple[str, ...]
    chips: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    split: str
    notes: list[str] = field(default_factory=list)


class Unavailable(Exception):
    """A set's folder is not on this machine."""


def _shared(relative: str) -> Path:
    path = SHARED / relative
    if not path.exists():
        raise Unavailable(f"{path} not found (../shared/data is not on this machine)")
    return path


def _normalise(values: np.ndarray, modality: Modality) -> np.ndarray:
    """``(C, H, W)`` file values of all of ``modality``'s bands -> normalised (the registry's affine)."""
    gain, bias = modality.normalising_affine()
    return (values.astype(np.float32) * gain[:, None, None] + bias[:, None, None]).astype(np.float32)


def _read_whole(path: Path, **keywords: object) -> tuple[np.ndarray, np.ndarray, object]:
    """Normalised data, valid mask and the opened scene's facts (modality, missing, assumed, grid)."""
    with open_scene(path, **keywords) as scene:  # type: ignore[arg-type]
        data, valid = scene.read(Window(0, 0, scene.width, scene.height))
        facts = (scene.modality.name, tuple(scene.missing_bands), list(scene.assumed), scene.transform, scene.crs,
                 scene.width, scene.height)
        return data.copy(), valid.copy(), facts


def _drop_rare(chips: np.ndarray, labels: np.ndarray, groups: np.ndarray, notes: list[str]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    names, counts = np.unique(labels, return_counts=True)
    if rare := [f"{n} ({c})" for n, c in zip(names, counts, strict=True) if c < MIN_CLASS_CHIPS]:
        notes.append(f"dropped classes with fewer than {MIN_CLASS_CHIPS} chips: {', '.join(rare)}")
    keep = np.isin(labels, names[counts >= MIN_CLASS_CHIPS])
    return chips[keep], labels[keep], np.unique(groups[keep], return_inverse=True)[1]


# --- the sets --------------------------------------------------------------------------------------------
def eurosat_ms() -> ChipSet:
    root = _shared("geotorchai/eurosat_ms")
    files = sorted(root.glob("*/*.tif"))
    chips, labels, xs, ys, crs, orders = [], [], [], [], [], set()
    modality = missing = None
    for path in files:
        data, valid, facts = _read_whole(path)
        name, missing_bands, assumed, transform, scene_crs, width, height = facts  # type: ignore[misc]
        if modality is None:
            modality, missing = name, missing_bands
        elif (name, missing_bands) != (modality, missing):
            raise ValueError(f"{path}: read as {name} missing {missing_bands}, the others as {modality} missing {missing}")
        if not valid.all():
            raise ValueError(f"{path}: {int((~valid).sum())} invalid pixels")
        orders.update(line.split(" order")[0].split("read in ")[-1] for line in assumed if "order" in line)
        centre = transform * (width / 2, height / 2)
        chips.append(data)
        labels.append(path.parent.name)
        xs.append(centre[0])
        ys.append(centre[1])
        crs.append(scene_crs.to_string())
    groups = spatial_blocks(np.array(xs), np.array(ys), crs, EUROSAT_BLOCK_M)
    notes = [f"band order detected by the library's reader: {', '.join(sorted(orders)) or 'none stated'} "
             f"(all {len(files)} chips)",
             f"{len(np.unique(groups))} blocks of {EUROSAT_BLOCK_M / 1000:.0f} km over {len(set(crs))} UTM zones; "
             f"largest block {np.bincount(groups).max()} chips"]
    return ChipSet(
        "eurosat_ms",
        "EuroSAT-MS (Helber et al. 2019; MIT) via wherobots/GeoTorchAI @d2a6c39 data/eurosat: 64 px chips at 10 m, "
        "Sentinel-2 L1C 13 bands, DN / 10000 TOA reflectance, read by open_scene (EuroSAT order detected); "
        "class = folder",
        str(modality), tuple(missing or ()), np.stack(chips), np.array(labels), groups,
        f"spatial: {EUROSAT_BLOCK_M / 1000:.0f} km blocks of chip centres, a block never on both sides", notes)


def _aid_values(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).transpose(2, 0, 1)


def _check_aid_against_reader(values: np.ndarray, normalised: np.ndarray, modality: Modality) -> str:
    """The array path against the scene reader on the same pixels wrapped in a GeoTIFF with a dummy grid."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "aid_check.tif"
        profile = {"driver": "GTiff", "width": values.shape[2], "height": values.shape[1], "count": 3,
                   "dtype": "uint8", "crs": "EPSG:32633", "transform": rasterio.Affine(1, 0, 500000, 0, -1, 5800000)}
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(values)
            dst.descriptions = ("red", "green", "blue")
        read, _, facts = _read_whole(path, modality=modality.name)
    difference = float(np.abs(read - normalised).max())
    if difference > 1e-5:
        raise ValueError(f"AID array path differs from open_scene by {difference}")
    return f"array path = open_scene on a dummy-grid GeoTIFF of the first image (max difference {difference:.1e})"


def aid() -> ChipSet:
    root = _shared("aid")
    modality = get_modality("rgb")
    files = sorted(root.glob("*/*.jpg"))
    values = [_aid_values(path) for path in files]
    shapes = {v.shape for v in values}
    if len(shapes) != 1:
        raise ValueError(f"AID images of several sizes: {sorted(shapes)}")
    chips = np.stack([_normalise(v, modality) for v in values])
    notes = ["no georeferencing: the library's scene reader refuses the JPEGs (NoGeoreferenceError); read by the "
             "array path (Pillow, value / 255, rgb statistics)", _check_aid_against_reader(values[0], chips[0], modality)]
    return ChipSet(
        "aid",
        "AID (Xia et al. 2017; research use) via zlima/testtensor @f6a0f74 AID/: the first 40 images of each of 30 "
        "classes, Google Earth RGB resized to 150 x 150, 8-bit, value / 255 (rgb modality); class = folder",
        modality.name, (), chips, np.array([p.parent.name for p in files]), np.arange(len(files)),
        "by image: no georeferencing, so no places to hold out", notes)


def enmap_potsdam() -> ChipSet:
    root = _shared("enmap-box/specdeepmap")
    tiles = sorted((root / "images").glob("*.tif"))
    chips, labels, groups = [], [], []
    dropped: set[str] = set()
    modality = missing = None
    for number, path in enumerate(tiles):
        # the library leaves out bands that hold no valid value (the water-vapour bands) and says so
        data, valid, facts = _read_whole(path)
        modality, missing = facts[0], facts[1]  # type: ignore[index]
        dropped.update(line.split(": ", 1)[1] for line in facts[2] if "hold no valid pixel" in line)  # type: ignore[index]
        with rasterio.open(root / "labels" / path.name) as src:
            classes = src.read(1).astype(np.int64)
        for top in range(0, data.shape[1], ENMAP_CHIP):
            for left in range(0, data.shape[2], ENMAP_CHIP):
                window = np.s_[top : top + ENMAP_CHIP, left : left + ENMAP_CHIP]
                counts = np.bincount(classes[window].ravel(), minlength=7)
                counts[0] = 0
                if not valid[window].all() or counts.sum() < ENMAP_MIN_LABELLED * ENMAP_CHIP**2:
                    continue
                chips.append(data[(slice(None), *window)])
                labels.append(f"class {int(counts.argmax())}")
                groups.append(number)
    notes = [f"open_scene said: {'; '.join(sorted(dropped))}",
             f"read by open_scene as {modality} (resampled by wavelength onto its bands)"]
    chip_array, label_array, group_array = _drop_rare(np.stack(chips), np.array(labels), np.array(groups), notes)
    return ChipSet(
        "enmap_potsdam",
        "EnMAP-Box test data (GPL-3) specdeepmap @f9e8f48: 18 EnMAP tiles of Potsdam, 32 x 32 px at 30 m, 224 bands "
        "(reflectance x 10000), 2022-07-24; 16 px chips (four per tile), label = dominant labelled class of the chip "
        f"(>= {ENMAP_MIN_LABELLED:.0%} labelled)",
        str(modality), tuple(missing or ()), chip_array, label_array, group_array,
        "spatial: by source tile (960 m), a tile never on both sides", notes)


BUILDERS: dict[str, Callable[[], ChipSet]] = {"eurosat_ms": eurosat_ms, "aid": aid, "enmap_potsdam": enmap_potsdam}


def scene_sets(names: Sequence[str] | None = None, on_skip: Callable[[str], None] = print) -> list[ChipSet]:
    """The sets of :data:`BUILDERS` (all when ``names`` is None) whose folders are on this machine."""
    if unknown := [n for n in names or () if n not in BUILDERS]:
        raise ValueError(f"unknown set {unknown[0]!r}; choose from {', '.join(BUILDERS)}")
    out = []
    for name in names or BUILDERS:
        try:
            out.append(BUILDERS[name]())
        except Unavailable as exc:
            on_skip(f"{name}: skipped, {exc}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(BUILDERS)} (default: all)")
    args = parser.parse_args()
    for chip_set in scene_sets(args.names or None):
        names, counts = np.unique(chip_set.labels, return_counts=True)
        print(f"\n{chip_set.name}: {len(chip_set.labels)} chips {chip_set.chips.shape[1:]}, {chip_set.modality}, "
              f"{len(np.unique(chip_set.groups))} groups ({chip_set.split})")
        print("  classes: " + ", ".join(f"{n} {c}" for n, c in zip(names, counts, strict=True)))
        for note in chip_set.notes:
            print(f"  {note}")


if __name__ == "__main__":
    main()
