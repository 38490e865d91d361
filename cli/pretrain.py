"""``ofa-embed pretrain``: the shared backbone trained on a corpus with an objective chosen by name (``--objective``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ofa_embed.cli.common import Quiet, errors_to_exit, setup_logging, stderr, stdout
from ofa_embed.model.config import list_models
from ofa_embed.pretraining.config import OBJECTIVE_OPTIONS, MaskedSiameseOptions, PretrainConfig

DEFAULTS = PretrainConfig()
SIAMESE = MaskedSiameseOptions()  # the defaults of the default objective's options


def pretrain(
    corpus: Annotated[Path, typer.Argument(help="Corpus directory (ofa-embed curate).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (checkpoints, loss curve).")],
    config: Annotated[str, typer.Option(help=f"Model size: {', '.join(list_models())}.")] = DEFAULTS.model,
    patch_size: Annotated[int | None, typer.Option(help="Patch edge in pixels (default: the size's own).")] = None,
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = DEFAULTS.steps,
    batch_size: Annotated[int, typer.Option(help="Tiles per step (per GPU under torchrun).")] = DEFAULTS.batch_size,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = DEFAULTS.lr,
    warmup_steps: Annotated[int, typer.Option(help="Linear warm-up steps.")] = DEFAULTS.warmup_steps,
    objective: Annotated[str, typer.Option(help=f"Training objective: {', '.join(OBJECTIVE_OPTIONS)}.")] = DEFAULTS.objective,
    mask_ratio: Annotated[float, typer.Option(help="Fraction of patches masked (masked_siamese).")] = SIAMESE.mask_ratio,
    crop: Annotated[int, typer.Option(help="Edge in pixels of the first view (a random crop of the tile).")] = DEFAULTS.crop,
    second_crop: Annotated[int, typer.Option(help="Edge of the second view (0: one view, MAE only).")] = DEFAULTS.second_crop,
    norm_pix_loss: Annotated[
        bool, typer.Option(help="MAE's per-patch normalised pixel targets (masked_siamese).")
    ] = SIAMESE.norm_pix_loss,
    contrastive_weight: Annotated[
        float, typer.Option(help="Weight of the InfoNCE term between views (0: MAE only; masked_siamese).")
    ] = SIAMESE.contrastive_weight,
    temperature: Annotated[float, typer.Option(help="InfoNCE temperature (masked_siamese).")] = SIAMESE.temperature,
    sampling: Annotated[str, typer.Option(help="proportional or balanced modality sampling.")] = DEFAULTS.sampling,
    seed: Annotated[int, typer.Option(help="Seed of init, sampling and masking.")] = DEFAULTS.seed,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between resumable checkpoints.")] = DEFAULTS.checkpoint_every,
    bf16: Annotated[bool, typer.Option(help="bfloat16 autocast on CPU too (always on CUDA).")] = DEFAULTS.bf16,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/state.pt.")] = False,
    quiet: Quiet = False,
) -> None:
    """Pre-train the shared encoder (default: MAE + contrastive views); write OUT/encoder.safetensors, loss.csv, loss.png."""
    setup_logging(quiet)
    from ofa_embed.pretraining.train import pretrain as run_pretrain

    columns = (TextColumn("pretrain"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with errors_to_exit(), Progress(*columns, console=stderr, disable=quiet) as progress:
        # flat options go to the objective that has them (PretrainConfig.from_dict)
        settings = PretrainConfig.from_dict(dict(
            model=config, patch_size=patch_size, steps=steps, batch_size=batch_size, lr=lr, warmup_steps=warmup_steps,
            objective=objective, mask_ratio=mask_ratio, crop=crop, second_crop=second_crop, norm_pix_loss=norm_pix_loss,
            contrastive_weight=contrastive_weight, temperature=temperature, sampling=sampling, seed=seed,
            checkpoint_every=checkpoint_every, bf16=bf16,
        ))
        task = progress.add_task("pretrain", total=steps, status="")

        def update(step: int, total: int, loss: float, rate: float) -> None:
            progress.update(task, completed=step, status=f"loss {loss:.4f}  {rate:.0f} samples/s")

        report = run_pretrain(corpus, out, settings, resume=resume, on_progress=update)
    if not quiet:
        stdout.print(f"{report.out}: {report.steps} steps, {report.samples_seen:,} samples, {report.seconds:.0f} s, "
                     f"final loss {report.final_loss:.4f}, weights {report.weights_hash}", highlight=False)
