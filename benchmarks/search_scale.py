"""IVF-PQ (what ``auto`` picks above 2M vectors) at 1M, 2M and 4M vectors, and a fitted extrapolation to 10M.

    python benchmarks/search_scale.py [--rows 1000000 2000000 4000000] [--queries 100] [--target 10000000]

The data are those of ``benchmarks/search.py`` (its recipe, generated once per size into the fetch cache):
real tile embeddings of the shipped checkpoint, copied with Gaussian noise, 20 GeoParquet files, held-out
queries, the 1 % filter. For each size: ``indexes.build(store, kind="ivfpq")`` in a child process (build
seconds, peak RSS of the build, index file size), then in this process the unfiltered single-query p50,
recall@10 against numpy's exact top-10, and a one-off query under a new filter (resolution + search).

The 10M figures are an extrapolation, not a run: each quantity is fitted as ``c * N^p`` through the
measured sizes (least squares in log-log), and the fitted ``p`` is printed beside the prediction so the
reader sees the trend it rests on. Recall is not extrapolated (it is not a power law); its trend is
printed as measured.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.search import (  # noqa: E402
    NOISE_GAPS,
    K,
    build_in_child,
    exact_top_k,
    filter_for,
    held_out_queries,
    load_store,
    measure,
    noise_scale,
    numpy_allowed,
    plan_scenes,
    print_table,
    real_neighbour_gap,
    real_sources,
    side_of,
    synthetic_store,
)
from ofa_embed.model.weights import load_weights  # noqa: E402


def fit_power(sizes: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """``(c, p)`` of ``value = c * size^p``, least squares in log-log."""
    p, log_c = np.polyfit(np.log(sizes), np.log(values), 1)
    return float(np.exp(log_c)), float(p)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 2_000_000, 4_000_000])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--target", type=int, default=10_000_000, help="size to extrapolate to")
    args = parser.parse_args()
    logging.getLogger("ofa_embed.embedding.extract").setLevel(logging.ERROR)
    weights_hash = load_weights().weights_hash
    sources = real_sources(weights_hash, False)
    gap, spread = real_neighbour_gap(sources)
    scale = noise_scale(sources, NOISE_GAPS * gap / spread)
    rows, measured = [], []
    for size in args.rows:
        plans = plan_scenes(sources, size)
        store, generated_s = synthetic_store(plans, size, scale, weights_hash, False)
        queries, _ = held_out_queries(plans, side_of(size), args.queries, scale)
        data = load_store(store)
        truth = exact_top_k(data.vectors, queries)
        search_filter = filter_for(size)
        allowed = numpy_allowed(data.columns, search_filter)
        filtered_truth = allowed[exact_top_k(data.vectors[allowed], queries)]
        del data
        built, index = build_in_child(store, "ivfpq")
        searched = measure(index, queries, truth, search_filter, filtered_truth)
        del index
        unfiltered = float(np.median(searched.unfiltered_ms))
        new_filter = float(np.median(searched.new_filter_ms))
        measured.append((size, built.seconds, built.peak_gib, built.disk_mib, unfiltered, new_filter))
        rows.append([f"{size:,}", f"nlist {built.config['nlist']} m {built.config['m']}", f"{built.seconds:.0f}",
                     f"{built.peak_gib:.2f}", f"{built.disk_mib:.0f}", f"{unfiltered:.2f}",
                     f"{searched.unfiltered_recall:.3f}", f"{new_filter:.2f} ({new_filter / unfiltered:.1f}x)",
                     f"{len(allowed):,}", "generated" if generated_s else "cached"])
        print(f"  ... {size:,} done", flush=True)
    print_table(f"IVF-PQ by store size ({args.queries} queries, k = {K}, single-query calls, p50)",
                ["vectors", "config", "build s", "build peak RSS GiB", "index MiB", "unfiltered ms", "recall@10",
                 "new filter each ms", "allowed rows", "data"], rows)
    if len(measured) < 2:
        return
    table = np.array(measured)
    sizes = table[:, 0]
    predicted = []
    for column, name, unit in ((1, "build", "s"), (2, "build peak RSS", "GiB"), (3, "index file", "MiB"),
                               (4, "unfiltered p50", "ms"), (5, "new filter each p50", "ms")):
        c, p = fit_power(sizes, table[:, column])
        predicted.append([name, f"{c * args.target ** p:,.2f} {unit}", f"{p:.2f}",
                          ", ".join(f"{v:,.2f}" for v in table[:, column])])
    print_table(f"extrapolated to {args.target:,} vectors (fit c * N^p through {len(sizes)} sizes; not a run)",
                ["quantity", "predicted", "exponent p", "measured"], predicted)


if __name__ == "__main__":
    main()
