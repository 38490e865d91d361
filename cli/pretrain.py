"""``ofa-embed pretrain``: the shared backbone trained on a corpus with an objective chosen by name (``--objective``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ofa_embed.cli.common import Quiet, errors_to_exit, setup_logging, stderr, stdout
from ofa_embed.model.config import list_models
from ofa_embed.pretraining.config import OBJECTIVE_OPTIONS, DinoIBotOptions, MaskedSiameseOptions, PretrainConfig

DEFAULTS = PretrainConfig()
SIAMESE = MaskedSiameseOptions()  # the defaults of each objective's options, for the help texts
DINO = DinoIBotOptions()


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
    mask_ratio: Annotated[float | None, typer.Option(
        help=f"Fraction of patches masked (masked_siamese: {SIAMESE.mask_ratio}; dino_ibot: {DINO.mask_ratio}).")] = None,
    crop: Annotated[int, typer.Option(help="Edge in pixels of the first view (a random crop of the tile).")] = DEFAULTS.crop,
    second_crop: Annotated[int, typer.Option(help="Edge of the second view (0: one view, MAE only).")] = DEFAULTS.second_crop,
    norm_pix_loss: Annotated[
        bool | None, typer.Option(help=f"MAE's per-patch normalised pixel targets (masked_siamese: {SIAMESE.norm_pix_loss}).")
    ] = None,
    contrastive_weight: Annotated[float | None, typer.Option(
        help=f"Weight of the InfoNCE term between views (0: MAE only; masked_siamese: {SIAMESE.contrastive_weight}).")] = None,
    temperature: Annotated[float | None, typer.Option(
        help=f"InfoNCE temperature (masked_siamese: {SIAMESE.temperature}).")] = None,
    global_crops: Annotated[int | None, typer.Option(help=f"Global crops per tile (dino_ibot: {DINO.global_crops}).")] = None,
    local_crops: Annotated[int | None, typer.Option(help=f"Local crops per tile (dino_ibot: {DINO.local_crops}).")] = None,
    band_dropout: Annotated[float | None, typer.Option(
        help=f"Probability that a student crop sees a band subset (dino_ibot: {DINO.band_dropout}).")] = None,
    ibot_weight: Annotated[float | None, typer.Option(
        help=f"Weight of the masked-token loss (dino_ibot: {DINO.ibot_weight}).")] = None,
    mae_weight: Annotated[float | None, typer.Option(
        help=f"Weight of an auxiliary MAE loss (dino_ibot: {DINO.mae_weight}).")] = None,
    prototypes: Annotated[int | None, typer.Option(help=f"DINO head prototypes (dino_ibot: {DINO.prototypes}).")] = None,
    teacher_momentum: Annotated[float | None, typer.Option(
        help=f"EMA momentum of the teacher at step 0, to 1 by a cosine (dino_ibot: {DINO.teacher_momentum}).")] = None,
    stem: Annotated[str | None, typer.Option(
        help="Backbone stem: none (patchify) or conv (overlapping convolutions after a 4 px spectral embedding).")] = None,
    sampling: Annotated[str, typer.Option(help="proportional or balanced modality sampling.")] = DEFAULTS.sampling,
    seed: Annotated[int, typer.Option(help="Seed of init, sampling and masking.")] = DEFAULTS.seed,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between resumable checkpoints.")] = DEFAULTS.checkpoint_every,
    bf16: Annotated[bool | None, typer.Option(
        help="bfloat16 autocast on CPU (default: where the CPU multiplies bfloat16 natively; always on CUDA).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/state.pt.")] = False,
    quiet: Quiet = False,
) -> None:
    """Pre-train the shared encoder (default: MAE + contrastive views); write OUT/encoder.safetensors, loss.csv, loss.png."""
    setup_logging(quiet)
    from ofa_embed.pretraining.train import pretrain as run_pretrain

    columns = (TextColumn("pretrain"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with errors_to_exit(), Progress(*columns, console=stderr, disable=quiet) as progress:
        # flat options go to the objective that has them (PretrainConfig.from_dict); unset ones keep its defaults
        options = dict(mask_ratio=mask_ratio, norm_pix_loss=norm_pix_loss, contrastive_weight=contrastive_weight,
                       temperature=temperature, global_crops=global_crops, local_crops=local_crops,
                       band_dropout=band_dropout, ibot_weight=ibot_weight, mae_weight=mae_weight, prototypes=prototypes,
                       teacher_momentum=teacher_momentum)
        settings = PretrainConfig.from_dict(dict(
            model=config, patch_size=patch_size, stem=stem, steps=steps, batch_size=batch_size, lr=lr,
            warmup_steps=warmup_steps, objective=objective, crop=crop, second_crop=second_crop, sampling=sampling,
            seed=seed, checkpoint_every=checkpoint_every, bf16=bf16,
            **{name: value for name, value in options.items() if value is not None},
        ))
        task = progress.add_task("pretrain", total=steps, status="")

        def update(step: int, total: int, loss: float, rate: float) -> None:
            progress.update(task, completed=step, status=f"loss {loss:.4f}  {rate:.0f} samples/s")

        report = run_pretrain(corpus, out, settings, resume=resume, on_progress=update)
    if not quiet:
        stdout.print(f"{report.out}: {report.steps} steps, {report.samples_seen:,} samples, {report.seconds:.0f} s "
                     f"({report.samples_per_s:.1f} samples/s, {report.precision}), final loss {report.final_loss:.4f}, "
                     f"weights {report.weights_hash}", highlight=False)
