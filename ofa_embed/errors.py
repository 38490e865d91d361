"""Exception hierarchy of ofa-embed.

Every error the library raises on bad input derives from :class:`OFAEmbedError` and also from the
builtin it resembles, so callers can catch either. Messages are one line, name the file or argument,
the problem, and where possible the fix; the CLI prints them as they are.
"""

from __future__ import annotations


class OFAEmbedError(Exception):
    """Root of all ofa-embed errors."""


class SceneNotFoundError(OFAEmbedError, FileNotFoundError):
    """A scene path does not exist."""


class SceneReadError(OFAEmbedError, OSError):
    """A scene exists but cannot be read as a raster (not a raster, truncated, corrupt)."""


class NoGeoreferenceError(OFAEmbedError, ValueError):
    """A raster has no CRS or no geotransform, so tiles cannot be placed on the Earth."""


class ModalityError(OFAEmbedError, ValueError):
    """The modality or the band layout of a scene is unknown, ambiguous or inconsistent."""


class TilingError(OFAEmbedError, ValueError):
    """Tiling parameters are invalid, or the scene is too small or empty for them."""


class StoreError(OFAEmbedError, OSError):
    """The embedding store cannot be written or read."""


class WeightsError(OFAEmbedError, ValueError):
    """A checkpoint cannot be loaded or does not match its model configuration."""


class IndexStateError(OFAEmbedError, ValueError):
    """A vector index is missing, stale, or does not match its store or the query's model."""


class ConfigError(OFAEmbedError, ValueError):
    """An option has an invalid value or combination (index kind, parameters, ...)."""


class QueryError(OFAEmbedError, ValueError):
    """A search query is malformed or matches nothing to query with."""


class SQLError(OFAEmbedError, ValueError):
    """A SQL statement failed (syntax, unknown column, failing function...)."""


class LabelError(OFAEmbedError, ValueError):
    """A labels file is missing, unreadable, lacks the target column or CRS, or matches no tile."""


class GeoBenchError(OFAEmbedError, ValueError):
    """A GEO-Bench root, task folder, partition or sample file is missing or unreadable."""


class ProductError(OFAEmbedError, ValueError):
    """An imported embedding product is missing, not in its documented layout, or not what ``--format`` says."""


class MapError(OFAEmbedError, ValueError):
    """A map cannot be drawn: a hits, predictions or query file that is missing or unreadable, an unknown column."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (for one-line errors), or its type when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
