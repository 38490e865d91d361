"""Time (and optionally profile) pre-training steps of an objective on a corpus: samples/s in fp32 and bf16.

    OMP_NUM_THREADS=2 python benchmarks/pretrain_profile.py .cache/corpus --objective dino_ibot --crop 128 --second-crop 0
    OMP_NUM_THREADS=2 python benchmarks/pretrain_profile.py .cache/corpus --objective masked_siamese --profile

Each precision runs ``--warmup`` untimed steps then ``--steps`` timed ones of ``ofa-embed pretrain``'s step
(sample, forward under autocast, backward, clip, fused AdamW (``--unfused``: its per-tensor loop),
``after_step``), split into its parts; ``--profile`` adds the torch profiler's table of the most expensive
operators over 3 more steps. bf16 is timed only where the CPU multiplies it natively (``native_cpu_bf16``),
unless ``--force-bf16``.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ofa_embed.embedding.forward import native_cpu_bf16  # noqa: E402
from ofa_embed.model import create_model  # noqa: E402
from ofa_embed.pretraining.config import PretrainConfig  # noqa: E402
from ofa_embed.pretraining.objective import Objective, build_objective  # noqa: E402
from ofa_embed.pretraining.train import CorpusSampler, param_groups  # noqa: E402


def timed_step(sampler: CorpusSampler, objective: Objective, optimizer: torch.optim.Optimizer, batch_size: int,
               bf16: bool) -> tuple[float, ...]:
    """One training step as ``pretrain`` takes it; seconds spent sampling, in forward, backward, and the rest."""
    ticks = [time.perf_counter()]
    modality, batch = sampler.sample(batch_size)
    ticks.append(time.perf_counter())
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        loss, _ = objective([torch.from_numpy(view) for view in batch], modality)
    ticks.append(time.perf_counter())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    ticks.append(time.perf_counter())
    torch.nn.utils.clip_grad_norm_(objective.parameters(), 1.0)
    optimizer.step()
    objective.after_step(1, 100)
    ticks.append(time.perf_counter())
    return tuple(np.diff(ticks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--objective", default="masked_siamese")
    parser.add_argument("--config", default="ofa_tiny")
    parser.add_argument("--stem", default=None)
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--second-crop", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--force-bf16", action="store_true")
    parser.add_argument("--unfused", action="store_true", help="AdamW's per-tensor loop, as before the fused one")
    args = parser.parse_args()
    config = PretrainConfig.from_dict(dict(model=args.config, objective=args.objective, crop=args.crop,
                                           second_crop=args.second_crop, stem=args.stem, batch_size=args.batch_size))
    native = native_cpu_bf16()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {native}; {args.objective}, "
          f"{args.config} stem={config.model_config().stem}, views {config.crops}, batch {args.batch_size}")
    for bf16 in (False, True):
        if bf16 and not (native or args.force_bf16):
            continue
        torch.manual_seed(0)
        sampler = CorpusSampler(args.corpus, crops=config.crops, sampling="proportional", seed=0)
        objective = build_objective(config.objective, create_model(config.model_config()), config.objective_options)
        optimizer = torch.optim.AdamW(param_groups(objective, 0.05), lr=1e-4, fused=not args.unfused)
        step = functools.partial(timed_step, sampler, objective, optimizer, args.batch_size, bf16)
        for _ in range(args.warmup):
            step()
        parts = np.array([step() for _ in range(args.steps)]).mean(0)
        print(f"{'bf16' if bf16 else 'fp32'}: sample {parts[0] * 1e3:.0f} ms, forward {parts[1] * 1e3:.0f} ms, "
              f"backward {parts[2] * 1e3:.0f} ms, clip + optimiser + after_step {parts[3] * 1e3:.0f} ms: "
              f"{args.batch_size / parts.sum():.1f} samples/s")
        if args.profile:
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(3):
                    step()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()
