"""Segmentation on a real labelled raster: the library's dense segmentation probe on embedding fields of the
open-geo-tutorial Sentinel-2 crop, beside the same probe on band values and on RCF features at the same grid.

    python benchmarks/segmentation_real.py [--upsample 16] [--block-m 500] [--boot 1000]

What is measured, and how:

- Data (``../shared/data/open-geo-tutorial/data``): ``sentinel-2/2018-10-13, Sentinel-2B L1C, B01..B08.tiff``,
  8 single-band uint8 files on one 2629 x 2201 px grid in EPSG:4326 (about 8.2 m per pixel at 34.6° N),
  an **8-bit display stretch, not reflectance**; labels ``rcr/rcr_landcover.shp``: 23 polygons of 6 classes
  (``Classname``), EPSG:32618, 128 to 9,884 m² each (about 40,000 m² in all: some 600 of the raster's pixels).
- Bands are stacked into one 8-band GeoTIFF and extracted with ``wavelengths`` = the Sentinel-2 B01-B08 centres
  (0.443 ... 0.842 µm): a sensor given by wavelengths, its values used as the file holds them and normalised by
  the mean/std of a sample of its own pixels (the library's rule for such sensors), not by Sentinel-2 L1C's
  reflectance statistics. Shipped default model (ofa_tiny), ``precision="fp32"``, ``dense=True``, 128 px tiles
  at the dense default stride (96 px).
- At the raster's own resolution a field pixel is a 16 x 16 px patch (about 130 m a side, 17,000 m²): larger
  than every polygon, so almost no field pixel has its centre in one. The script extracts the whole scene so and
  counts the labelled field pixels (``native`` line), then, for the table, makes what the data allows:
  windows around the polygons (each polygon's box padded by ``--pad`` px, overlapping boxes merged, edges
  rounded out to 16 px), each upsampled ``--upsample`` times by pixel repetition (nearest neighbour) into its
  own scene on a grid ``--upsample`` times finer, so that a field pixel covers 16 / ``--upsample`` raster
  pixels (one raster pixel at 16). The model then sees each raster pixel as a flat block; a tile's context is
  128 / ``--upsample`` raster pixels.
- Probe: ``ofa_embed.downstream.segmentation.segment`` (the ``probe --dense`` path): labels rasterised onto each
  field (pixel centres), a linear probe per pixel, spatial blocks of ``--block-m`` metres in 5 folds,
  per-class IoU, mIoU and pixel accuracy with 95 % block-bootstrap intervals (``--boot`` replicates, seed 0).
- Baselines, on exactly the same field grids, written as float32 fields with ``write_field`` into their own
  stores and run through the same ``segment`` call (same labels, blocks, folds, seed):
  ``band values``: the 8 bands, each standardised by its mean/std over the windows' pixels, averaged over
  each field pixel's raster pixels; ``RCF``: random convolutional features (Rolf et al. 2021, Gaussian mode):
  96 random 3 x 3 filters over the standardised bands (weights N(0, 1), torch seed 0), bias -1, both signs
  ``[relu(conv - 1), relu(-conv - 1)]`` per raster pixel (zero padding), averaged over each field pixel: 192
  features, the embedding's width.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OFA_EMBED_CPU_BF16", "0")

import ofa_embed  # noqa: E402
from ofa_embed.downstream.segmentation import segment  # noqa: E402
from ofa_embed.errors import OFAEmbedError  # noqa: E402
from ofa_embed.field_files import field_path, list_fields, read_field_array, write_field  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "open-geo-tutorial" / "data"
WAVELENGTHS = [0.443, 0.490, 0.560, 0.665, 0.705, 0.740, 0.783, 0.842]  # Sentinel-2 B01..B08 centres, µm
PATCH, TARGET = 16, "Classname"


def read_bands(folder: Path):
    import rasterio

    files = sorted(folder.glob("*B0[1-8].tiff"))
    assert len(files) == 8, files
    arrays = []
    for f in files:
        with rasterio.open(f) as src:
            arrays.append(src.read(1))
            transform, crs = src.transform, src.crs
    return np.stack(arrays), transform, crs


def write_scene(path: Path, values: np.ndarray, transform, crs) -> None:
    import rasterio

    with rasterio.open(path, "w", driver="GTiff", width=values.shape[2], height=values.shape[1], count=len(values),
                       dtype=values.dtype, crs=crs, transform=transform, tiled=True, blockxsize=256,
                       blockysize=256) as dst:
        dst.write(values)
        dst.descriptions = tuple(f"B0{i + 1}" for i in range(len(values)))


def windows(labels, transform, crs, shape: tuple[int, int], pad: int) -> list[tuple[int, int, int, int]]:
    """``(row0, col0, row1, col1)`` raster windows around the polygons: padded, merged, rounded out to 16 px."""
    from rasterio.transform import rowcol

    boxes = []
    for geom in labels.to_crs(crs).geometry:
        x0, y0, x1, y1 = geom.bounds
        (r0, r1), (c0, c1) = rowcol(transform, [x0, x1], [y1, y0])
        boxes.append([r0 - pad, c0 - pad, r1 + pad + 1, c1 + pad + 1])
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    out = []
    for r0, c0, r1, c1 in boxes:
        r0, c0 = max(0, r0 // PATCH * PATCH), max(0, c0 // PATCH * PATCH)
        r1, c1 = min(shape[0], -(-r1 // PATCH) * PATCH), min(shape[1], -(-c1 // PATCH) * PATCH)
        out.append((r0, c0, r1, c1))
    return sorted(out)


def block_mean(values: np.ndarray, size: int, shape: tuple[int, int]) -> np.ndarray:
    """``(D, H, W)`` averaged over ``size`` x ``size`` blocks, padded with NaN to the field's ``shape``."""
    d, h, w = values.shape
    out = np.full((d, *shape), np.nan, np.float32)
    hh, ww = h // size, w // size
    out[:, :hh, :ww] = values[:, : hh * size, : ww * size].reshape(d, hh, size, ww, size).mean(axis=(2, 4))
    return out


def rcf(values: np.ndarray, filters: int, seed: int = 0) -> np.ndarray:
    """``(2 filters, H, W)`` per-pixel random 3 x 3 convolution features of ``(B, H, W)`` standardised bands."""
    import torch
    import torch.nn.functional as F

    weight = torch.randn(filters, values.shape[0], 3, 3, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        response = F.conv2d(torch.from_numpy(values[None].astype(np.float32)), weight, padding=1)[0]
        return torch.cat([F.relu(response - 1.0), F.relu(-response - 1.0)]).numpy()


def row(name: str, report) -> str:
    iou = " | ".join(f"{report.iou[c].value:.2f}" if c in report.iou else "-" for c in report.classes)
    m, a = report.miou, report.accuracy
    return (f"| {name} | {m.value:.3f} [{m.low:.3f}, {m.high:.3f}] | {a.value:.3f} [{a.low:.3f}, {a.high:.3f}] | "
            f"{iou} |")


def main() -> None:
    import geopandas as gpd
    from affine import Affine

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--upsample", type=int, default=16, choices=(1, 2, 4, 8, 16))
    parser.add_argument("--pad", type=int, default=16, help="raster px around each polygon's box")
    parser.add_argument("--block-m", type=float, default=500.0)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--boot", type=int, default=1000)
    args = parser.parse_args()
    bands, transform, crs = read_bands(args.data / "sentinel-2")
    labels_path = args.data / "rcr" / "rcr_landcover.shp"
    labels = gpd.read_file(labels_path)
    print(f"scene: 8 bands B01-B08, {bands.shape[2]} x {bands.shape[1]} px, {crs.to_string()}, uint8 display "
          f"stretch; labels: {len(labels)} polygons, {labels[TARGET].nunique()} classes, "
          f"{labels.to_crs(labels.estimate_utm_crs()).area.sum():.0f} m²")
    common = {"wavelengths": WAVELENGTHS, "precision": "fp32", "dense": True, "tile_size": 128}
    with tempfile.TemporaryDirectory(prefix="seg-real-") as scratch:
        root = Path(scratch)
        # 1. the raster as it is: how many field pixels do the polygons label?
        write_scene(root / "native.tif", bands, transform, crs)
        start = time.perf_counter()
        ofa_embed.extract(root / "native.tif", root / "native", **common)
        values, grid, _ = read_field_array(list_fields(root / "native")["native"])
        from rasterio.features import rasterize

        hit = rasterize([(g, 1) for g in labels.to_crs(grid.crs).geometry], out_shape=(grid.height, grid.width),
                        transform=grid.transform, fill=0, dtype="uint8")
        print(f"native: field {grid.width} x {grid.height} px of 16 raster px, extracted in "
              f"{time.perf_counter() - start:.1f} s; field pixels whose centre lies in a polygon: {int(hit.sum())}")
        try:
            report = segment(root / "native", labels_path, TARGET, block_size_m=args.block_m, folds=args.folds,
                             n_boot=args.boot)
            print(f"native probe: mIoU {report.miou.value:.3f} on {report.pixels} pixels ({report.split})")
        except (OFAEmbedError, ValueError) as exc:  # ValueError: the library lets sklearn's through (too few pixels)
            print(f"native probe cannot run: {type(exc).__name__}: {exc}")
        # 2. windows around the polygons, upsampled
        boxes = windows(labels, transform, crs, bands.shape[1:], args.pad)
        up, per = args.upsample, PATCH // args.upsample
        stack = np.concatenate([bands[:, r0:r1, c0:c1].reshape(8, -1) for r0, c0, r1, c1 in boxes], axis=1)
        mean, std = stack.mean(axis=1), stack.std(axis=1)
        scenes = []
        for k, (r0, c0, r1, c1) in enumerate(boxes):
            crop = bands[:, r0:r1, c0:c1]
            window_transform = transform * Affine.translation(c0, r0) * Affine.scale(1 / up)
            write_scene(root / f"rcr_{k:02d}.tif", crop.repeat(up, axis=1).repeat(up, axis=2), window_transform, crs)
            scenes.append(root / f"rcr_{k:02d}.tif")
        pixels = sum((r1 - r0) * (c1 - c0) for r0, c0, r1, c1 in boxes)
        start = time.perf_counter()
        report = ofa_embed.extract(scenes, root / "emb", **common)
        print(f"windows: {len(boxes)} (pad {args.pad} px, {pixels} raster px), each upsampled x{up}: field pixel = "
              f"{per} x {per} raster px; {sum(s.tiles for s in report.scenes)} tiles of 128 px extracted in "
              f"{time.perf_counter() - start:.1f} s, weights {report.weights_hash}")
        for k, (r0, c0, r1, c1) in enumerate(boxes):
            name = f"rcr_{k:02d}"
            values, grid, record = read_field_array(field_path(root / "emb", name))
            normed = (bands[:, r0:r1, c0:c1].astype(np.float32) - mean[:, None, None]) / std[:, None, None]
            for store, features in (("bands", normed), ("rcf", rcf(normed, values.shape[0] // 2))):
                field = block_mean(features, per, (grid.height, grid.width))
                field[:, np.isnan(values).any(axis=0)] = np.nan
                write_field(field_path(root / store, name), field, grid, "float32",
                            {**record, "dimension": field.shape[0], "model": {"baseline": store}})
        results = []
        for label, store in (("ofa_tiny field (shipped checkpoint)", "emb"), ("band values (8)", "bands"),
                             ("RCF (192)", "rcf")):
            start = time.perf_counter()
            report = segment(root / store, labels_path, TARGET, block_size_m=args.block_m, folds=args.folds,
                             n_boot=args.boot)
            results.append((label, report))
            print(f"{label}: {report.pixels} labelled pixels, {report.split}, {time.perf_counter() - start:.1f} s")
        report = results[0][1]
        counts = report.confusion.sum(axis=1)
        print(f"\nclasses (labelled pixels): {', '.join(f'{c} ({n})' for c, n in zip(report.classes, counts, strict=True))}")
        print(f"| features | mIoU [95 % CI] | pixel accuracy [95 % CI] | {' | '.join(map(str, report.classes))} |")
        print("|---|---|---|" + "---|" * len(report.classes))
        for label, rep in results:
            print(row(label, rep))


if __name__ == "__main__":
    main()
