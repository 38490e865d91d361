"""What a backbone costs on this machine: forward tiles/s and GFLOP per tile, ofa_tiny beside DOFA.

    python benchmarks/backbone_cost.py [--rounds 3] [--seconds 2] [--models ofa_tiny,dofa_base,dofa_large] [--json]

For each model: the tile edge it is used at (ofa_tiny: 128 px, its Sentinel-2 default; DOFA: 224 px, what
it was trained on), Sentinel-2 9-band input (the bands both were trained with), batches of 16 random
normal tiles already in memory, ``embed`` (the one forward pass: inference mode, the precision policy of
``--precision``, float32 embeddings out) after one warm-up batch. ``--rounds`` rounds alternate the
models, because this machine's speed drifts within a minute; in a round each model runs whole batches
for at least ``--seconds`` (at least one batch: DOFA-Large takes ~25 s for one here); the figure is
the median over rounds of tiles/s. FLOPs are torch's ``FlopCounterMode`` count
of one forward (matrix multiplies and convolutions, 2 FLOP per multiply-add). Weights do not change
the cost, so every model is a seeded random init: no download is needed to reproduce the table. The
per-tile cost is also given per km² at the model's own tile size and 10 m pixels, the unit a user
plans a run in.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ofa_embed.embedding.forward import embed, model_input, resolve_precision
from ofa_embed.model.checkpoint import random_init
from ofa_embed.model.config import CONFIGS
from ofa_embed.model.dofa import published_config

MODALITY = "sentinel2_9band"
BATCH = 16
TILE = {"ofa": 128, "dofa": 224}


def _model(name: str):
    config = CONFIGS[name] if name in CONFIGS else published_config(name)
    return random_init(config).model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each times every model once")
    parser.add_argument("--seconds", type=float, default=2.0, help="least timed seconds per model and round")
    parser.add_argument("--models", default="ofa_tiny,dofa_base,dofa_large")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    device = torch.device("cpu")
    precision = resolve_precision(args.precision, device)
    rows = {}
    for name in args.models.split(","):
        model = _model(name)
        tile = TILE["dofa" if name.startswith("dofa") else "ofa"]
        fed = model_input(model, MODALITY)
        images = np.random.default_rng(0).standard_normal((BATCH, len(fed.bands), tile, tile)).astype(np.float32)
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model(torch.from_numpy(images[:1]), MODALITY, bands=list(fed.bands))
        embed(model, images, fed, device, precision=precision)  # warm-up
        rows[name] = {"model": model, "images": images, "fed": fed, "tile": tile, "rates": [],
                      "gflop": counter.get_total_flops() / 1e9,
                      "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
    for _ in range(args.rounds):
        for row in rows.values():
            start, tiles = time.perf_counter(), 0
            while not tiles or time.perf_counter() - start < args.seconds:
                embed(row["model"], row["images"], row["fed"], device, precision=precision)
                tiles += BATCH
            row["rates"].append(tiles / (time.perf_counter() - start))
    results = []
    for name, row in rows.items():
        rate = statistics.median(row["rates"])
        km2 = (row["tile"] * 10 / 1000) ** 2
        results.append({"model": name, "params_m": round(row["params_m"], 1), "tile_px": row["tile"],
                        "gflop_per_tile": round(row["gflop"], 2), "tiles_per_s": round(rate, 2),
                        "km2_per_s_at_10m": round(rate * km2, 1), "rounds": len(row["rates"])})
    base = results[0]["tiles_per_s"]
    if args.json:
        print(json.dumps({"precision": precision, "threads": torch.get_num_threads(), "results": results}, indent=2))
        return
    print(f"backbone forward cost, {MODALITY} input, batch {BATCH}, {precision}, {torch.get_num_threads()} threads, "
          f"median over rounds (models interleaved)")
    print(f"{'model':<12}{'params M':>9}{'tile px':>8}{'GFLOP/tile':>11}{'tiles/s':>9}{'km²/s @10 m':>12}"
          f"{'vs first':>9}")
    for r in results:
        print(f"{r['model']:<12}{r['params_m']:>9}{r['tile_px']:>8}{r['gflop_per_tile']:>11}{r['tiles_per_s']:>9}"
              f"{r['km2_per_s_at_10m']:>12}{r['tiles_per_s'] / base:>9.3f}")


if __name__ == "__main__":
    main()
