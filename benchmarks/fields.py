"""Dense extraction against pooled, in the same process: tiles/s of each over the same scene and tiling, the
field's size per km² in each stored dtype, and what int8/float16 storage costs against float32 (cosine
similarity per pixel).

    python benchmarks/fields.py [SCENE] [--rounds 5]

What is measured, and how:

- The scene: SCENE, or by default a synthetic 13-band uint16 Sentinel-2 L1C GeoTIFF of ``--size`` (1536) px a
  side at 10 m (EPSG:32633, band descriptions B01..B12, a per-band level plus a smooth pattern and noise,
  seeded), written once into the temporary folder. The bundled 512 px sample is too small to say anything
  of throughput: its 25 tiles take 0.1 s, about the fixed cost of a run.
- Both modes tile alike (128 px every 96 px: the dense default), ofa_tiny, fp32 on this machine's CPU
  threads. One warm-up run (model loaded, caches warm), then ``--rounds`` rounds, each a pooled run then a
  dense run into fresh stores; a run's time is the whole ``extract`` call (opening, reading, forward passes,
  writing the GeoParquet file and, dense, the field's COG). Reported: each mode's best round, their ratio,
  and the median over rounds of each round's dense / pooled ratio (this shared VM drifts by tens of percent
  within a minute, so pairs of neighbouring runs compare better than bests do).
- Where a dense run's time beyond the pooled run's goes: the field's COG write timed alone on the field
  just made (``write_field``, float32).
- Storage: one dense run per ``--field-dtype``, each field read back with ``read_field`` against the float32
  field: file size per km² of scene and the cosine similarity of every pixel's vector to float32's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OFA_EMBED_CPU_BF16", "0")

import ofa_embed  # noqa: E402
from ofa_embed.field_files import field_path, read_field, read_field_array, write_field  # noqa: E402
from ofa_embed.sensors import get_modality  # noqa: E402


def synthetic_scene(path: Path, size: int, seed: int = 0) -> Path:
    """A ``size`` x ``size`` px 13-band Sentinel-2 L1C-like uint16 GeoTIFF at 10 m (a smooth pattern and noise)."""
    import rasterio
    from rasterio.transform import from_origin

    modality = get_modality("sentinel2_l1c")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    pattern = 300 * np.sin(xx / 17.0) * np.cos(yy / 23.0) + 800 * np.sin(xx / 301.0 + yy / 257.0)
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 13, "dtype": "uint16", "crs": "EPSG:32633",
               "transform": from_origin(500_000, 5_000_000, 10, 10), "tiled": True, "blockxsize": 256,
               "blockysize": 256}
    with rasterio.open(path, "w", **profile) as dst:
        for band in range(13):
            values = modality.mean[band] * 10_000 + pattern + rng.normal(0, 50, (size, size))
            dst.write(np.clip(values, 1, 20_000).astype(np.uint16), band + 1)
        dst.descriptions = tuple(modality.band_names)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scene", nargs="?", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=1536, help="side of the synthetic scene in px")
    args = parser.parse_args()
    common = {"precision": "fp32", "tile_size": 128, "stride": 96}  # the dense default tiling, for both modes
    rates: dict[str, list[float]] = {"pooled": [], "dense": []}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        scene = args.scene or synthetic_scene(root / "S2A_MSIL1C_20200518T101031_synthetic.tif", args.size)
        print(f"scene: {scene.name}; ofa_tiny fp32, 128 px tiles every 96 px, {os.cpu_count()} CPUs")
        ofa_embed.extract(scene, root / "warm", **common)  # model loaded and caches warm
        for r in range(args.rounds):
            for mode in ("pooled", "dense"):
                start = time.perf_counter()
                report = ofa_embed.extract(scene, root / f"{mode}{r}", dense=mode == "dense", **common)
                rates[mode].append(report.tiles / (time.perf_counter() - start))
            print(f"round {r + 1}: {report.tiles} tiles, pooled {rates['pooled'][-1]:.1f} tiles/s, "
                  f"dense {rates['dense'][-1]:.1f} tiles/s, ratio {rates['dense'][-1] / rates['pooled'][-1]:.3f}")
        best = {mode: max(values) for mode, values in rates.items()}
        paired = statistics.median(d / p for p, d in zip(rates["pooled"], rates["dense"], strict=True))
        print(f"tiles/s (best of {args.rounds}): pooled {best['pooled']:.1f}, dense {best['dense']:.1f}, ratio of "
              f"bests {best['dense'] / best['pooled']:.3f}; median of paired ratios {paired:.3f}")
        name = report.scenes[0].scene
        values, grid, record = read_field_array(field_path(root / "dense0", name))
        writes = []
        for i in range(5):
            start = time.perf_counter()
            write_field(root / f"write{i}.tif", values, grid, "float32", record)
            writes.append(time.perf_counter() - start)
        print(f"field COG write alone ({values.shape[0]} bands, {grid.width} x {grid.height} px, float32): "
              f"median {statistics.median(writes):.3f} s of 5")
        exact = read_field(root / "dense0", name)
        area_km2 = exact.sizes["x"] * exact.sizes["y"] * abs(exact.attrs["transform"][0]) ** 2 / 1e6
        rows = []
        for dtype in ("float32", "float16", "int8"):
            store = root / f"f-{dtype}"
            ofa_embed.extract(scene, store, dense=True, field_dtype=dtype, **common)
            got = read_field(store, name).values
            a, b = exact.values.reshape(exact.shape[0], -1), got.reshape(got.shape[0], -1)
            cos = (a * b).sum(0) / (np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0))
            rows.append((dtype, field_path(store, name).stat().st_size / area_km2 / 1024, np.nanmin(cos),
                         np.nanmean(cos)))
        print(f"field: {exact.shape[0]} bands, {exact.sizes['x']} x {exact.sizes['y']} px of "
              f"{abs(exact.attrs['transform'][0]):.0f} m, {area_km2:.1f} km²")
        print("| dtype | KiB per km² | min cosine to float32 | mean cosine |")
        print("|---|---|---|---|")
        for dtype, size, low, mean in rows:
            print(f"| {dtype} | {size:.1f} | {low:.6f} | {mean:.6f} |")


if __name__ == "__main__":
    main()
