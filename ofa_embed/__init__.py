"""ofa-embed: Earth-observation embeddings from one shared multi-modal backbone, stored as GeoParquet."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ofa-embed")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from ofa_embed.extraction import ExtractReport, SceneReport, extract  # noqa: E402
from ofa_embed.modalities import MODALITIES, get_modality  # noqa: E402
from ofa_embed.scene import open_scene  # noqa: E402

__all__ = ["__version__", "extract", "ExtractReport", "SceneReport", "open_scene", "MODALITIES", "get_modality"]
