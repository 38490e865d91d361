"""What an extraction run is asked to do: one :class:`RunOptions`, shared by ``extract`` (scenes),
``extract_chips`` (chip collections), the tasks of a Dask run and the ``extract`` command's flags.

The entry points take the options whole (``options=RunOptions(...)``) or field by field as keywords
(``extract(scene, tile_size=64)``), keywords overriding ``options``: :func:`run_options`. Torch-free, so that
the CLI builds options without loading the model's libraries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TypedDict

from ofa_embed.errors import ConfigError
from ofa_embed.model.config import DEFAULT_MODEL
from ofa_embed.tiling import DEFAULT_MIN_VALID

__all__ = [
    "CHIPS_PER_FILE", "DEFAULT_BATCH_SIZE", "SCENE_ONLY", "TILES_PER_TASK", "ChipOptionKeywords", "OptionKeywords",
    "RunOptions", "run_options",
]

# the most tiles per forward pass: enough to keep a CPU worker's or a GPU's kernels busy, small enough that a
# ring of batches in flight stays a few hundred MB
DEFAULT_BATCH_SIZE = 32
# chips per store file of a chip collection: files large enough for few footers, small enough that a rerun after
# a bad chip redoes little
CHIPS_PER_FILE = 4096
# on a Dask cluster, the most tiles one task embeds (larger scenes are split into parts, then merged)
TILES_PER_TASK = 1024
# the options that only a scene run takes: chips are embedded whole, once, into chip files
SCENE_ONLY = ("stride", "overwrite", "partition_by", "dense", "field_dtype")


@dataclass(frozen=True)
class RunOptions:
    """How to read, tile, embed and store: everything an extraction run is asked, but its inputs and store.

    Attributes:
        modality: registered modality; detected per scene (per collection, from its first chip) when None.
        bands: names of the file's bands in file order (subset input; missing bands are mean-filled).
        nodata: nodata value overriding the file's.
        wavelengths: centre wavelength (µm) of each band in file order, for a sensor the registry does not
            know (wavelength-conditioned models only; normalised with the statistics the store records, else
            with a sample of the scenes' own values pooled).
        sar_scale: Sentinel-1 values in ``db`` (default), or linear ``power`` / ``amplitude`` to convert.
        tile_size: tile edge in pixels; must be a multiple of the patch size. Scenes: default the modality's.
            Chips: the tile every chip is padded into, default the first chip's longer side rounded up to a
            multiple of the patch size.
        stride: step between tiles in pixels (default: ``tile_size``; smaller overlaps). Scenes only.
        min_valid: tiles (chips) with a smaller fraction of valid (non-nodata) pixels are skipped.
        weights: checkpoint path (an ofa-embed ``.safetensors`` or a published DOFA ``.pth``); default: the
            packaged checkpoint, else a seeded random init.
        weights_layout: kernel layout of a DOFA ``.pth`` that is not a recognised release (``bands_first``
            for TorchGeo's files, ``legacy`` for DOFA's first release).
        model: model size used for the random init when no checkpoint is available.
        batch_size: the most tiles per forward pass (a scene's batch is one window of whole tile rows of it).
        device: ``"cpu"``, ``"cuda"``, ... (default: CUDA when available).
        precision: ``auto`` (bfloat16 on CUDA and on CPUs with native bfloat16, else float32), ``fp32`` or
            ``bf16``; recorded in every store file.
        embedding_dtype: how embeddings are stored: ``float32`` (default), ``float16`` (about half the bytes) or
            ``int8`` (about a third, with a per-vector scale; :mod:`ofa_embed.store.quantise`). One per store.
        overwrite: recompute scenes already in the store (default: skip them). Scenes only.
        partition_by: write scene files into hive folders by these keys (``utm_zone``, ``year``; see
            :func:`ofa_embed.store.partition_of`), which DuckDB and geopandas prune on. Scenes only.
        dense: also write each scene's embedding field, one pixel per patch, as a COG in ``STORE/fields/``
            (:mod:`ofa_embed.embedding.fields`); tiles then overlap by default (stride: the tile less a margin).
            Scenes only, local runs only.
        field_dtype: how fields are stored: ``float32`` (default), ``float16`` or ``int8`` with a per-pixel scale
            (:mod:`ofa_embed.field_files`). Scenes only.
    """

    modality: str | None = None
    bands: Sequence[str] | None = None
    nodata: float | None = None
    wavelengths: Sequence[float] | None = None
    sar_scale: str = "db"
    tile_size: int | None = None
    stride: int | None = None
    min_valid: float = DEFAULT_MIN_VALID
    weights: str | Path | None = None
    weights_layout: str | None = None
    model: str = DEFAULT_MODEL
    batch_size: int = DEFAULT_BATCH_SIZE
    device: str | None = None
    precision: str = "auto"
    embedding_dtype: str = "float32"
    overwrite: bool = False
    partition_by: Sequence[str] | None = None
    dense: bool = False
    field_dtype: str = "float32"

    def open_args(self) -> dict[str, Any]:
        """The keywords of :func:`~ofa_embed.raster.scene.open_scene` that these options give."""
        return {"modality": self.modality, "bands": self.bands, "nodata": self.nodata, "wavelengths": self.wavelengths,
                "sar_scale": self.sar_scale}


class ChipOptionKeywords(TypedDict, total=False):
    """The :class:`RunOptions` fields ``extract_chips`` takes as keywords (all but :data:`SCENE_ONLY`)."""

    modality: str | None
    bands: Sequence[str] | None
    nodata: float | None
    wavelengths: Sequence[float] | None
    sar_scale: str
    tile_size: int | None
    min_valid: float
    weights: str | Path | None
    weights_layout: str | None
    model: str
    batch_size: int
    device: str | None
    precision: str
    embedding_dtype: str


class OptionKeywords(ChipOptionKeywords, total=False):
    """Every :class:`RunOptions` field, as keywords of ``extract``."""

    stride: int | None
    overwrite: bool
    partition_by: Sequence[str] | None
    dense: bool
    field_dtype: str


def run_options(caller: str, options: RunOptions | None, keywords: Mapping[str, Any],
                refused: Sequence[str] = ()) -> RunOptions:
    """``options`` (default: :class:`RunOptions`'s defaults) with the fields given as ``keywords`` replaced.

    Args:
        caller: the entry point's name, for the errors.
        options: the options given whole, or None.
        keywords: field values given one by one.
        refused: fields ``caller`` does not take (e.g. :data:`SCENE_ONLY`): refused as keywords, and in
            ``options`` unless left at their defaults.

    Raises:
        TypeError: a keyword that is not a field ``caller`` takes (as Python words it for an unknown keyword).
        ConfigError: ``options`` sets a field ``caller`` does not take.
    """
    names = {f.name for f in fields(RunOptions)} - set(refused)
    if unknown := next((name for name in keywords if name not in names), None):
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown!r}")
    base = options or RunOptions()
    defaults = RunOptions()
    if ignored := [name for name in refused if getattr(base, name) != getattr(defaults, name)]:
        raise ConfigError(f"{caller}: options {', '.join(ignored)} do not apply here; leave them at their defaults")
    return replace(base, **keywords) if keywords else base
