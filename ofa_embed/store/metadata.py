"""The metadata every store file carries: one layout, built here and nowhere else.

Parquet file metadata keys of a scene file (JSON values)::

    geo         GeoParquet 1.1.0: encoding WKB, geometry types, CRS OGC:CRS84, bbox, bbox covering
                (built by :mod:`ofa_embed.store.geoparquet` from the table itself)
    emb         the embedding column, for generic readers (:func:`emb_metadata`): version, column, model
                id, weights hash, dimension, quantization (float32, float16, or int8 with ``scale``: how
                to read the column back, :mod:`ofa_embed.store.quantise`), l2_normalized, datetime_range;
                since 0.2.0 also the STAC Embedding extension's fields of the column, named and valued as
                ``ofa-embed stac`` writes them: emb:type, emb:dimensions, data_type, emb:quantization
    ofa_embed   this project's record (:func:`scene_metadata`):
                store_version      schema version of columns and metadata (readers refuse newer ones)
                package_version    the ofa-embed that wrote the file; created (UTC, ISO 8601)
                model              name, config (the model config dict), weights_hash, weights_source,
                                   pretrained, pooling (how tokens became the embedding), precision
                                   (fp32 or bf16: the forward pass; absent in files before it was recorded)
                modality           registered modality: band order, wavelengths, scale/offset, units,
                                   mean/std, statistics source (the exact model input)
                model_input        the exact input of the model (absent in files before it was recorded):
                                   bands fed, wavelengths_um they were fed at (None: a per-modality
                                   model), and per band the scale/offset from file values and the
                                   mean/std the result was normalised with
                input_values       what the value-range check found in the file (absent before it ran):
                                   dtype, p1/p50/p99 of sampled values, sar_scale (db, or the linear
                                   power/amplitude converted to dB), warning (None or the line logged),
                                   mask (the file's validity mask besides nodata values, e.g. "alpha band
                                   4", "internal mask", ".msk sidecar"; absent when it has none)
                source_bands       the file's band labels in file order; missing_bands: bands the scene
                                   lacks (mean-filled for a per-modality model, left out otherwise)
                assumed            what was taken for granted of the input that it does not say itself
                                   (band order, band identity from the band count): one line each, as
                                   logged; empty when nothing was (absent in files before it was recorded)
                tiling             tile_size, stride, min_valid, edge_rule
                scene              name, path, native CRS (WKT), transform (6 affine terms), width,
                                   height, nodata (scene files)
                chips              chip collection files instead of ``scene``: count, roots (the folders
                                   or files given), label_source (how ``label`` was derived, or None);
                                   per-chip path, label and CRS are columns

The store knows no model: callers pass what identifies theirs as plain values (:class:`ModelRecord`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from ofa_embed.store.quantise import quantization_record, stac_quantization

__all__ = ["EMB_VERSION", "ChipsRecord", "ModelRecord", "SceneRecord", "TilingRecord", "emb_metadata", "scene_metadata"]

EMB_VERSION = "0.2.0"  # 0.2.0 added the STAC Embedding extension's fields; 0.1.0 files read the same
EDGE_RULE = "last tile may run past the edge: clipped for reading, padded with the band mean"


@dataclass(frozen=True)
class ModelRecord:
    """What made the embeddings: ``name`` and ``config`` of the architecture, the weights' content hash
    and source, whether they are pre-trained, the pooling that turned tokens into one vector, the forward
    pass's precision (``fp32``/``bf16``) and the embedding dimension.
    """

    name: str
    config: dict[str, Any]
    weights_hash: str
    weights_source: str
    pretrained: bool
    pooling: str
    precision: str
    dimension: int


@dataclass(frozen=True)
class TilingRecord:
    """Tile edge and step in pixels, and the least valid-pixel fraction a kept tile has."""

    tile_size: int
    stride: int
    min_valid: float


@dataclass(frozen=True)
class SceneRecord:
    """Where the tiles come from: the scene's name and path, native grid (CRS as WKT, the first six affine
    terms, size in pixels) and nodata value.
    """

    name: str
    path: str
    crs_wkt: str
    transform: list[float]
    width: int
    height: int
    nodata: float | None


@dataclass(frozen=True)
class ChipsRecord:
    """A chip collection file: how many chips it holds, the folders or files the collection was given as,
    and how the ``label`` column was derived (None: no labels).
    """

    count: int
    roots: list[str]
    label_source: str | None


def scene_metadata(
    *, package_version: str, model: ModelRecord, modality: dict[str, Any], model_input: dict[str, Any],
    input_values: dict[str, Any], source_bands: list[str], missing_bands: list[str], tiling: TilingRecord,
    scene: SceneRecord | ChipsRecord, assumed: Sequence[str] = (),
) -> dict[str, Any]:
    """The ``ofa_embed`` record of one scene file, or of one chip collection file given a :class:`ChipsRecord`
    (``store_version`` is added by the writer).
    """
    where = {"chips": asdict(scene)} if isinstance(scene, ChipsRecord) else {"scene": {
        "name": scene.name, "path": scene.path, "crs": scene.crs_wkt, "transform": scene.transform,
        "width": scene.width, "height": scene.height, "nodata": scene.nodata,
    }}
    return {
        "package_version": package_version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {k: v for k, v in asdict(model).items() if k != "dimension"},
        "modality": modality,
        "model_input": model_input,
        "input_values": input_values,
        "source_bands": source_bands,
        "missing_bands": missing_bands,
        "assumed": list(assumed),
        "tiling": {**asdict(tiling), "edge_rule": EDGE_RULE},
        **where,
    }


def emb_metadata(model: ModelRecord, acquired: Sequence[datetime | None], embedding_dtype: str = "float32") -> dict[str, Any]:
    """The ``emb`` record: the embedding column described for readers that know nothing of ofa-embed;
    ``datetime_range`` spans the known times of ``acquired`` (the file's scene, or its chips); the column is
    written in the ``quantization`` it names (:mod:`ofa_embed.store.quantise`).
    """
    known = [when for when in acquired if when is not None]
    first, last = (min(known).isoformat(), max(known).isoformat()) if known else (None, None)
    return {
        "version": EMB_VERSION,
        "column": "embedding",
        "model": f"ofa-embed/{model.name}",
        "weights_hash": model.weights_hash,
        "dimension": model.dimension,
        **quantization_record(embedding_dtype),
        "l2_normalized": False,
        "datetime_range": [first, last],
        # the STAC Embedding extension's fields for the same column, as `ofa-embed stac` writes them
        "emb:type": "chip",
        "emb:dimensions": model.dimension,
        "data_type": embedding_dtype,
        "emb:quantization": stac_quantization(embedding_dtype),
    }
