"""Quality harness: what a checkpoint's embeddings are worth on every real labelled set reachable here.

    python benchmarks/quality.py                                  # the packaged checkpoint
    python benchmarks/quality.py --weights run=.cache/pretrain/x/encoder.safetensors [--weights ...]
    python benchmarks/quality.py --json .cache/quality.json       # also write the table as JSON

Sets: ``benchmarks/data/labelled.py`` (each with its source, licence, radiometry and how its groups keep
one place on one side of a split; none of their places is in the pre-training corpus).

Features compared on the same chips (normalised exactly as ``extract`` normalises them):

- each checkpoint given (default: the packaged one), its embedding (``OFANet.forward``, float32);
- ``random init``: the architecture of the first checkpoint, seeded random initialisation;
- ``band stats``: mean and standard deviation of every band the source has, over the chip (2 x C numbers);
- ``RCF``: random convolutional features (Rolf et al. 2021, MOSAIKS; TorchGeo's ``RCF`` in Gaussian
  mode): D/2 filters of 3 x 3 over the bands the source has, weights N(0, 1) (seed 0), bias -1, and
  ``[mean relu(conv - 1), mean relu(-conv - 1)]`` over the chip: D numbers, no training, no data.

Protocol: 5 outer folds of whole groups (``StratifiedGroupKFold``, seed 0); in each, the features are
standardised on the training side; **linear probe**: logistic regression with C chosen by grouped inner
cross-validation (``ofa_embed.downstream.probe.fit_probe``, what ``ofa-embed probe`` runs); **kNN-5**:
majority vote of the 5 training chips of highest cosine similarity (``knn_vote``, what ``ofa-embed
knn`` runs). Out-of-fold predictions of all folds are scored together: balanced accuracy with a 95 %
bootstrap interval over groups (``ofa_embed.downstream.metrics.evaluate``, 1,000 replicates).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import StratifiedGroupKFold

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.data.labelled import LabelledSet, labelled_sets  # noqa: E402
from ofa_embed.downstream.knn import knn_vote  # noqa: E402
from ofa_embed.downstream.metrics import evaluate  # noqa: E402
from ofa_embed.downstream.probe import fit_probe  # noqa: E402
from ofa_embed.model.checkpoint import LoadedModel, load_checkpoint, random_init  # noqa: E402
from ofa_embed.model.ofa import OFANet  # noqa: E402
from ofa_embed.model.weights import PACKAGED_WEIGHTS  # noqa: E402
from ofa_embed.sensors.registry import get_modality  # noqa: E402

FOLDS = 5
K = 5
METRIC = "balanced_accuracy"


def present_bands(labelled: LabelledSet) -> np.ndarray:
    """Indices of the chip channels the source has (the others are zero-filled)."""
    names = get_modality(labelled.modality).band_names
    return np.array([i for i, n in enumerate(names) if n not in labelled.missing])


def model_features(model: OFANet, labelled: LabelledSet, batch: int = 128) -> np.ndarray | None:
    """``(N, D)`` embeddings of the chips, float32 forward pass; None if the model cannot embed the modality."""
    if labelled.modality not in model.modalities:
        return None
    out = []
    with torch.inference_mode():
        for start in range(0, len(labelled.chips), batch):
            chips = torch.from_numpy(np.ascontiguousarray(labelled.chips[start : start + batch]))
            out.append(model(chips, labelled.modality).numpy())
    return np.concatenate(out)


def band_stats(labelled: LabelledSet) -> np.ndarray:
    """``(N, 2 C)`` per-band mean and standard deviation of the bands the source has."""
    chips = labelled.chips[:, present_bands(labelled)]
    return np.concatenate([chips.mean(axis=(2, 3)), chips.std(axis=(2, 3))], axis=1)


def rcf(labelled: LabelledSet, dim: int, seed: int = 0, batch: int = 256) -> np.ndarray:
    """``(N, dim)`` random convolutional features (Gaussian 3 x 3 filters, bias -1) of the present bands."""
    chips = labelled.chips[:, present_bands(labelled)]
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(dim // 2, chips.shape[1], 3, 3, generator=generator)
    out = []
    with torch.inference_mode():
        for start in range(0, len(chips), batch):
            response = F.conv2d(torch.from_numpy(np.ascontiguousarray(chips[start : start + batch])), weight)
            pooled = [F.relu(response - 1.0).mean(dim=(2, 3)), F.relu(-response - 1.0).mean(dim=(2, 3))]
            out.append(torch.cat(pooled, dim=1).numpy())
    return np.concatenate(out)


def cross_validate(features: np.ndarray, labelled: LabelledSet) -> dict[str, tuple[float, float, float]]:
    """``{"probe": (score, low, high), "knn": ...}``: out-of-fold balanced accuracy and its 95 % interval."""
    labels, groups = labelled.labels, labelled.groups
    classes = sorted(set(labels.tolist()))
    folds = StratifiedGroupKFold(FOLDS, shuffle=True, random_state=0).split(features, labels, groups)
    predicted = {"probe": np.empty(len(labels), dtype=object), "knn": np.empty(len(labels), dtype=object)}
    for train, test in folds:
        mean, std = features[train].mean(0), features[train].std(0) + 1e-8
        z = (features - mean) / std
        probe = fit_probe(z[train], labels[train], "classify", groups=groups[train], seed=0)
        predicted["probe"][test] = probe.predict(z[test])
        unit = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        similarity = unit[test] @ unit[train].T
        neighbours = np.argsort(-similarity, axis=1)[:, :K]
        vote = knn_vote(np.take_along_axis(similarity, neighbours, 1), neighbours, labels[train], "classify", classes)
        predicted["knn"][test] = vote.predicted
    scores = {}
    for method, values in predicted.items():
        result = evaluate("classify", labels, values.astype(labels.dtype), classes=classes, groups=groups, seed=0)
        estimate = result.metrics[METRIC]
        scores[method] = (estimate.value, estimate.low, estimate.high)
    return scores


def load_models(specs: list[str]) -> dict[str, LoadedModel]:
    """``name=path`` (or a bare path) per checkpoint; the packaged checkpoint when none is given."""
    loaded = {}
    for spec in specs or [f"packaged={PACKAGED_WEIGHTS}"]:
        name, _, path = spec.rpartition("=")
        loaded[name or Path(path).parent.name] = load_checkpoint(path)
    return loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", action="append", default=[], help="NAME=CHECKPOINT (repeatable)")
    parser.add_argument("--sets", nargs="*", help="labelled set names (default: all reachable)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.manual_seed(0)
    models = load_models(args.weights)
    first = next(iter(models.values()))
    baseline = random_init(first.model.config)
    print(f"threads {torch.get_num_threads()}; " + "; ".join(f"{n}: weights {m.weights_hash} ({m.source})"
                                                            for n, m in models.items())
          + f"; random init: {baseline.weights_hash}")
    results: dict[str, dict[str, dict[str, tuple[float, float, float]]]] = {}
    for labelled in labelled_sets(args.sets):
        started = time.perf_counter()
        counts = dict(zip(*np.unique(labelled.labels, return_counts=True), strict=True))
        print(f"\n{labelled.name}: {len(labelled.labels)} chips of {labelled.chips.shape[-1]} px, "
              f"{len(np.unique(labelled.groups))} groups, {labelled.modality}, classes {counts}")
        print(f"  {labelled.description}")
        dim = first.model.embed_dim
        features = {name: model_features(m.model, labelled) for name, m in models.items()}
        features |= {"random init": model_features(baseline.model, labelled), "band stats": band_stats(labelled),
                     "RCF": rcf(labelled, dim)}
        results[labelled.name] = {}
        print(f"  {'features':16} {'dim':>4}  {'linear probe':>22}  {'kNN-5':>22}")
        for name, matrix in features.items():
            if matrix is None:
                print(f"  {name:16} {'':>4}  no patch embedding for {labelled.modality}")
                continue
            scores = cross_validate(matrix, labelled)
            results[labelled.name][name] = scores
            cells = "  ".join(f"{v:6.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in (scores["probe"], scores["knn"]))
            print(f"  {name:16} {matrix.shape[1]:>4}  {cells}")
        print(f"  ({time.perf_counter() - started:.0f} s)")
    print(f"\nbalanced accuracy, out-of-fold over {FOLDS} grouped folds; [95 % bootstrap interval over groups]")
    columns = list(dict.fromkeys(name for by_features in results.values() for name in by_features))
    summary = ["| set | " + " | ".join(f"{n} probe / kNN" for n in columns) + " |",
               "|---|" + "---|" * len(columns)]
    for set_name, by_features in results.items():
        cells = [f"{by_features[n]['probe'][0]:.3f} / {by_features[n]['knn'][0]:.3f}" if n in by_features else "n/a"
                 for n in columns]
        summary.append(f"| {set_name} | " + " | ".join(cells) + " |")
    print("\n".join(summary))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
