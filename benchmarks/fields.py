"""Dense extraction against pooled, in the same process: tiles/s of each over the same scene and tiling, the
field's size per km² in each stored dtype, and what int8/float16 storage costs against float32 (cosine
similarity per pixel).

    python benchmarks/fields.py [SCENE] [--rounds 2]    # default: the bundled Sentinel-2 sample, ofa_tiny, fp32

Rounds alternate pooled and dense on the same warm model; each mode's best round is reported.
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
from ofa_embed.field_files import read_field  # noqa: E402
from ofa_embed.sample import sample_scene  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scene", nargs="?", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    scene = args.scene or sample_scene()
    common = {"precision": "fp32", "tile_size": 128, "stride": 96}  # the dense default tiling, for both modes
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        ofa_embed.extract(scene, root / "warm", **common)  # model loaded and caches warm
        for r in range(args.rounds):
            for mode in ("pooled", "dense"):
                start = time.perf_counter()
                report = ofa_embed.extract(scene, root / f"{mode}{r}", dense=mode == "dense", **common)
                rate = report.tiles / (time.perf_counter() - start)
                best[mode] = max(best.get(mode, 0.0), rate)
        print(f"tiles/s (best of {args.rounds}): pooled {best['pooled']:.1f}, dense {best['dense']:.1f}, "
              f"ratio {best['dense'] / best['pooled']:.2f}")
        exact = read_field(root / "dense0", report.scenes[0].scene)
        area_km2 = exact.sizes["x"] * exact.sizes["y"] * abs(exact.attrs["transform"][0]) ** 2 / 1e6
        rows = []
        for dtype in ("float32", "float16", "int8"):
            store = root / f"f-{dtype}"
            ofa_embed.extract(scene, store, dense=True, field_dtype=dtype, **common)
            path = store / "fields" / f"{report.scenes[0].scene}.tif"
            got = read_field(store, report.scenes[0].scene).values
            a, b = exact.values.reshape(exact.shape[0], -1), got.reshape(got.shape[0], -1)
            cos = (a * b).sum(0) / (np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0))
            rows.append((dtype, path.stat().st_size / area_km2 / 1024, np.nanmin(cos), np.nanmean(cos)))
        print(f"field: {exact.shape[0]} bands, {exact.sizes['x']} x {exact.sizes['y']} px of "
              f"{abs(exact.attrs['transform'][0]):.0f} m, {area_km2:.1f} km²")
        print("| dtype | KiB per km² | min cosine to float32 | mean cosine |")
        print("|---|---|---|---|")
        for dtype, size, low, mean in rows:
            print(f"| {dtype} | {size:.1f} | {low:.6f} | {mean:.6f} |")


if __name__ == "__main__":
    main()
