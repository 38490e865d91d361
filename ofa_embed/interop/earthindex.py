"""Earth Index embeddings (Earth Genome).

Specification followed: the Earth Index submission to the CNG geo-embeddings survey
(https://github.com/cloudnativegeo/geo-embeddings-survey, ``data/earth_index/readme.md`` and ``schema.json``) and
TorchGeo 0.9's ``EarthIndexEmbeddings`` (https://source.coop/earthgenome/earthindexembeddings):

- GeoParquet, one file per MGRS 100 km tile of the Earth Index v2 Sentinel-2 mosaics (``17SNB.parquet``);
- columns ``id`` (string), ``embedding`` (array of float, 384 values: SoftCon ViT-S), ``geometry`` (EPSG:4326;
  the tile polygon, or its centroid as TorchGeo reads it: a point stands for a square of 320 m, the documented
  chip of 32 px of 10 m, on the Major TOM-based grid);
- footer key ``emb`` (version ``0.0.1``) with ``model`` (id, source, version, name...), ``datetime`` (a STAC
  datetime object), ``embedding`` (``embeddings_dim``, ``embeddings_quantization``), ``providers``, ``licensing``.

The rows' time is the footer's datetime (the file has no time column). Row groups are pruned on a GeoParquet 1.1
bbox covering where the file has one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ofa_embed.errors import ProductError
from ofa_embed.interop.chips import ChipSpec
from ofa_embed.interop.product import Product

__all__ = ["DIMENSION", "SPEC", "product_for"]

DIMENSION = 384
SURVEY = "https://github.com/cloudnativegeo/geo-embeddings-survey/tree/main/data/earth_index"


def _names(table: pa.Table, stem: str, rows: np.ndarray) -> list[str]:
    if "id" in table.column_names:
        return [str(v) for v in table.column("id").to_pylist()]
    return [f"{stem}:{int(r)}" for r in rows]


SPEC = ChipSpec(("embedding",), (), _names, 320.0, 32)


def product_for(path: Path, dimension: int, emb: dict[str, Any]) -> Product:
    """The Earth Index product of a file, its model as its ``emb`` footer names it.

    Raises:
        ProductError: vectors not of the documented 384 values.
    """
    if dimension != DIMENSION:
        raise ProductError(f"{path}: {dimension}-d vectors, not Earth Index's {DIMENSION}; is --format right?")
    model: dict[str, Any] = emb["model"] if isinstance(emb.get("model"), dict) else {}
    described: dict[str, Any] = emb["embedding"] if isinstance(emb.get("embedding"), dict) else {}
    quantization = described.get("embeddings_quantization")
    return Product("earthindex", "Earth Index", str(model.get("version") or "v2"), str(model.get("id") or "softcon"),
                   dimension, "chip", 320.0, "annual",
                   {"method": "none" if not quantization or quantization == "none" else "other", "original_dtype": "float32",
                    **({"description": quantization} if quantization else {})},
                   "CC-BY-4.0",
                   {"documentation": SURVEY, "model": str(model.get("source") or "https://github.com/zhu-xlab/softcon"),
                    "source-data": "https://source.coop/earthgenome/earthindexembeddings"})
