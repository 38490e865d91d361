"""Backbone harness (issue 30, section 1): embedding candidates on scene-level labelled chip sets, the way
users label, with few labels and with all of them.

    python benchmarks/harness.py                     # full run: every set found, every candidate
    python benchmarks/harness.py --quick             # fewer draws and folds (a few minutes on 2 cores)
    python benchmarks/harness.py --sets eurosat_ms aid --json .cache/harness.json
    python benchmarks/harness.py --weights run=.cache/pretrain/x/encoder.safetensors   # a candidate checkpoint
    python benchmarks/harness.py --with-quality-sets # also the pixel-label sets of benchmarks/quality.py

Sets: ``benchmarks/data/scene_sets.py`` (EuroSAT-MS held out by 10 km blocks, AID split by image, EnMAP
Potsdam held out by source tile; a set whose folder is missing is skipped with the reason).

Candidates, each embedding the same normalised chips:

- ``checkpoint``: the default model as the library loads it (``load_run_model(None, "ofa_tiny", ...)``: the
  packaged ``ofa_embed/data/ofa_tiny.safetensors``), embedded by the library's forward pass
  (``ofa_embed.embedding.forward.embed``) with ``precision="fp32"`` (``auto`` would pick bf16 on CPUs that
  multiply it natively and move the figures); chips whose side is not a multiple of the patch are
  zero-padded as ``extract_chips`` pads them. On EuroSAT-MS the embeddings are checked against
  ``ofa_embed.extract_chips`` on the chip folder (same chips, same vectors).
- ``learned part``: the embedding without explicitly computed statistics. Today's embedding is all learned,
  so this column equals ``checkpoint``; it is there for checkpoints that concatenate statistics.
- ``random init``: the same architecture and readout (pooling) as the checkpoint, with the library's seeded
  random initialisation (``random_init``).
- ``--pooling P``: every learned candidate (checkpoint, ``--weights``, random init) read out by pooling
  ``P`` (``ofa_embed/model/pooling.py``) instead of its own: the same weights, another readout.
- ``band stats``: per-band mean and standard deviation of the chip's normalised values (bands the source has).
- ``RCF``: random convolutional features (Rolf et al. 2021; TorchGeo's ``RCF`` in Gaussian mode, no
  patches from the data): 512 filters of 3 x 3 over the normalised bands the source has, weights N(0, 1)
  (seed 0), bias -1, ``[mean relu(conv - 1), mean relu(-conv - 1)]`` over the chip: 1,024 numbers.

Protocol (``benchmarks/data/few_label.py``): for 5, 20 and 100 labels per class, each draw (seeded) holds
out about a third of the groups (stratified grouped folds), then draws that many chips of every class
from the other side; a regime runs only where every class has that many on the training side. 10 draws
for 5 and 20, 5 for 100 (``--quick``: 3 and 2). Accuracy on the held-out side, mean over draws with a 95 %
Student-t interval over draws. "all": out-of-fold predictions of 5 grouped stratified folds (``--quick``:
3), accuracy with a 95 % bootstrap interval over test chips (whole groups where chips share one; 1,000
replicates). Every candidate sees the same draws. Linear probe: ``fit_probe`` (what ``ofa-embed probe``
runs: logistic regression, C by inner grouped CV), on features standardised on the training side;
kNN-5: majority vote of the 5 most cosine-similar training chips (``knn_vote``, what ``ofa-embed knn``
runs) on the same standardised features.

Same-place retrieval (``benchmarks/quality.py``'s protocol on each set's own chips): every chip is a
database row; its query is a random crop of 3/4 of its side (rounded down to the patch), flipped at
random, with a 5 % per-band gain and noise 0.05; recall@1 by cosine over raw features with a 95 %
bootstrap interval over queries. Sets whose chips are one patch wide have no crop to query with.

A difference is called resolved where the two 95 % intervals do not overlap.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.data.few_label import all_label_folds, few_label_split, mean_interval, overlap  # noqa: E402
from benchmarks.data.scene_sets import SHARED, ChipSet, scene_sets  # noqa: E402
from benchmarks.quality import augmented_queries, random_conv_features, recall_at_1  # noqa: E402
from ofa_embed.downstream.knn import knn_vote  # noqa: E402
from ofa_embed.downstream.metrics import evaluate  # noqa: E402
from ofa_embed.downstream.probe import fit_probe  # noqa: E402
from ofa_embed.embedding.forward import embed, model_input, native_cpu_bf16  # noqa: E402
from ofa_embed.embedding.pipeline import load_run_model  # noqa: E402
from ofa_embed.model.checkpoint import LoadedModel, load_checkpoint, random_init, read_out_as  # noqa: E402
from ofa_embed.model.pooling import POOLINGS  # noqa: E402
from ofa_embed.sensors.registry import get_modality  # noqa: E402

PRECISION = "fp32"
MODEL = "ofa_tiny"
K = 5
RCF_FEATURES = 1024
REGIMES: tuple[int | None, ...] = (5, 20, 100, None)
FULL = {"draws": {5: 10, 20: 10, 100: 5}, "folds": 5}
QUICK = {"draws": {5: 3, 20: 3, 100: 2}, "folds": 3}
Score = tuple[float, float, float]  # value, low, high


def say(message: str) -> None:
    print(message, flush=True)


# --- features --------------------------------------------------------------------------------------------
@dataclass
class Candidate:
    name: str
    features: Callable[[ChipSet, np.ndarray], np.ndarray | None]
    same_as: str | None = None  # a column that is this one's numbers (the learned part of an all-learned embedding)
    note: str = ""


def present(chip_set: ChipSet) -> np.ndarray:
    names = get_modality(chip_set.modality).band_names
    return np.array([i for i, n in enumerate(names) if n not in chip_set.missing])


def model_features(loaded: LoadedModel, chip_set: ChipSet, chips: np.ndarray, batch: int = 64) -> np.ndarray | None:
    """The library's forward pass (fp32) on the chips, zero-padded to a multiple of the patch as
    ``extract_chips`` pads them; None where the model has no input for the modality."""
    model = loaded.model
    if chip_set.modality not in model.modalities:
        return None
    fed = model_input(model, chip_set.modality, chip_set.missing)
    patch = model.patch_size
    height, width = chips.shape[2:]
    padded_h, padded_w = -(-height // patch) * patch, -(-width // patch) * patch
    out = []
    for start in range(0, len(chips), batch):
        part = chips[start : start + batch]
        if (padded_h, padded_w) != (height, width):
            part = np.pad(part, ((0, 0), (0, 0), (0, padded_h - height), (0, padded_w - width)))
        out.append(embed(model, np.ascontiguousarray(part), fed, torch.device("cpu"), precision=PRECISION))
    return np.concatenate(out)


def band_stats(chip_set: ChipSet, chips: np.ndarray) -> np.ndarray:
    chips = chips[:, present(chip_set)]
    return np.concatenate([chips.mean(axis=(2, 3)), chips.std(axis=(2, 3))], axis=1)


def rcf(chip_set: ChipSet, chips: np.ndarray, dim: int = RCF_FEATURES, seed: int = 0) -> np.ndarray:
    """Gaussian random 3 x 3 filters (dim / 2 of them), bias -1, both signs, mean pooled: ``(N, dim)``."""
    chips = chips[:, present(chip_set)]
    batch = max(1, int(5e7 // (dim // 2 * chips.shape[2] * chips.shape[3])))  # about 200 MB of responses
    return random_conv_features(chips, dim, seed, batch)


def read_out(loaded: LoadedModel, pooling: str | None) -> LoadedModel:
    """``loaded``'s weights in a backbone whose readout is ``pooling`` (None: its own)."""
    if pooling is None or pooling == loaded.model.config.pooling:
        return loaded
    return LoadedModel(read_out_as(loaded.model, pooling), loaded.weights_hash, f"{loaded.source}, pooling {pooling}",
                       loaded.pretrained)


def candidates(weights: list[str], pooling: str | None = None, with_rcf: bool = True) -> tuple[list[Candidate], dict[str, str]]:
    """The compared features and a line per model (weights hash, source)."""
    run = load_run_model(None, MODEL, None, "cpu", PRECISION)
    models: dict[str, LoadedModel] = {"checkpoint": read_out(run.loaded, pooling)}
    for spec in weights:
        name, _, path = spec.rpartition("=")
        models[name or Path(path).parent.name] = read_out(load_checkpoint(path), pooling)
    shipped = models["checkpoint"].model.config
    models["random init"] = read_out(random_init(MODEL), pooling or shipped.pooling)
    listed = []
    for name, loaded in models.items():
        listed.append(Candidate(name, lambda s, c, m=loaded: model_features(m, s, c)))
        if name == "checkpoint":
            listed.append(Candidate("learned part", listed[-1].features, same_as="checkpoint",
                                    note="the embedding is all learned (no statistics concatenated): = checkpoint"))
    listed += [Candidate("band stats", band_stats)] + ([Candidate("RCF", rcf)] if with_rcf else [])
    facts = {name: f"{m.weights_hash} ({m.source})" for name, m in models.items()}
    return listed, facts


def check_library_chips(chip_set: ChipSet, features: np.ndarray) -> str:
    """EuroSAT-MS embedded by ``ofa_embed.extract_chips`` against the harness's own forward pass."""
    import pyarrow.parquet as pq

    import ofa_embed

    folder = SHARED / "geotorchai/eurosat_ms"
    with tempfile.TemporaryDirectory() as store:
        report = ofa_embed.extract_chips(folder, Path(store) / "chips", precision=PRECISION)
        tables = [pq.read_table(path) for path in sorted((Path(store) / "chips").glob("chips-*.parquet"))]
    paths = [p for t in tables for p in t.column("path").to_pylist()]
    stored = np.concatenate([np.stack(t.column("embedding").to_numpy(zero_copy_only=False)) for t in tables])
    order = np.argsort(paths)  # the harness reads the chips in sorted path order
    difference = float(np.abs(stored[order] - features).max())
    if difference > 1e-4:
        raise SystemExit(f"extract_chips and the harness disagree on {folder}: max difference {difference}")
    return (f"extract_chips({folder.name}/, precision='fp32'): {report.chips} chips, weights {report.weights_hash}, "
            f"same vectors as the harness (max difference {difference:.1e})")


# --- evaluation ------------------------------------------------------------------------------------------
def standardised(features: np.ndarray, train: np.ndarray) -> np.ndarray:
    mean, std = features[train].mean(0), features[train].std(0) + 1e-8
    return (features - mean) / std


def predict(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, train: np.ndarray, test: np.ndarray,
            seed: int) -> dict[str, np.ndarray]:
    """Linear probe and kNN-5 predictions of the ``test`` chips, fitted on the ``train`` chips."""
    z = standardised(features, train)
    probe = fit_probe(z[train], labels[train], "classify", groups=groups[train], seed=seed)
    unit = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    similarity = unit[test] @ unit[train].T
    neighbours = np.argsort(-similarity, axis=1)[:, :K]
    classes = sorted(set(labels[train].tolist()))
    vote = knn_vote(np.take_along_axis(similarity, neighbours, 1), neighbours, labels[train], "classify", classes)
    return {"probe": probe.predict(z[test]).astype(labels.dtype), "knn": vote.predicted.astype(labels.dtype)}


def regime_splits(chip_set: ChipSet, n: int | None, settings: dict) -> list[tuple[np.ndarray, np.ndarray]] | str:
    """The draws of one regime, or why it does not run."""
    if n is None:
        return all_label_folds(chip_set.labels, chip_set.groups, settings["folds"], seed=0)
    draws = [few_label_split(chip_set.labels, chip_set.groups, n, seed) for seed in range(settings["draws"][n])]
    if any(d is None for d in draws):
        return f"fewer than {n} chips of some class on the training side"
    return [d for d in draws if d is not None]


def score_regime(features: np.ndarray, chip_set: ChipSet, n: int | None,
                 splits: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Score]:
    labels, groups = chip_set.labels, chip_set.groups
    if n is None:
        predicted = {"probe": np.empty(len(labels), labels.dtype), "knn": np.empty(len(labels), labels.dtype)}
        for fold, (train, test) in enumerate(splits):
            for method, values in predict(features, labels, groups, train, test, seed=fold).items():
                predicted[method][test] = values
        out = {}
        for method, values in predicted.items():
            estimate = evaluate("classify", labels, values, classes=sorted(set(labels.tolist())), groups=groups,
                                seed=0).metrics["accuracy"]
            out[method] = (estimate.value, estimate.low, estimate.high)
        return out
    accuracy: dict[str, list[float]] = {"probe": [], "knn": []}
    for seed, (train, test) in enumerate(splits):
        for method, values in predict(features, labels, groups, train, test, seed=seed).items():
            accuracy[method].append(float((values == labels[test]).mean()))
    return {method: mean_interval(values) for method, values in accuracy.items()}


def retrieval(chip_set: ChipSet, listed: list[Candidate], patch: int,
              features: dict[str, np.ndarray]) -> dict[str, Score] | str:
    side = min(chip_set.chips.shape[2:])
    crop = (side * 3 // 4) // patch * patch
    if crop < patch:
        return f"chips of {side} px: a 3/4 crop is under one {patch} px patch"
    queries = augmented_queries(chip_set.chips, np.random.default_rng(1), crop)
    out = {}
    for candidate in listed:
        if candidate.same_as or candidate.name not in features:
            continue
        asked = candidate.features(chip_set, queries)
        assert asked is not None
        out[candidate.name] = recall_at_1(features[candidate.name], asked)
    return out


# --- output ----------------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cell(score: Score | None) -> str:
    if score is None:
        return "n/a"
    value, low, high = score
    return f"{value:.3f} [{low:.2f}, {high:.2f}]"


def regime_name(n: int | None) -> str:
    return "all" if n is None else f"{n}/class"


def markdown(results: dict, retrievals: dict, columns: list[str]) -> list[str]:
    lines = ["| set | labels | method | " + " | ".join(columns) + " |", "|---|---|---|" + "---|" * len(columns)]
    for set_name, regimes in results.items():
        for regime, by_method in regimes.items():
            for method, by_candidate in by_method.items():
                lines.append(f"| {set_name} | {regime} | {'linear probe' if method == 'probe' else 'kNN-5'} | "
                             + " | ".join(cell(by_candidate.get(c)) for c in columns) + " |")
        if set_name in retrievals:
            scores = retrievals[set_name]
            lines.append(f"| {set_name} | none | retrieval recall@1 | "
                         + " | ".join(cell(scores.get(c)) for c in columns) + " |")
    return lines


def resolved(results: dict, retrievals: dict, reference: str, others: list[str]) -> list[str]:
    """Every comparison of ``reference`` with another candidate whose intervals do not overlap."""
    lines = []
    rows = [(s, r, m, by) for s, regimes in results.items() for r, methods in regimes.items() for m, by in methods.items()]
    rows += [(s, "none", "retrieval", by) for s, by in retrievals.items() if isinstance(by, dict)]
    for set_name, regime, method, by in rows:
        if reference not in by:
            continue
        for other in others:
            if other in by and not overlap(by[reference], by[other]):
                word = "above" if by[reference][0] > by[other][0] else "below"
                lines.append(f"{set_name} {regime} {method}: {reference} {by[reference][0]:.3f} {word} {other} "
                             f"{by[other][0]:.3f}")
    return lines


def quality_sets() -> list[ChipSet]:
    """The pixel-label sets of ``benchmarks/quality.py`` as chip sets (their own spatial groups)."""
    from benchmarks.data.labelled import labelled_sets

    return [ChipSet(s.name, s.description, s.modality, s.missing, s.chips, s.labels, s.groups,
                    "spatial: the set's own groups (benchmarks/data/labelled.py)") for s in labelled_sets()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="*", help="scene set names (default: all found)")
    parser.add_argument("--quick", action="store_true", help="3 draws (2 for 100/class), 3 folds for 'all'")
    parser.add_argument("--weights", action="append", default=[], help="NAME=CHECKPOINT: another candidate (repeatable)")
    parser.add_argument("--with-quality-sets", action="store_true", help="also benchmarks/quality.py's sets")
    parser.add_argument("--pooling", choices=POOLINGS, help="read every learned candidate out by this pooling")
    parser.add_argument("--no-rcf", action="store_true",
                        help="leave RCF out (on AID its 1,024 features and probes over 30 classes take most of the run)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    # the probes' small BLAS calls on two threads spin against each other (and against other work on a
    # shared machine): one BLAS thread fits the same probes up to 100 times faster
    threadpool_limits(limits=1, user_api="blas")
    started = time.perf_counter()
    command = "python " + " ".join(shlex.quote(a) for a in [f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    settings = QUICK if args.quick else FULL
    warnings.simplefilter("ignore", UserWarning)  # folds missing a rare class are scored as they are
    torch.manual_seed(0)
    machine = (f"{cpu_model()}, {torch.get_num_threads()} torch threads, bf16 native: "
               f"{'yes' if native_cpu_bf16() else 'no'} (run in {PRECISION} regardless), torch {torch.__version__}, "
               "1 BLAS thread for probes")
    say(f"$ {command}\nmachine: {machine}")
    listed, facts = candidates(args.weights, args.pooling, with_rcf=not args.no_rcf)
    for name, fact in facts.items():
        say(f"  {name}: weights {fact}")
    say("  RCF: left out (--no-rcf)" if args.no_rcf else
        "  RCF: 512 Gaussian 3 x 3 filters x 2 signs = 1024 features, seed 0 (no data patches)")
    sets = scene_sets(args.sets, on_skip=say)
    if args.with_quality_sets:
        sets += quality_sets()
    shipped = load_run_model(None, MODEL, None, "cpu", PRECISION).loaded.model
    patch_size = shipped.patch_size
    # extract_chips reads the packaged checkpoint out its own way: compared only when the harness does too
    read_otherwise = args.pooling not in (None, shipped.config.pooling)
    results: dict[str, dict[str, dict[str, dict[str, Score]]]] = {}
    retrievals: dict[str, dict[str, Score]] = {}
    described: dict[str, dict] = {}
    for chip_set in sets:
        set_started = time.perf_counter()
        names, counts = np.unique(chip_set.labels, return_counts=True)
        say(f"\n{chip_set.name}: {len(chip_set.labels)} chips of {chip_set.chips.shape[2]} x {chip_set.chips.shape[3]} px, "
            f"{chip_set.modality}, {len(names)} classes ({counts.min()}-{counts.max()} chips each), "
            f"{len(np.unique(chip_set.groups))} groups; split {chip_set.split}")
        for note in chip_set.notes:
            say(f"  {note}")
        features: dict[str, np.ndarray] = {}
        for candidate in listed:
            if candidate.same_as:
                if candidate.same_as in features:
                    features[candidate.name] = features[candidate.same_as]
                continue
            begun = time.perf_counter()
            matrix = candidate.features(chip_set, chip_set.chips)
            if matrix is None:
                say(f"  {candidate.name}: no input for {chip_set.modality}")
                continue
            features[candidate.name] = matrix
            say(f"  features {candidate.name}: {matrix.shape[1]} dims ({time.perf_counter() - begun:.1f} s)")
        if chip_set.name == "eurosat_ms" and "checkpoint" in features and not read_otherwise:
            say(f"  {check_library_chips(chip_set, features['checkpoint'])}")
        results[chip_set.name] = {}
        described[chip_set.name] = {"chips": int(len(chip_set.labels)), "size": list(chip_set.chips.shape[2:]),
                                    "modality": chip_set.modality,
                                    "classes": dict(zip(names.tolist(), counts.tolist(), strict=True)),
                                    "groups": int(len(np.unique(chip_set.groups))), "split": chip_set.split,
                                    "description": chip_set.description, "notes": chip_set.notes, "regimes": {}}
        for n in REGIMES:
            splits = regime_splits(chip_set, n, settings)
            if isinstance(splits, str):
                say(f"  {regime_name(n)}: skipped, {splits}")
                described[chip_set.name]["regimes"][regime_name(n)] = splits
                continue
            described[chip_set.name]["regimes"][regime_name(n)] = (
                f"{len(splits)} grouped folds, out-of-fold" if n is None else
                f"{len(splits)} draws, test {int(np.mean([len(t) for _, t in splits]))} chips on average")
            by_method: dict[str, dict[str, Score]] = {"probe": {}, "knn": {}}
            for candidate in listed:
                if candidate.name not in features:
                    continue
                begun = time.perf_counter()
                if candidate.same_as:
                    scores = {m: by_method[m][candidate.same_as] for m in by_method}
                else:
                    scores = score_regime(features[candidate.name], chip_set, n, splits)
                for method, score in scores.items():
                    by_method[method][candidate.name] = score
                say(f"  {regime_name(n):>9} {candidate.name:13} probe {cell(scores['probe'])}  kNN-5 {cell(scores['knn'])}"
                    f"  ({time.perf_counter() - begun:.0f} s)")
            results[chip_set.name][regime_name(n)] = by_method
        found = retrieval(chip_set, listed, patch_size, features)
        if isinstance(found, str):
            say(f"  retrieval: skipped, {found}")
        else:
            found["learned part"] = found["checkpoint"]
            retrievals[chip_set.name] = found
            say("  retrieval recall@1: " + "; ".join(f"{n} {cell(s)}" for n, s in found.items()))
        say(f"  ({time.perf_counter() - set_started:.0f} s)")
    columns = [c.name for c in listed]
    wall = time.perf_counter() - started
    say(f"\n$ {command}\nmachine: {machine}; wall time {wall / 60:.1f} min")
    say("accuracy; few labels: mean over draws [95 % t-interval over draws]; all: out-of-fold over grouped folds "
        "[95 % bootstrap interval over test chips, whole groups where chips share one]; "
        "retrieval: recall@1 [95 % bootstrap over queries]")
    table = markdown(results, retrievals, columns)
    say("\n".join(table))
    others = [c for c in columns if c not in ("checkpoint", "learned part")]
    found_lines = resolved(results, retrievals, "checkpoint", others)
    compared = (sum(len(by) for r in results.values() for by in r.values()) + len(retrievals)) * len(others)
    say(f"\nresolved (non-overlapping 95 % intervals), checkpoint against {', '.join(others)}: "
        f"{len(found_lines)} of {compared}")
    for line in found_lines:
        say(f"  {line}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "command": command, "machine": machine, "wall_seconds": wall, "precision": PRECISION,
            "weights": facts, "settings": {"draws": {str(k): v for k, v in settings["draws"].items()},
                                           "folds": settings["folds"]},
            "sets": described, "classification": results, "retrieval": retrievals, "resolved": found_lines,
        }, indent=1))
        say(f"wrote {args.json}")


if __name__ == "__main__":
    main()
