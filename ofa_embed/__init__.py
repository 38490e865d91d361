"""ofa-embed: Earth-observation embeddings from one shared multi-modal backbone, stored as GeoParquet.

The public API is loaded on first use: ``import ofa_embed`` alone (and each CLI command) imports only
what it needs, so SQL over a store never waits for torch.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the lazily loaded names, as type checkers and IDEs should see them
    from ofa_embed.downstream import knn, predict, probe
    from ofa_embed.embedding.chips import ChipsReport, extract_chips
    from ofa_embed.embedding.extract import ExtractReport, SceneReport, extract
    from ofa_embed.field_files import read_field
    from ofa_embed.interop.importer import ImportReport, import_embeddings
    from ofa_embed.labelling import serve
    from ofa_embed.mapview import MapReport, map
    from ofa_embed.pretraining.corpus import curate
    from ofa_embed.raster.opening import open_scene
    from ofa_embed.retrieval import search
    from ofa_embed.sensors import MODALITIES, get_modality
    from ofa_embed.sqlview import sql

try:
    __version__ = version("ofa-embed")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

_API = {
    "curate": "ofa_embed.pretraining.corpus",
    "extract": "ofa_embed.embedding.extract", "ExtractReport": "ofa_embed.embedding.extract",
    "SceneReport": "ofa_embed.embedding.extract",
    "extract_chips": "ofa_embed.embedding.chips", "ChipsReport": "ofa_embed.embedding.chips",
    "MODALITIES": "ofa_embed.sensors", "get_modality": "ofa_embed.sensors",
    "open_scene": "ofa_embed.raster.opening",
    "read_field": "ofa_embed.field_files",
    "map": "ofa_embed.mapview", "MapReport": "ofa_embed.mapview",
    "import_embeddings": "ofa_embed.interop.importer", "ImportReport": "ofa_embed.interop.importer",
    "search": "ofa_embed.retrieval",
    "serve": "ofa_embed.labelling",
    "sql": "ofa_embed.sqlview",
    "probe": "ofa_embed.downstream", "knn": "ofa_embed.downstream", "predict": "ofa_embed.downstream",
}

__all__ = [
    "__version__", "curate", "extract", "ExtractReport", "SceneReport", "extract_chips", "ChipsReport", "MODALITIES",
    "get_modality", "open_scene", "read_field", "map", "MapReport", "import_embeddings", "ImportReport",
    "search", "sql", "probe", "knn", "predict", "serve",
]


def __getattr__(name: str) -> object:
    """Load a public name on first use."""
    if name in _API:
        from ofa_embed.lazy import import_whole

        return getattr(import_whole(_API[name]), name)
    raise AttributeError(f"module 'ofa_embed' has no attribute {name!r}")
