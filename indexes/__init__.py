"""Vector indexes over an ofa-embed store (faiss): exact, HNSW and IVF-PQ, with filtered search.

    import indexes
    indexes.build("embeddings")                     # kind="auto" picks by store size
    hits = indexes.open("embeddings").search(vector, k=10, search_filter=SearchFilter(bbox=...))
"""

from indexes.config import KINDS, FlatConfig, HNSWConfig, IndexConfig, IVFPQConfig, make_config
from indexes.filters import SearchFilter
from indexes.store_index import BuildReport, StoreIndex, build, open_index, update

open = open_index  # noqa: A001 - the documented entry point: indexes.open(store)

__all__ = [
    "KINDS", "FlatConfig", "HNSWConfig", "IVFPQConfig", "IndexConfig", "make_config", "SearchFilter",
    "BuildReport", "StoreIndex", "build", "update", "open", "open_index",
]
