"""Vector indexes over an ofa-embed store (faiss): exact, HNSW and IVF-PQ, with filtered search.

from ofa_embed import indexes
indexes.build("embeddings")                     # kind="auto" picks by store size
hits = indexes.open("embeddings").search(vector, k=10, search_filter=SearchFilter(bbox=...))
"""

from typing import TYPE_CHECKING

from ofa_embed.indexes.config import KINDS, FlatConfig, HNSWConfig, IndexConfig, IVFPQConfig, make_config

if TYPE_CHECKING:
    from ofa_embed.indexes.filters import SearchFilter
    from ofa_embed.indexes.store_index import BuildReport, StoreIndex, build, open_index, update

    open = open_index  # the documented entry point: indexes.open(store)

_LAZY = {"SearchFilter": "ofa_embed.indexes.filters", **dict.fromkeys(
    ("BuildReport", "StoreIndex", "build", "open_index", "update"), "ofa_embed.indexes.store_index")}


def __getattr__(name: str) -> object:
    """Load the faiss- and DuckDB-backed names on first use."""
    # faiss and DuckDB load on first use, so that importing the package (for KINDS, the configs) stays light
    if name == "open":  # the documented entry point: indexes.open(store)
        name = "open_index"
    if name in _LAZY:
        from ofa_embed.lazy import import_whole

        return getattr(import_whole(_LAZY[name]), name)
    raise AttributeError(f"module 'ofa_embed.indexes' has no attribute {name!r}")


__all__ = [
    "KINDS", "FlatConfig", "HNSWConfig", "IVFPQConfig", "IndexConfig", "make_config", "SearchFilter",
    "BuildReport", "StoreIndex", "build", "update", "open", "open_index",
]
