"""Change on real floods: how well ``ofa_embed.change`` ranks the flooded tiles of the OMBRIA test pairs.

    python benchmarks/change_ombria.py [--data ../shared/data/ombria/OmbriaS2/test] [--boot 1000]

What is measured, and how:

- Data: the 70 OMBRIA test triplets (``BEFORE/S2_before_NNNN.png``, ``AFTER/S2_after_NNNN.png``,
  ``MASK/S2_mask_NNNN.png``; Sentinel-2 before / after a flood, flood mask from Copernicus EMS rapid mapping,
  flooded 255). The images are 256 x 256 **8-bit RGB display renderings, not reflectance**, with no
  georeferencing.
- Each image is wrapped in a 3-band uint8 GeoTIFF in a temporary folder on a dummy north-up grid: 10 m
  pixels, EPSG:32633 (UTM 33N), pair ``i`` with its top-left corner at (500000 + 5000 i, 5000000) so that
  pairs never overlap and each after tile matches exactly its own before tile. Read as the ``rgb``
  modality (values / 255, the registry's RGB statistics).
- One extraction of all 140 images, shipped default model (ofa_tiny), ``precision="fp32"``, 64 px tiles
  every 64 px (16 tiles per image) and ``dense=True`` (the field from the same forward passes: 16 x 16 px
  patches, 16 x 16 field pixels per image; with the stride set to the tile no tiles overlap, so field
  pixels at tile edges saw only their own tile). The same extraction with the library's seeded random
  initialisation of ofa_tiny (``random_init`` saved and given as ``weights``).
- Change: ``ofa_embed.change.change(store, before=<before scene>, after=<after scene>, out=...)`` per pair,
  the function the ``change`` CLI calls: the per-tile cosine distance, and the per-pixel cosine distance
  COG it writes beside the table.
- Truth: the flooded fraction of each tile (and of each 16 x 16 px field pixel) in the mask. Positives:
  fraction >= ``--positive`` (0.25). ROC AUC (sklearn ``roc_auc_score``) of the ranking by each score
  against the positives, and Spearman's rho of the score with the fraction, over all tiles of all pairs.
- Baseline ``band difference``: the mean absolute difference of the 8-bit RGB values, after minus before,
  over the tile's (or field pixel's) pixels.
- Intervals: 95 % percentile bootstrap over image pairs (``--boot`` resamples of the 70 pairs, seeded;
  a replicate without both classes is skipped).
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OFA_EMBED_CPU_BF16", "0")

import ofa_embed  # noqa: E402
from ofa_embed.change import change  # noqa: E402
from ofa_embed.model.checkpoint import random_init, save_checkpoint  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ombria" / "OmbriaS2" / "test"
TILE, PATCH, SIDE, PIXEL = 64, 16, 256, 10.0
ORIGIN_X, ORIGIN_Y, SPACING = 500_000.0, 5_000_000.0, 5_000.0
CRS = "EPSG:32633"


def read_png(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path))


def wrap(array: np.ndarray, path: Path, index: int) -> None:
    """``(H, W, 3)`` uint8 as a GeoTIFF on the dummy grid of pair ``index``."""
    import rasterio
    from rasterio.transform import from_origin

    transform = from_origin(ORIGIN_X + SPACING * index, ORIGIN_Y, PIXEL, PIXEL)
    with rasterio.open(path, "w", driver="GTiff", width=array.shape[1], height=array.shape[0], count=3,
                       dtype="uint8", crs=CRS, transform=transform) as dst:
        dst.write(array.transpose(2, 0, 1))
        dst.descriptions = ("red", "green", "blue")


def block_mean(values: np.ndarray, size: int) -> np.ndarray:
    """Mean over ``size`` x ``size`` blocks of an ``(H, W)`` array."""
    h, w = values.shape
    return values.reshape(h // size, size, w // size, size).mean(axis=(1, 3))


def tile_cells(tiles, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column (in tiles) of each tile row of pair ``index``, from its footprint."""
    centres = tiles.to_crs(CRS).geometry.centroid
    cols = ((centres.x.to_numpy() - ORIGIN_X - SPACING * index) // (TILE * PIXEL)).astype(int)
    rows = ((ORIGIN_Y - centres.y.to_numpy()) // (TILE * PIXEL)).astype(int)
    return rows, cols


def score(pairs: np.ndarray, fraction: np.ndarray, scores: np.ndarray, positive: float, boot: int,
          seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """ROC AUC and Spearman rho with 95 % bootstrap intervals over pairs."""
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    truth = fraction >= positive

    def both(take: np.ndarray) -> tuple[float, float]:
        t, s = truth[take], scores[take]
        if t.all() or not t.any():
            return float("nan"), float("nan")
        return roc_auc_score(t, s), spearmanr(s, fraction[take]).statistic

    auc, rho = both(np.arange(len(truth)))
    units = np.unique(pairs)
    members = {u: np.flatnonzero(pairs == u) for u in units}
    rng = np.random.default_rng(seed)
    reps = np.array([both(np.concatenate([members[u] for u in rng.choice(units, len(units))]))
                     for _ in range(boot)])
    reps = reps[np.isfinite(reps).all(axis=1)]
    lo, hi = np.percentile(reps, [2.5, 97.5], axis=0)
    return {"auc": (auc, lo[0], hi[0]), "rho": (rho, lo[1], hi[1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--positive", type=float, default=0.25, help="flooded fraction of a positive tile")
    parser.add_argument("--boot", type=int, default=1000)
    args = parser.parse_args()
    ids = sorted(re.search(r"_(\d+)$", p.stem).group(1) for p in (args.data / "MASK").glob("S2_mask_*.png"))
    print(f"OMBRIA test: {len(ids)} triplets from {args.data}; 8-bit RGB display renderings (not reflectance), "
          f"wrapped on a dummy {CRS} grid of {PIXEL:.0f} m pixels, read as the rgb modality")
    with tempfile.TemporaryDirectory(prefix="ombria-") as scratch:
        root = Path(scratch)
        images: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        files = []
        for i, n in enumerate(ids):
            before = read_png(args.data / "BEFORE" / f"S2_before_{n}.png")[..., :3]
            after = read_png(args.data / "AFTER" / f"S2_after_{n}.png")[..., :3]
            mask = read_png(args.data / "MASK" / f"S2_mask_{n}.png")
            mask = (mask[..., 0] if mask.ndim == 3 else mask) > 127
            assert before.shape == after.shape == (SIDE, SIDE, 3) and mask.shape == (SIDE, SIDE), n
            images[n] = (before, after, mask)
            for name, array in (("before", before), ("after", after)):
                wrap(array, root / f"{name}_{n}.tif", i)
                files.append(root / f"{name}_{n}.tif")
        random_weights = root / "random_init.safetensors"
        random_hash = save_checkpoint(random_init("ofa_tiny").model, random_weights)
        common = {"modality": "rgb", "tile_size": TILE, "stride": TILE, "precision": "fp32", "dense": True}
        stores = {"checkpoint": root / "ckpt", "random init": root / "random"}
        for label, store in stores.items():
            start = time.perf_counter()
            report = ofa_embed.extract(files, store, weights=random_weights if label == "random init" else None,
                                       **common)
            print(f"{label}: weights {report.weights_hash}, {sum(s.tiles for s in report.scenes)} tiles of "
                  f"{TILE} px in {time.perf_counter() - start:.1f} s (fp32, dense, {os.cpu_count()} CPUs)")
        assert random_hash
        tile_rows: dict[str, list[np.ndarray]] = {"pair": [], "fraction": [], "band difference": []}
        pixel_rows: dict[str, list[np.ndarray]] = {"pair": [], "fraction": [], "band difference": []}
        for label in stores:
            tile_rows[label], pixel_rows[label] = [], []
        import rasterio

        for i, n in enumerate(ids):
            before, after, mask = images[n]
            diff = np.abs(after.astype(np.float64) - before.astype(np.float64)).mean(axis=2)
            tile_frac, tile_diff = block_mean(mask.astype(float), TILE), block_mean(diff, TILE)
            for label, store in stores.items():
                report = change(store, f"before_{n}", f"after_{n}", out=root / f"change-{label}-{n}.parquet")
                rows, cols = tile_cells(report.tiles, i)
                assert len(report.tiles) == (SIDE // TILE) ** 2 and not report.tiles["partial"].any()
                if label == "checkpoint":
                    tile_rows["pair"].append(np.full(len(rows), i))
                    tile_rows["fraction"].append(tile_frac[rows, cols])
                    tile_rows["band difference"].append(tile_diff[rows, cols])
                tile_rows[label].append(report.tiles["cosine_distance"].to_numpy(np.float64))
                (_, _, cog, _), = report.fields
                with rasterio.open(cog) as src:
                    pixel_rows[label].append(src.read(1).astype(np.float64).ravel())
            pixel_rows["pair"].append(np.full((SIDE // PATCH) ** 2, i))
            pixel_rows["fraction"].append(block_mean(mask.astype(float), PATCH).ravel())
            pixel_rows["band difference"].append(block_mean(diff, PATCH).ravel())
        for level, table in (("tile (64 px = 640 m, 16 per image)", tile_rows),
                             ("field pixel (16 px = 160 m, 256 per image)", pixel_rows)):
            merged = {k: np.concatenate(v) for k, v in table.items()}
            truth = merged["fraction"] >= args.positive
            print(f"\n{level}: {len(truth)} units, {truth.sum()} positive (flooded fraction >= {args.positive}), "
                  f"mean flooded fraction {merged['fraction'].mean():.3f}; {args.boot} bootstrap resamples of "
                  f"{len(ids)} pairs")
            print("| ranking by | ROC AUC [95 % CI] | Spearman rho with flooded fraction [95 % CI] |")
            print("|---|---|---|")
            for label in ("checkpoint", "random init", "band difference"):
                finite = np.isfinite(merged[label])
                got = score(merged["pair"][finite], merged["fraction"][finite], merged[label][finite],
                            args.positive, args.boot)
                name = {"checkpoint": "`change` cosine distance, shipped checkpoint",
                        "random init": f"`change` cosine distance, random init ({random_hash})",
                        "band difference": "mean abs RGB difference"}[label]
                auc, rho = got["auc"], got["rho"]
                print(f"| {name} | {auc[0]:.3f} [{auc[1]:.3f}, {auc[2]:.3f}] | "
                      f"{rho[0]:.3f} [{rho[1]:.3f}, {rho[2]:.3f}] |")


if __name__ == "__main__":
    main()
