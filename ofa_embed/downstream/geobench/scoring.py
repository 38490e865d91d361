"""Scoring one GEO-Bench task with the frozen backbone: inputs, forward passes, linear probes and metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ofa_embed.downstream.geobench.files import GeoBenchSample, TaskFiles
from ofa_embed.downstream.geobench.tasks import SPLITS, GeoBenchTask
from ofa_embed.downstream.metrics import CONFIDENCE, Estimate, evaluate
from ofa_embed.downstream.probe import fit_probe
from ofa_embed.embedding.forward import embed
from ofa_embed.errors import GeoBenchError
from ofa_embed.model.checkpoint import Backbone
from ofa_embed.sensors import Modality, get_modality

__all__ = ["mean_iou"]


TRAIN_PATCH_BUDGET = 200_000  # patch tokens kept to fit a segmentation probe: ~150 MB at D = 192
PATCH_PROBE_STEPS = 300
PATCH_PROBE_BATCH = 4096
PATCH_PROBE_LR = 1e-2


# --- normalisation ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """Which stored bands feed which registry band, and the per-band affine to normalised values."""

    modality: Modality
    stored: list[str]
    positions: list[int]
    gain: np.ndarray
    bias: np.ndarray

    @classmethod
    def of(cls, task: GeoBenchTask) -> Layout:
        modality = get_modality(task.modality)
        used = {name: band for name, band in task.bands.items() if band}
        positions = modality.resolve_bands(list(used.values()), source=f"GEO-Bench {task.name}")
        gain, bias = modality.normalising_affine()
        gain = gain[positions] * np.float32(task.value_scale)  # stored units -> the registry's file units
        return cls(modality, list(used), positions, gain, bias[positions])

    def normalise(self, sample: GeoBenchSample) -> np.ndarray:
        """``(C_stored, H, W)`` stored values -> ``(C_modality, H, W)`` normalised, missing bands and
        non-finite values 0 (the band mean).
        """
        out = np.zeros((self.modality.num_bands, *sample.image.shape[1:]), np.float32)
        out[self.positions] = sample.image * self.gain[:, None, None] + self.bias[:, None, None]
        out[~np.isfinite(out)] = 0.0
        return out


def _check_bands(files: TaskFiles, sample: GeoBenchSample) -> None:
    unknown = [b for b in sample.stored_bands if b not in files.task.bands]
    if unknown:
        raise GeoBenchError(
            f"{files.sample_path(sample.name)}: band {unknown[0]!r} is not a {files.task.name} band "
            f"(expected some of {', '.join(files.task.bands)})"
        )


def tile_size_for(size: int, patch: int) -> int:
    """The multiple of ``patch`` nearest to ``size``, at least ``patch``."""
    return max(patch, int(size / patch + 0.5) * patch)


def _image_batches(
    files: TaskFiles, splits: Sequence[str], layout: Layout, tile: tuple[int, int], batch_size: int,
    progress: Callable[[int], None],
) -> Iterator[tuple[torch.Tensor, list[GeoBenchSample]]]:
    """Normalised ``(B, C, tile_h, tile_w)`` batches and their samples, split after split."""
    batch: list[GeoBenchSample] = []
    images: list[torch.Tensor] = []
    for split in splits:
        for sample in files.samples(split, layout.stored):
            _check_bands(files, sample)
            image = torch.from_numpy(layout.normalise(sample))[None]
            if image.shape[-2:] != tile:
                image = F.interpolate(image, size=tile, mode="bilinear", align_corners=False, antialias=True)
            batch.append(sample)
            images.append(image)
            if len(batch) == batch_size:
                yield torch.cat(images), batch
                progress(len(batch))
                batch, images = [], []
    if batch:
        yield torch.cat(images), batch
        progress(len(batch))


# --- probes and metrics ----------------------------------------------------------------------------------
def mean_iou(confusions: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> Estimate:
    """Mean intersection over union with a bootstrap interval over images.

    Args:
        confusions: ``(N, C, C)`` pixel counts per test image, rows = truth, columns = prediction.
        n_boot: bootstrap replicates resampling images (0: no interval, NaN bounds).
        seed: seed of the bootstrap draws.

    Returns:
        mIoU over the classes present in truth or prediction (IoU = TP / (TP + FP + FN)), and its
        :data:`~ofa_embed.downstream.metrics.CONFIDENCE` percentile interval.
    """
    confusions = np.asarray(confusions, dtype=np.float64)
    n_images, n_classes = confusions.shape[:2]
    flat = confusions.reshape(n_images, n_classes * n_classes)

    def miou(totals: np.ndarray) -> np.ndarray:
        matrices = totals.reshape(-1, n_classes, n_classes)
        tp = np.diagonal(matrices, axis1=1, axis2=2)
        union = matrices.sum(1) + matrices.sum(2) - tp
        iou = np.divide(tp, union, out=np.full_like(tp, np.nan), where=union > 0)
        return np.nanmean(iou, axis=1)

    value = float(miou(flat.sum(0, keepdims=True))[0])
    if n_boot == 0:
        return Estimate(value, float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_images, (n_boot, n_images))
    weights = np.stack([np.bincount(row, minlength=n_images) for row in draws]).astype(np.float64)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(miou(weights @ flat), [tail, 100 - tail])
    return Estimate(value, float(low), float(high))


def _majority_patch_class(mask: np.ndarray, tile: tuple[int, int], patch: int, n_classes: int) -> torch.Tensor:
    """``(H, W)`` class mask -> ``(tile_h / P, tile_w / P)`` most frequent class per patch (ties: lowest)."""
    resized = F.interpolate(torch.from_numpy(mask)[None, None].float(), size=tile, mode="nearest")[0, 0].long()
    shares = F.avg_pool2d(F.one_hot(resized, n_classes).permute(2, 0, 1).float()[None], patch)[0]
    return shares.argmax(0)


class _PatchProbe(nn.Module):
    """Standardised patch tokens -> class logits: ``(..., D)`` -> ``(..., C)``."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, n_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.linear = nn.Linear(mean.numel(), n_classes)
        nn.init.zeros_(self.linear.weight)  # a convex problem: a fixed start makes the fit seed-free
        nn.init.zeros_(self.linear.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.linear((tokens - self.mean) / self.std)


def _fit_patch_probe(tokens: np.ndarray, targets: np.ndarray, n_classes: int, seed: int) -> _PatchProbe:
    """Class-balanced cross-entropy, AdamW on minibatches of patch tokens ``(M, D)`` with targets ``(M,)``."""
    x, y = torch.from_numpy(tokens), torch.from_numpy(targets)
    probe = _PatchProbe(x.mean(0), x.std(0).clamp_min(1e-6), n_classes)
    counts = torch.bincount(y, minlength=n_classes).float()
    weights = torch.where(counts > 0, len(y) / (counts.clamp_min(1) * (counts > 0).sum()), torch.zeros_like(counts))
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    optimiser = torch.optim.AdamW(probe.parameters(), lr=PATCH_PROBE_LR, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(PATCH_PROBE_STEPS):
        index = torch.randint(len(y), (min(PATCH_PROBE_BATCH, len(y)),), generator=generator)
        optimiser.zero_grad()
        loss_fn(probe(x[index]), y[index]).backward()
        optimiser.step()
    return probe.eval()



def classification_score(
    files: TaskFiles, model: Backbone, layout: Layout, tile: tuple[int, int], device: torch.device, batch_size: int,
    n_boot: int, seed: int, progress: Callable[[int], None], precision: str = "fp32",
) -> tuple[Estimate, int, int]:
    task = files.task
    features: dict[str, list[np.ndarray]] = {"fit": [], "test": []}
    labels: dict[str, list[Any]] = {"fit": [], "test": []}
    for images, samples in _image_batches(files, SPLITS, layout, tile, batch_size, progress):
        embedded = embed(model, images, layout.modality.name, device, tokens=False, precision=precision)
        for sample, vector in zip(samples, embedded, strict=True):
            part = "test" if sample.split == "test" else "fit"
            features[part].append(vector)
            labels[part].append(_checked_label(files, sample))
    x_fit, x_test = np.stack(features["fit"]), np.stack(features["test"])
    if task.kind == "multilabel":
        y_fit, y_test = np.stack(labels["fit"]), np.stack(labels["test"])
        varying = np.flatnonzero(y_fit.min(0) != y_fit.max(0))
        if len(varying) == 0:
            raise GeoBenchError(f"{files.path}: every label is constant over train + valid; nothing to fit")
        probe = fit_probe(x_fit, y_fit[:, varying], "multilabel", classes=varying.tolist(), seed=seed)
        proba = probe.predict_proba(x_test)
        evaluation = evaluate("multilabel", y_test[:, varying], probe.labels(proba), proba,
                              classes=varying.tolist(), n_boot=n_boot, seed=seed)
    else:
        y_fit, y_test = np.array(labels["fit"]), np.array(labels["test"])
        if len(np.unique(y_fit)) < 2:
            raise GeoBenchError(f"{files.path}: train + valid hold a single class; nothing to fit")
        probe = fit_probe(x_fit, y_fit, "classify", seed=seed)
        evaluation = evaluate("classify", y_test, probe.predict(x_test), classes=list(range(task.n_classes)),
                              n_boot=n_boot, seed=seed)
    return evaluation.metrics[task.metric], len(y_fit), len(y_test)


def _checked_label(files: TaskFiles, sample: GeoBenchSample) -> int | np.ndarray:
    task, label, path = files.task, sample.label, files.sample_path(sample.name)
    if task.kind == "multilabel":
        if not isinstance(label, np.ndarray) or label.shape != (task.n_classes,) or not np.isin(label, (0, 1)).all():
            raise GeoBenchError(f"{path}: expected a {task.n_classes}-long 0/1 label vector, got {label!r}")
    elif not isinstance(label, int) or not 0 <= label < task.n_classes:
        raise GeoBenchError(f"{path}: expected a class index in 0..{task.n_classes - 1}, got {label!r}")
    return label


def _checked_mask(files: TaskFiles, sample: GeoBenchSample) -> np.ndarray:
    mask, task = sample.label, files.task
    if not isinstance(mask, np.ndarray) or mask.ndim != 2 or mask.min() < 0 or mask.max() >= task.n_classes:
        raise GeoBenchError(
            f"{files.sample_path(sample.name)}: expected a 'label' mask of classes 0..{task.n_classes - 1}"
        )
    return mask


def segmentation_score(
    files: TaskFiles, model: Backbone, layout: Layout, tile: tuple[int, int], device: torch.device, batch_size: int,
    n_boot: int, seed: int, progress: Callable[[int], None], precision: str = "fp32",
) -> tuple[Estimate, int, int]:
    n_classes, patch = files.task.n_classes, model.patch_size
    fit_images = sum(len(files.partition.get(s, [])) for s in ("train", "valid"))
    grid = (tile[0] // patch) * (tile[1] // patch)
    per_image = max(1, min(grid, TRAIN_PATCH_BUDGET // fit_images))
    rng = np.random.default_rng(seed)
    tokens: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    for images, samples in _image_batches(files, ("train", "valid"), layout, tile, batch_size, progress):
        embedded = embed(model, images, layout.modality.name, device, tokens=True, precision=precision)
        for sample, sample_tokens in zip(samples, embedded, strict=True):
            majority = _majority_patch_class(_checked_mask(files, sample), tile, patch, n_classes).flatten().numpy()
            keep = np.sort(rng.choice(grid, per_image, replace=False)) if per_image < grid else slice(None)
            tokens.append(sample_tokens[keep])
            targets.append(majority[keep])
    probe = _fit_patch_probe(np.concatenate(tokens), np.concatenate(targets), n_classes, seed)
    grid_shape = (tile[0] // patch, tile[1] // patch)
    confusions: list[np.ndarray] = []
    for images, samples in _image_batches(files, ("test",), layout, tile, batch_size, progress):
        test_tokens = torch.from_numpy(embed(model, images, layout.modality.name, device, tokens=True, precision=precision))
        with torch.no_grad():
            logits = probe(test_tokens).reshape(len(samples), *grid_shape, n_classes).permute(0, 3, 1, 2)
        for sample, sample_logits in zip(samples, logits, strict=True):
            mask = _checked_mask(files, sample)
            pixels = F.interpolate(sample_logits[None], size=mask.shape, mode="bilinear", align_corners=False)
            predicted = pixels[0].argmax(0).numpy()
            confusions.append(np.bincount(mask.ravel() * n_classes + predicted.ravel(), minlength=n_classes**2)
                              .reshape(n_classes, n_classes))
    return mean_iou(np.stack(confusions), n_boot=n_boot, seed=seed), fit_images, len(confusions)


