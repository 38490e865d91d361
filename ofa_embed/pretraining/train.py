"""``pretrain``: masked image modelling of the shared OFA encoder on a curated corpus.

Each step draws one modality (in proportion to its tiles, or uniformly with ``sampling="balanced"``)
and a batch of its tiles, each seen as one or two views (random crops, flips, quarter turns), and takes
one AdamW step on the objective ``PretrainConfig.objective`` names (:mod:`ofa_embed.pretraining.objective`;
by default MAE on every view plus InfoNCE between the views), with a linear warm-up, then cosine decay
to zero, and then lets the objective update what follows the weights without a gradient
(``Objective.after_step``: the EMA teacher of ``dino_ibot``). The forward runs under bfloat16 autocast on
CUDA and on CPUs that multiply bfloat16 natively (``PretrainConfig.bf16``). The code is the same on CPU and
GPU except for the device and the autocast dtype; under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in
DistributedDataParallel, each rank samples with its own seed and rank 0 alone writes files.

Output directory::

    state.pt              everything to resume: model + decoder, optimiser, scheduler, step, RNG states
    encoder.safetensors   the encoder alone (an ofa-embed checkpoint, what ``extract --weights`` takes)
    config.json           the corpus, the precision trained in and the PretrainConfig (PretrainConfig.from_dict
                          reads it back)
    loss.csv, loss.png    step, loss (and its parts, the objective's log_keys), learning rate, samples/s, modality
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ofa_embed.atomic import atomic_target
from ofa_embed.embedding.forward import native_cpu_bf16
from ofa_embed.errors import ConfigError, StoreError, first_line
from ofa_embed.model import create_model
from ofa_embed.model.checkpoint import save_checkpoint
from ofa_embed.pretraining.config import PretrainConfig
from ofa_embed.pretraining.corpus import load_manifest
from ofa_embed.pretraining.objective import Objective, build_objective

__all__ = ["PretrainConfig", "PretrainReport", "pretrain", "param_groups", "CorpusSampler"]


@dataclass
class PretrainReport:
    """The outcome of :func:`pretrain`.

    Attributes:
        out: the output directory.
        steps: total optimiser steps (``config.steps``, steps before a resume included).
        samples_seen: ``steps * batch_size * world_size``.
        seconds: wall time of the training loop in this call, in seconds.
        final_loss: loss of the last step (NaN if no step ran).
        samples_per_s: tiles per second over the steps of this call (all ranks).
        precision: ``bf16`` (autocast) or ``fp32``.
        weights_hash: hash of the saved encoder weights (empty on ranks other than 0).
        losses: loss per step, in step order.
    """

    out: Path
    steps: int
    samples_seen: int
    seconds: float
    final_loss: float
    weights_hash: str
    losses: list[float] = field(default_factory=list)
    samples_per_s: float = float("nan")
    precision: str = "fp32"


class CorpusSampler:
    """Random batches of one modality from a corpus, memory-mapped, each tile seen as one or more views.

    Args:
        corpus: corpus directory.
        crops: edge in pixels of each view; every view is an independent random crop of the tile, flipped
            and turned by a random multiple of 90 degrees.
        sampling: ``proportional`` or ``balanced`` over modalities.
        seed: seed of the sampler's generator.

    Raises:
        StoreError: not a corpus, or an empty one; ConfigError: a crop larger than the tiles.
    """

    def __init__(self, corpus: str | Path, *, crops: tuple[int, ...], sampling: str, seed: int) -> None:
        self.corpus = Path(corpus)
        manifest = load_manifest(corpus)
        self.tile_size = manifest["tile_size"]
        for crop in crops:
            if crop > self.tile_size:
                raise ConfigError(f"crop {crop} is larger than the corpus tiles ({self.tile_size} px)")
        self.crops = crops
        self.shards: dict[str, list[np.ndarray]] = {}
        for name, entry in manifest["modalities"].items():
            arrays = [np.load(self.corpus / s["file"], mmap_mode="r") for s in entry["shards"]]
            if arrays:
                self.shards[name] = arrays
        if not self.shards:
            raise StoreError(f"{corpus}: corpus holds no tiles")
        self.names = sorted(self.shards)
        counts = np.array([sum(len(a) for a in self.shards[n]) for n in self.names], dtype=np.float64)
        if sampling not in ("proportional", "balanced"):
            raise ConfigError(f"sampling must be proportional or balanced, got {sampling!r}")
        self.weights = counts / counts.sum() if sampling == "proportional" else np.full(len(counts), 1 / len(counts))
        self.counts = dict(zip(self.names, counts.astype(int).tolist(), strict=True))
        self.rng = np.random.default_rng(seed)

    def sample(self, batch_size: int) -> tuple[str, list[np.ndarray]]:
        """``(modality, [(B, C, crop, crop) float32 per view])``, row i of every view from the same tile."""
        name = self.names[self.rng.choice(len(self.names), p=self.weights)]
        arrays = self.shards[name]
        sizes = np.array([len(a) for a in arrays])
        picks = self.rng.integers(0, sizes.sum(), batch_size)
        shard_of = np.searchsorted(np.cumsum(sizes), picks, side="right")
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        views = [np.empty((batch_size, arrays[0].shape[1], crop, crop), np.float32) for crop in self.crops]
        for i, (shard, pick) in enumerate(zip(shard_of, picks, strict=True)):
            tile = arrays[shard][pick - offsets[shard]]
            for view, crop in zip(views, self.crops, strict=True):
                r, c = self.rng.integers(0, self.tile_size - crop + 1, 2)
                cut = tile[:, r : r + crop, c : c + crop]
                if self.rng.random() < 0.5:
                    cut = cut[:, :, ::-1]
                view[i] = np.rot90(cut, int(self.rng.integers(4)), axes=(1, 2))
        return name, views

    def state(self) -> dict[str, Any]:
        """The sampler's RNG state, for a checkpoint to resume from."""
        return dict(self.rng.bit_generator.state)

    def restore(self, state: dict) -> None:
        """Restore the RNG state saved by :meth:`state`, so sampling continues where it stopped."""
        self.rng.bit_generator.state = state


def _distributed() -> tuple[int, int, torch.device]:
    """``(rank, world_size, device)``; initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return (dist.get_rank() if world > 1 else 0), world, device


DEFAULT_CONFIG = PretrainConfig()
_NO_DECAY = ("modality_embed", "polarisation", "weight_tokens", "bias_token", "mask_token")


def param_groups(module: torch.nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """AdamW groups as MAE uses them: weight decay on weight matrices and kernels only, none on norms,
    biases, learned embeddings and tokens (modality and polarisation embeddings, the spectral generator's
    weight and bias tokens, the mask token): decaying those only pulls them to zero.
    """
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        exempt = param.ndim < 2 or any(key in name for key in _NO_DECAY)
        (no_decay if exempt else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _schedule(config: PretrainConfig) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def _plot(rows: list[dict[str, str]], path: Path) -> None:
    """Loss curve as a PNG (Pillow, which torchvision already brings): every step, and a moving average."""
    from PIL import Image, ImageDraw

    width, height, margin = 800, 400, 50
    steps = np.array([int(r["step"]) for r in rows], dtype=float)
    losses = np.array([float(r["loss"]) for r in rows])
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    lo, hi = float(losses.min()), float(losses.max()) or 1.0
    span_x, span_y = max(steps.max() - steps.min(), 1), max(hi - lo, 1e-9)
    xs = margin + (steps - steps.min()) / span_x * (width - 2 * margin)
    ys = height - margin - (losses - lo) / span_y * (height - 2 * margin)
    draw.rectangle([margin, margin, width - margin, height - margin], outline="black")
    if len(xs) > 1:
        draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=(170, 190, 230), width=1)
        # one modality per step makes single losses noisy: the 50-step moving average shows the trend
        window = min(50, len(losses))
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        smooth_y = height - margin - (smooth - lo) / span_y * (height - 2 * margin)
        draw.line(list(zip(xs[window - 1 :].tolist(), smooth_y.tolist(), strict=True)), fill="navy", width=2)
    title = f"loss: {losses[0]:.3f} at step {int(steps[0])} -> {losses[-1]:.3f} at step {int(steps[-1])}"
    draw.text((margin, 10), title, fill="black")
    draw.text((margin, height - margin + 10), f"step {int(steps.min())}", fill="black")
    draw.text((width - margin - 80, height - margin + 10), f"step {int(steps.max())}", fill="black")
    draw.text((5, margin), f"{hi:.3f}", fill="black")
    draw.text((5, height - margin - 10), f"{lo:.3f}", fill="black")
    image.save(path)


def pretrain(
    corpus: str | Path,
    out: str | Path,
    config: PretrainConfig = DEFAULT_CONFIG,
    *,
    resume: bool = False,
    on_progress: Callable[[int, int, float, float], None] | None = None,
) -> PretrainReport:
    """Pre-train a backbone on ``corpus`` with ``config.objective``; write checkpoints and the loss curve to ``out``.

    Args:
        corpus: directory written by :func:`ofa_embed.curate`.
        out: output directory.
        config: hyper-parameters.
        resume: continue from ``out/state.pt`` at its step, with its optimiser and RNG states.
        on_progress: called as ``(step, steps, loss, samples_per_s)`` after every step.

    Raises:
        StoreError: not a corpus; ConfigError: inconsistent hyper-parameters or no state to resume.
    """
    rank, world, device = _distributed()
    out = Path(out)
    state_path = out / "state.pt"
    crops = config.crops
    sampler = CorpusSampler(corpus, crops=crops, sampling=config.sampling, seed=config.seed + rank)
    encoder = create_model(config.model_config(), seed=config.seed)
    for crop in crops:
        if crop % encoder.patch_size:
            raise ConfigError(f"crop {crop} must be a multiple of the patch size {encoder.patch_size}")
    torch.manual_seed(config.seed + rank)
    objective = build_objective(config.objective, encoder, config.objective_options).to(device)
    # fused: one kernel over all parameters instead of a loop of element-wise ops per tensor, which took a
    # large share of a CPU step (profile: ``benchmarks/pretrain_profile.py``)
    optimizer = torch.optim.AdamW(param_groups(objective, config.weight_decay), lr=config.lr, betas=(0.9, 0.95),
                                  fused=device.type in ("cpu", "cuda"))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config))
    start_step = 0
    if resume:
        if not state_path.is_file():
            raise ConfigError(f"{state_path}: nothing to resume from")
        state = torch.load(state_path, map_location=device, weights_only=False)
        try:
            objective.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError) as exc:  # a state.pt of another model, objective or optimiser layout
            raise ConfigError(
                f"{state_path}: the saved run does not fit this configuration ({first_line(exc)}); "
                "start a new run instead of --resume"
            ) from None
        scheduler.load_state_dict(state["scheduler"])
        sampler.restore(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        start_step = state["step"]
    # each step trains one modality: the other modalities' patch embeddings and heads get no gradient
    model = DistributedDataParallel(objective, find_unused_parameters=True) if world > 1 else objective
    bf16 = device.type == "cuda" or (native_cpu_bf16() if config.bf16 is None else config.bf16)
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=bf16)
    precision = "bf16" if bf16 else "fp32"
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps({"corpus": str(corpus), "precision": precision,
                                                     **config.to_dict()}, indent=1))
    log_path = out / "loss.csv"
    rows: list[dict[str, str]] = []
    if resume and log_path.is_file():
        rows = [r for r in csv.DictReader(log_path.open()) if int(r["step"]) <= start_step]
    started = time.perf_counter()
    objective.train()
    for step in range(start_step, config.steps):
        tick = time.perf_counter()
        modality, batch = sampler.sample(config.batch_size)
        views = [torch.from_numpy(view).to(device, non_blocking=True) for view in batch]
        with autocast:
            loss, parts = model(views, modality)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(objective.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        objective.after_step(step + 1, config.steps)
        rate = config.batch_size * world / (time.perf_counter() - tick)
        rows.append({"step": str(step + 1), "loss": f"{loss.item():.5f}",
                     **{key: f"{parts.get(key, float('nan')):.5f}" for key in objective.log_keys},
                     "lr": f"{scheduler.get_last_lr()[0]:.3e}", "samples_per_s": f"{rate:.1f}", "modality": modality})
        if on_progress:
            on_progress(step + 1, config.steps, loss.item(), rate)
        if rank == 0 and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps):
            _save_state(state_path, objective, optimizer, scheduler, sampler, step + 1)
            _write_log(rows, log_path)
    source = f"ofa-embed pretrain {corpus}"
    weights = save_checkpoint(objective.encoder, out / "encoder.safetensors", source=source) if rank == 0 else ""
    if rank == 0 and rows:
        _write_log(rows, log_path)
        _plot(rows, out / "loss.png")
    losses = [float(r["loss"]) for r in rows]
    seconds = time.perf_counter() - started
    rate = (config.steps - start_step) * config.batch_size * world / seconds if seconds > 0 else float("nan")
    return PretrainReport(out, config.steps, config.steps * config.batch_size * world, seconds,
                          losses[-1] if losses else float("nan"), weights, losses, rate, precision)


def _save_state(path: Path, objective: Objective, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler, sampler: CorpusSampler, step: int) -> None:
    with atomic_target(path) as tmp:
        torch.save({"model": objective.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "sampler": sampler.state(), "torch_rng": torch.get_rng_state(), "step": step}, tmp)


def _write_log(rows: list[dict[str, str]], path: Path) -> None:
    with atomic_target(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
