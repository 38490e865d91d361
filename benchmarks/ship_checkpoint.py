"""Package a pre-training run's encoder as the default checkpoint, and print the facts for the card.

    python benchmarks/ship_checkpoint.py [--run .cache/pretrain/ofa_tiny] [--pooling token_mean_std]

Writes ``ofa_embed/data/ofa_tiny.safetensors`` in half precision (what ``extract`` loads by default),
read out by ``--pooling`` (default: the run's own; the readout the backbone harness chose,
``benchmarks/readouts.py``), and prints its weights hash and size, the run's configuration, samples seen,
wall time, the loss terms every 500 steps and the corpus's tiles per modality. The printed hash must then go into
``PACKAGED_WEIGHTS_HASH`` (``ofa_embed/model/weights.py``) and the model card: the package refuses a
default checkpoint whose hash differs.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.data.fetch import REPO  # noqa: E402
from ofa_embed.model.checkpoint import load_checkpoint, read_out_as, save_checkpoint  # noqa: E402
from ofa_embed.model.pooling import POOLINGS  # noqa: E402
from ofa_embed.model.weights import PACKAGED_WEIGHTS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=REPO / ".cache" / "pretrain" / "ofa_tiny")
    parser.add_argument("--pooling", choices=POOLINGS, help="the shipped readout (default: the run's own)")
    args = parser.parse_args()
    run = args.run
    config = json.loads((run / "config.json").read_text())
    rows = list(csv.DictReader((run / "loss.csv").open()))
    encoder = load_checkpoint(run / "encoder.safetensors").model
    if args.pooling:
        encoder = read_out_as(encoder, args.pooling)
    source = (f"ofa-embed pretrain --objective {config.get('objective', 'masked_siamese')}, {config['steps']} steps "
              f"of {config['batch_size']} tiles, read out by {encoder.config.pooling} (MODEL_CARD.md)")
    digest = save_checkpoint(encoder, PACKAGED_WEIGHTS, dtype=torch.float16, source=source)
    print(f"{PACKAGED_WEIGHTS}: {PACKAGED_WEIGHTS.stat().st_size / 2**20:.2f} MiB, weights hash {digest}")
    print(f"set PACKAGED_WEIGHTS_HASH = {digest!r} in ofa_embed/model/weights.py and the hash in MODEL_CARD.md")
    print(f"parameters: {sum(p.numel() for p in encoder.parameters()):,}; embedding {encoder.embedding_dim} numbers "
          f"({encoder.config.pooling})")
    print("config:", json.dumps(config))
    print(f"samples seen: {int(config['steps']) * int(config['batch_size']):,}")
    step_seconds = sum(int(config["batch_size"]) / float(r["samples_per_s"]) for r in rows)
    wall = (run / "encoder.safetensors").stat().st_mtime - (run / "config.json").stat().st_mtime
    print(f"wall time: {wall / 60:.1f} min (sum of step times {step_seconds / 60:.1f} min, rest is checkpoints)")
    terms = [key for key in rows[0] if key not in ("step", "lr", "samples_per_s", "modality")]
    print(f"step  {', '.join(terms)} (means of the 50 steps before)")
    for end in [1, *range(500, len(rows) + 1, 500)]:
        window = rows[max(0, end - 50) : end]
        means = [sum(float(r.get(key) or "nan") for r in window) / len(window) for key in terms]
        print(f"{end:>5} " + " ".join(f"{m:.4f}" for m in means))
    manifest = json.loads((Path(config["corpus"]) / "manifest.json").read_text())
    print("corpus tiles:", {m: e["tiles"] for m, e in manifest["modalities"].items()})


if __name__ == "__main__":
    main()
