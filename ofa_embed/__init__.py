"""ofa-embed: Earth-observation embeddings from one shared multi-modal backbone, stored as GeoParquet.

The public API is loaded on first use: ``import ofa_embed`` alone (and each CLI command) imports only
what it needs, so SQL over a store never waits for torch.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ofa-embed")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

_API = {
    "curate": "ofa_embed.pretraining.corpus",
    "extract": "ofa_embed.embedding.extract", "ExtractReport": "ofa_embed.embedding.extract", "SceneReport": "ofa_embed.embedding.extract",
    "MODALITIES": "ofa_embed.sensors", "get_modality": "ofa_embed.sensors",
    "open_scene": "ofa_embed.raster.scene",
    "search": "ofa_embed.retrieval",
    "sql": "ofa_embed.sqlview",
    "probe": "ofa_embed.downstream", "knn": "ofa_embed.downstream", "predict": "ofa_embed.downstream",
}

__all__ = [
    "__version__", "curate", "extract", "ExtractReport", "SceneReport", "MODALITIES", "get_modality", "open_scene",
    "search", "sql", "probe", "knn", "predict",
]


def __getattr__(name: str) -> object:
    if name in _API:
        from ofa_embed.lazy import import_whole

        return getattr(import_whole(_API[name]), name)
    raise AttributeError(f"module 'ofa_embed' has no attribute {name!r}")
