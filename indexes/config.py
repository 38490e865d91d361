"""Typed index configurations and the ``auto`` rule.

All indexes search by inner product on L2-normalised vectors, i.e. by cosine similarity.

Trade-offs:

- ``flat``: exact; memory 4·D bytes per vector; search time linear in the store size. Best up to
  about 100,000 vectors, and the reference the others are measured against.
- ``hnsw``: graph search; memory 4·D + 8·M bytes per vector; build time grows as n·log n and is the
  slowest to build; millisecond queries with recall@10 around 0.95-0.99 at ``ef_search`` 64-128.
- ``ivfpq``: inverted lists of product-quantised codes; memory ``m`` bytes per vector (plus the exact
  vectors for re-ranking when ``refine`` is on); training on a sample; the choice for millions of
  vectors. ``nprobe`` trades recall for speed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from ofa_embed.errors import ConfigError

Kind = Literal["flat", "hnsw", "ivfpq"]
KINDS: tuple[str, ...] = ("auto", "flat", "hnsw", "ivfpq")
METRIC = "cosine"  # inner product on L2-normalised vectors


@dataclass(frozen=True)
class FlatConfig:
    """Exact inner-product search over all vectors; no parameters."""

    kind: Literal["flat"] = "flat"


@dataclass(frozen=True)
class HNSWConfig:
    """``m``: graph degree (memory, recall); ``ef_construction``: build effort; ``ef_search``: query
    effort (recall vs latency), can be changed per search.
    """

    kind: Literal["hnsw"] = "hnsw"
    m: int = 32
    ef_construction: int = 64
    ef_search: int = 128


@dataclass(frozen=True)
class IVFPQConfig:
    """``nlist``: inverted lists (about 4·sqrt(n)); ``m``: sub-quantisers (bytes per code, must divide
    the dimension); ``nbits``: bits per sub-quantiser index; ``nprobe``: lists visited per query;
    ``train_size``: vectors sampled from the store to train (``auto``: at least 40 per list);
    ``refine``: re-rank ``refine_factor``·k candidates with the exact vectors (4·D more bytes per
    vector). PQ codes of 1 byte per 3 dimensions rank neighbours coarsely: at 1M vectors, re-ranking
    4·k candidates gave recall@10 0.52-0.75; see the README for the default's figures.
    """

    kind: Literal["ivfpq"] = "ivfpq"
    nlist: int = 1024
    m: int = 32
    nbits: int = 8
    nprobe: int = 32
    train_size: int = 100_000
    refine: bool = True
    refine_factor: int = 32


IndexConfig = FlatConfig | HNSWConfig | IVFPQConfig
_CLASSES: dict[str, type] = {"flat": FlatConfig, "hnsw": HNSWConfig, "ivfpq": IVFPQConfig}

FLAT_MAX_ROWS = 100_000
HNSW_MAX_ROWS = 2_000_000


def config_to_dict(config: IndexConfig) -> dict[str, Any]:
    """The fields of ``config`` as a plain dict, ``kind`` included (for JSON manifests)."""
    return asdict(config)


def config_from_dict(data: dict[str, Any]) -> IndexConfig:
    """The configuration of kind ``data["kind"]`` from a dict; keys the kind does not know are ignored.

    Raises:
        KeyError: ``kind`` missing or not one of flat, hnsw, ivfpq.
    """
    cls = _CLASSES[data["kind"]]
    return cls(**{k: v for k, v in data.items() if k in _field_names(cls)})


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _pq_subquantizers(dim: int) -> int:
    """Largest of 64, 48, 32, 24, 16, 8 that divides ``dim`` (1 byte codes per sub-vector)."""
    return next((m for m in (64, 48, 32, 24, 16, 8) if dim % m == 0), 1)


def make_config(kind: str, rows: int, dim: int, **overrides: Any) -> tuple[IndexConfig, str]:
    """The configuration for ``kind`` (``auto`` picks by store size) and why it was chosen.

    Raises:
        ConfigError: unknown kind or parameter.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
    reason = f"--kind {kind}"
    if kind == "auto":
        if rows <= FLAT_MAX_ROWS:
            kind, reason = "flat", f"auto: {rows:,} vectors <= {FLAT_MAX_ROWS:,}, exact search is fast enough"
        elif rows <= HNSW_MAX_ROWS:
            kind, reason = "hnsw", f"auto: {rows:,} vectors <= {HNSW_MAX_ROWS:,}, HNSW graph fits in memory"
        else:
            kind, reason = "ivfpq", f"auto: {rows:,} vectors > {HNSW_MAX_ROWS:,}, compressed IVF-PQ"
    defaults: dict[str, Any] = {}
    if kind == "ivfpq":
        nlist = max(16, min(65_536, 2 ** round(math.log2(4 * math.sqrt(max(rows, 1))))))
        # faiss k-means wants 39+ points per centroid; fewer train the lists badly
        defaults = {"nlist": nlist, "m": _pq_subquantizers(dim), "train_size": max(IVFPQConfig.train_size, 40 * nlist)}
    cls = _CLASSES[kind]
    unknown = set(overrides) - _field_names(cls)
    if unknown:
        raise ConfigError(f"{kind} index has no parameter {sorted(unknown)[0]!r}")
    return cls(**{**defaults, **overrides}), reason
