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

Classification protocol: 5 outer folds of whole groups (``StratifiedGroupKFold``, seed 0); in each, the features are
standardised on the training side; **linear probe**: logistic regression with C chosen by grouped inner
cross-validation (``ofa_embed.downstream.probe.fit_probe``, what ``ofa-embed probe`` runs); **kNN-5**:
majority vote of the 5 training chips of highest cosine similarity (``knn_vote``, what ``ofa-embed
knn`` runs). Out-of-fold predictions of all folds are scored together: balanced accuracy with a 95 %
bootstrap interval over groups (``ofa_embed.downstream.metrics.evaluate``, 1,000 replicates).

Same-place retrieval (what ``search --like`` does, no labels): held-out scenes
(``labelled.retrieval_scenes``) cut into 64 px tiles are the database; each query is its own tile
cropped to a random 48 px window, flipped, with a per-band gain (sigma 5 %) and noise (sigma 0.05 in
normalised units), seed 1; recall@1 by cosine over the raw features (as search ranks them), with a 95 %
bootstrap interval over queries.

``--pooling mean_norm`` adds every checkpoint read out with the other pooling (same weights).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import StratifiedGroupKFold

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.data.labelled import LabelledSet, RetrievalScene, labelled_sets, retrieval_scenes  # noqa: E402
from ofa_embed.downstream.knn import knn_vote  # noqa: E402
from ofa_embed.downstream.metrics import evaluate  # noqa: E402
from ofa_embed.downstream.probe import fit_probe  # noqa: E402
from ofa_embed.model.checkpoint import LoadedModel, load_checkpoint, random_init, read_out_as  # noqa: E402
from ofa_embed.model.config import POOLINGS  # noqa: E402
from ofa_embed.model.ofa import OFANet  # noqa: E402
from ofa_embed.model.weights import PACKAGED_WEIGHTS  # noqa: E402
from ofa_embed.sensors.registry import get_modality  # noqa: E402

FOLDS = 5
K = 5
METRIC = "balanced_accuracy"


def present_bands(labelled: LabelledSet | RetrievalScene) -> np.ndarray:
    """Indices of the chip channels the source has (the others are zero-filled)."""
    names = get_modality(labelled.modality).band_names
    return np.array([i for i, n in enumerate(names) if n not in labelled.missing])


def model_features(model: OFANet, modality: str, chips: np.ndarray, batch: int = 128) -> np.ndarray | None:
    """``(N, D)`` embeddings of the chips, float32 forward pass; None if the model cannot embed the modality."""
    if modality not in model.modalities:
        return None
    out = []
    with torch.inference_mode():
        for start in range(0, len(chips), batch):
            out.append(model(torch.from_numpy(np.ascontiguousarray(chips[start : start + batch])), modality).numpy())
    return np.concatenate(out)


def features_of(models: dict[str, LoadedModel], source: LabelledSet | RetrievalScene,
                chips: np.ndarray) -> dict[str, np.ndarray | None]:
    """Every compared feature of ``chips``: the checkpoints, then the three baselines."""
    features = {name: model_features(m.model, source.modality, chips) for name, m in models.items()}
    dim = next(iter(models.values())).model.embedding_dim
    return features | {"band stats": band_stats(source, chips), "RCF": rcf(source, chips, dim)}


def scene_tiles(data: np.ndarray, size: int = 64) -> np.ndarray:
    """Non-overlapping ``size`` px tiles fully inside ``(C, H, W)``: ``(N, C, size, size)``."""
    rows, cols = data.shape[1] // size, data.shape[2] // size
    cut = data[:, : rows * size, : cols * size].reshape(data.shape[0], rows, size, cols, size)
    return np.ascontiguousarray(cut.transpose(1, 3, 0, 2, 4).reshape(rows * cols, data.shape[0], size, size))


def augmented_queries(tiles: np.ndarray, rng: np.random.Generator, crop: int = 48) -> np.ndarray:
    """A random ``crop`` px window of each tile, flipped at random, with a 5 % per-band gain and noise 0.05."""
    out = np.empty((len(tiles), tiles.shape[1], crop, crop), np.float32)
    for i, tile in enumerate(tiles):
        r, c = rng.integers(0, tile.shape[1] - crop + 1, 2)
        view = tile[:, r : r + crop, c : c + crop]
        view = view[:, :, ::-1] if rng.random() < 0.5 else view
        view = view[:, ::-1] if rng.random() < 0.5 else view
        out[i] = view * rng.normal(1.0, 0.05, (tile.shape[0], 1, 1)) + rng.normal(0, 0.05, view.shape)
    return out


def recall_at_1(database: np.ndarray, queries: np.ndarray, n_boot: int = 1000) -> tuple[float, float, float]:
    """Fraction of queries whose most similar database row (cosine) is their own tile, with a 95 % interval."""
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731
    hits = (np.argmax(unit(queries) @ unit(database).T, axis=1) == np.arange(len(queries))).astype(float)
    rng = np.random.default_rng(0)
    replicates = hits[rng.integers(0, len(hits), (n_boot, len(hits)))].mean(axis=1)
    return float(hits.mean()), float(np.percentile(replicates, 2.5)), float(np.percentile(replicates, 97.5))


def band_stats(labelled: LabelledSet | RetrievalScene, chips: np.ndarray) -> np.ndarray:
    """``(N, 2 C)`` per-band mean and standard deviation of the bands the source has."""
    chips = chips[:, present_bands(labelled)]
    return np.concatenate([chips.mean(axis=(2, 3)), chips.std(axis=(2, 3))], axis=1)


def rcf(labelled: LabelledSet | RetrievalScene, chips: np.ndarray, dim: int, seed: int = 0, batch: int = 256) -> np.ndarray:
    """``(N, dim)`` random convolutional features (Gaussian 3 x 3 filters, bias -1) of the present bands."""
    return random_conv_features(chips[:, present_bands(labelled)], dim, seed, batch)


def random_conv_features(chips: np.ndarray, dim: int, seed: int = 0, batch: int = 256) -> np.ndarray:
    """``(N, dim)`` features of ``(N, C, H, W)`` chips: ``dim / 2`` seeded Gaussian 3 x 3 filters, bias -1, both
    signs, ReLU, mean pooled; ``batch`` chips convolved at once."""
    weight = torch.randn(dim // 2, chips.shape[1], 3, 3, generator=torch.Generator().manual_seed(seed))
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


def load_models(specs: list[str], poolings: list[str]) -> dict[str, LoadedModel]:
    """``name=path`` (or a bare path) per checkpoint; the packaged checkpoint when none is given. Each
    extra pooling adds a variant of every checkpoint: the same weights read out another way."""
    loaded = {}
    for spec in specs or [f"packaged={PACKAGED_WEIGHTS}"]:
        name, _, path = spec.rpartition("=")
        name = name or Path(path).parent.name
        loaded[name] = load_checkpoint(path)
        for pooling in poolings:
            loaded[f"{name} ({pooling})"] = dataclasses.replace(loaded[name], model=read_out_as(loaded[name].model, pooling))
    return loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", action="append", default=[], help="NAME=CHECKPOINT (repeatable)")
    parser.add_argument("--pooling", action="append", default=[], choices=list(POOLINGS),
                        help="also read every checkpoint out with this pooling (repeatable)")
    parser.add_argument("--sets", nargs="*", help="labelled set names (default: all reachable)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.manual_seed(0)
    # folds that miss a rare class and lbfgs stopping at max_iter on tiny C are scored as they are
    warnings.simplefilter("ignore", UserWarning)
    models = load_models(args.weights, args.pooling)
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
        features = features_of(models | {"random init": baseline}, labelled, labelled.chips)
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
    retrieval: dict[str, dict[str, tuple[float, float, float]]] = {}
    for scene in retrieval_scenes():
        tiles = scene_tiles(scene.data)
        queries = augmented_queries(tiles, np.random.default_rng(1))
        database = features_of(models | {"random init": baseline}, scene, tiles)
        asked = features_of(models | {"random init": baseline}, scene, queries)
        print(f"\nretrieval {scene.name}: {len(tiles)} tiles of 64 px, {scene.modality}; recall@1 of augmented 48 px crops")
        retrieval[scene.name] = {}
        for name, matrix in database.items():
            if matrix is None:
                continue
            retrieval[scene.name][name] = recall_at_1(matrix, asked[name])
            value, low, high = retrieval[scene.name][name]
            print(f"  {name:16} {value:6.3f} [{low:.3f}, {high:.3f}]")
    print(f"\nbalanced accuracy, out-of-fold over {FOLDS} grouped folds; [95 % bootstrap interval over groups]")
    columns = list(dict.fromkeys(name for by_features in results.values() for name in by_features))
    summary = ["| set | " + " | ".join(f"{n} probe / kNN" for n in columns) + " |",
               "|---|" + "---|" * len(columns)]
    for set_name, by_features in results.items():
        cells = [f"{by_features[n]['probe'][0]:.3f} / {by_features[n]['knn'][0]:.3f}" if n in by_features else "n/a"
                 for n in columns]
        summary.append(f"| {set_name} | " + " | ".join(cells) + " |")
    means = [f"{np.mean([r[n]['probe'][0] for r in results.values() if n in r]):.3f} / "
             f"{np.mean([r[n]['knn'][0] for r in results.values() if n in r]):.3f}" for n in columns]
    summary.append("| mean over sets | " + " | ".join(means) + " |")
    for scene_name, by_features in retrieval.items():
        summary.append(f"| retrieval {scene_name} (recall@1) | "
                       + " | ".join(f"{by_features[n][0]:.3f}" if n in by_features else "n/a" for n in columns) + " |")
    print("\n".join(summary))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"classification": results, "retrieval": retrieval}, indent=1))


if __name__ == "__main__":
    main()
