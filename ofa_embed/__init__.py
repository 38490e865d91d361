"""ofa-embed: Earth-observation embeddings from one shared multi-modal backbone, stored as GeoParquet."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ofa-embed")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from ofa_embed.corpus import curate  # noqa: E402
from ofa_embed.extraction import ExtractReport, SceneReport, extract  # noqa: E402
from ofa_embed.modalities import MODALITIES, get_modality  # noqa: E402
from ofa_embed.scene import open_scene  # noqa: E402

__all__ = [
    "__version__", "curate", "extract", "ExtractReport", "SceneReport", "open_scene", "search", "sql", "probe", "knn",
    "MODALITIES",
    "get_modality",
]


def __getattr__(name: str) -> object:
    # search and sql build on the top-level `indexes` package, which itself imports ofa_embed modules:
    # loading them on first use keeps `import indexes` and `import ofa_embed` free of import cycles
    if name == "search":
        from ofa_embed.retrieval import search

        return search
    if name in ("probe", "knn"):
        from ofa_embed import downstream

        return getattr(downstream, name)
    if name == "sql":
        from ofa_embed.sqlview import sql

        return sql
    raise AttributeError(f"module 'ofa_embed' has no attribute {name!r}")
