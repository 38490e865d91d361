"""Readouts of one checkpoint on the backbone harness's sets: how its patch tokens become one embedding.

    python benchmarks/readouts.py                                   # the packaged checkpoint
    python benchmarks/readouts.py --weights .cache/pretrain/v3/encoder.safetensors --sets eurosat_ms
    python benchmarks/readouts.py --full                            # the harness's full draws and folds

The harness (``benchmarks/harness.py``) compares candidates under each checkpoint's own readout; this
script picks that readout. From the same forward pass (fp32, chips zero-padded to the patch as the harness
pads them) it reads out, from the final-normed patch tokens ``(N, D)`` of each chip:

- ``token_mean``: their mean (``D``; the v2 checkpoint's readout);
- ``token_mean_std``: their mean and standard deviation (``2 D``; ``ofa_embed/model/pooling.py``);
- ``mean_norm``: the final norm of the mean of the un-normed tokens (``D``; DOFA's readout);
- ``mean+max``: their mean and element-wise maximum (``2 D``; not a library pooling: a bright outlier
  patch decides the maximum, compared here because the backbone issue measured it);
- ``layers 2,4,6 mean``: the mean of each of three blocks' normed tokens, concatenated (``3 D``);
- ``token_mean + band stats``: the mean and the chip's per-band mean and standard deviation of its
  normalised values, concatenated (``D + 2 C``): what a readout with explicit spectral statistics would
  give; ``band stats`` alone beside it.

Each is scored by the harness's own protocol (``score_regime``: the same draws and folds, linear probe and
kNN-5 on standardised features) and same-place retrieval (recall@1). The printed table is what the model
card's readout table holds.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.data.scene_sets import ChipSet, scene_sets  # noqa: E402
from benchmarks.harness import (  # noqa: E402
    FULL,
    MODEL,
    PRECISION,
    QUICK,
    REGIMES,
    band_stats,
    cell,
    regime_name,
    regime_splits,
    score_regime,
)
from benchmarks.quality import augmented_queries, recall_at_1  # noqa: E402
from ofa_embed.embedding.forward import model_input  # noqa: E402
from ofa_embed.embedding.pipeline import load_run_model  # noqa: E402
from ofa_embed.model.checkpoint import Backbone, load_checkpoint  # noqa: E402

LAYERS = (1, 3, 5)  # blocks 2, 4 and 6 of ofa_tiny, counted from 0


def forward_layers(model: Backbone, chip_set: ChipSet, chips: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The tokens after every block, each normed by the final norm, ``(N chips, blocks, tokens, D)``, and the
    final norm of the mean of the last block's un-normed tokens ``(N chips, D)`` (``mean_norm``); float32."""
    fed = model_input(model, chip_set.modality, chip_set.missing)
    patch = model.patch_size
    layers_out, mean_norm = [], []
    for start in range(0, len(chips), batch):
        x = torch.from_numpy(np.ascontiguousarray(chips[start : start + batch]))
        height, width = x.shape[2:]
        x = torch.nn.functional.pad(x, (0, -(-width // patch) * patch - width, 0, -(-height // patch) * patch - height))
        with torch.inference_mode():
            tokens = model.embed_tokens(fed.feed(x), fed.modality, bands=list(fed.bands))
            layers = []
            for block in model.blocks:
                tokens = block(tokens)
                layers.append(model.norm(tokens))
            layers_out.append(torch.stack(layers, 1).numpy())
            mean_norm.append(model.norm(tokens.mean(1)).numpy())
    return np.concatenate(layers_out), np.concatenate(mean_norm)


def readouts(model: Backbone, chip_set: ChipSet, chips: np.ndarray) -> dict[str, np.ndarray]:
    layers, mean_norm = forward_layers(model, chip_set, chips)
    final = layers[:, -1]
    mean, stats = final.mean(1), band_stats(chip_set, chips)
    return {
        "token_mean": mean,
        "token_mean_std": np.concatenate([mean, final.std(1)], 1),
        "mean_norm": mean_norm,
        "mean+max": np.concatenate([mean, final.max(1)], 1),
        "layers 2,4,6 mean": np.concatenate([layers[:, i].mean(1) for i in LAYERS if i < layers.shape[1]], 1),
        "token_mean + band stats": np.concatenate([mean, stats], 1),
        "band stats": stats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="checkpoint (default: the packaged one)")
    parser.add_argument("--sets", nargs="*", help="scene set names (default: all found)")
    parser.add_argument("--full", action="store_true", help="the harness's full draws and folds (default: --quick's)")
    args = parser.parse_args()
    threadpool_limits(limits=1, user_api="blas")
    warnings.simplefilter("ignore", UserWarning)
    started = time.perf_counter()
    command = "python " + " ".join(shlex.quote(a) for a in [f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    loaded = load_checkpoint(args.weights) if args.weights else load_run_model(None, MODEL, None, "cpu", PRECISION).loaded
    model = loaded.model.eval()
    settings = FULL if args.full else QUICK
    print(f"$ {command}\nweights {loaded.weights_hash} ({loaded.source}), {PRECISION}", flush=True)
    rows = []
    for chip_set in scene_sets(args.sets, on_skip=print):
        features = readouts(model, chip_set, chip_set.chips)
        for n in REGIMES:
            splits = regime_splits(chip_set, n, settings)
            if isinstance(splits, str):
                continue
            for name, matrix in features.items():
                scores = score_regime(matrix, chip_set, n, splits)
                rows.append(f"| {chip_set.name} | {regime_name(n)} | {name} | {matrix.shape[1]} | {cell(scores['probe'])} | "
                            f"{cell(scores['knn'])} |")
                print(rows[-1], flush=True)
        side = min(chip_set.chips.shape[2:])
        crop = (side * 3 // 4) // model.patch_size * model.patch_size
        if crop >= model.patch_size:
            queries = readouts(model, chip_set, augmented_queries(chip_set.chips, np.random.default_rng(1), crop))
            for name, matrix in features.items():
                rows.append(f"| {chip_set.name} | retrieval | {name} | {matrix.shape[1]} | recall@1 "
                            f"{cell(recall_at_1(matrix, queries[name]))} | |")
                print(rows[-1], flush=True)
    print(f"\n$ {command}\nweights {loaded.weights_hash}; {'full' if args.full else 'quick'} draws and folds; "
          f"wall time {(time.perf_counter() - started) / 60:.1f} min")
    print("| set | labels | readout | dims | linear probe | kNN-5 |\n|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
