"""Embeddings stored smaller: the ``embedding`` column as float32 (default), float16, or int8 with a per-vector
scale (``extract --embedding-dtype``). Everything that reads a store gets float32 back from :func:`decode`.

int8 is symmetric per vector: ``scale = max_d |v_d| / 127`` (1 for a zero vector), ``q_d = round(v_d / scale)``,
stored as ``embedding`` ``fixed_size_list<int8>[D]`` beside ``embedding_scale`` float32; readers compute
``v_d = q_d * scale``. A per-vector scale keeps every component within half a step (1/254 of the vector's
largest component) of its float32 value (cosine to the float32 vector >= 0.9998 on the bundled sample's
ofa_tiny embeddings, ``tests/store/test_quantise.py``) and needs no statistics over the store, so files
written at different times or on different workers are read alike. A
per-dimension scale would need those statistics fixed before the first file is written; it is not offered.

float16 keeps 11 significant bits; its range (6e-5 to 65504) holds embeddings, whose components are of
order 1 to 10 (the bundled sample's ofa_tiny embeddings lie within -5.5 to 3.9).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from ofa_embed.errors import StoreError

__all__ = ["EMBEDDING_DTYPES", "SCALE_COLUMN", "arrow_values", "check_dtype", "decode", "encode", "quantization_record",
           "stac_quantization"]

EMBEDDING_DTYPES = ("float32", "float16", "int8")
SCALE_COLUMN = "embedding_scale"
_INT8_MAX = 127


def check_dtype(dtype: str) -> str:
    """``dtype`` when it is one of :data:`EMBEDDING_DTYPES`.

    Raises:
        StoreError: any other name.
    """
    if dtype not in EMBEDDING_DTYPES:
        raise StoreError(f"embedding dtype {dtype!r} is not one of {', '.join(EMBEDDING_DTYPES)}")
    return dtype


def encode(vectors: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``(n, D)`` float32 ``vectors`` as stored in ``dtype``: the ``(n, D)`` values and, for int8, the ``(n,)``
    float32 per-vector scales (None otherwise).
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if check_dtype(dtype) == "float32":
        return vectors, None
    if dtype == "float16":
        return vectors.astype(np.float16), None
    peak = np.abs(vectors).max(axis=1) if vectors.size else np.zeros(len(vectors), np.float32)
    scale = np.where(peak > 0, peak / _INT8_MAX, 1.0).astype(np.float32)
    quantised = np.clip(np.rint(vectors / scale[:, None]), -_INT8_MAX, _INT8_MAX).astype(np.int8)
    return quantised, scale


def decode(values: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """float32 ``(n, D)`` embeddings from stored ``values`` (any of :data:`EMBEDDING_DTYPES`) and, for int8,
    their ``(n,)`` ``scale``.

    Raises:
        StoreError: int8 values without their scales.
    """
    if values.dtype == np.int8:
        if scale is None:
            raise StoreError(f"int8 embeddings without their {SCALE_COLUMN} column")
        return values.astype(np.float32) * np.asarray(scale, np.float32)[:, None]
    return values.astype(np.float32, copy=False)


def quantization_record(dtype: str) -> dict[str, Any]:
    """The ``emb`` metadata fields that say how to read the stored values back as float32."""
    record: dict[str, Any] = {"quantization": check_dtype(dtype)}
    if dtype == "int8":
        record["scale"] = {"kind": "per-vector", "column": SCALE_COLUMN, "value": f"embedding * {SCALE_COLUMN}"}
    return record


def stac_quantization(dtype: str) -> dict[str, Any]:
    """The STAC Embedding extension's ``emb:quantization`` object for embeddings stored as ``dtype`` (float32
    embeddings quantised to it; int8 with one scale a vector, in the file's ``embedding_scale`` column).
    """
    stored = check_dtype(dtype)
    if stored == "float32":
        return {"method": "none", "original_dtype": "float32"}
    return {"method": "linear" if stored == "int8" else "none", "original_dtype": "float32", "quantized_dtype": stored}


def arrow_values(values: np.ndarray) -> pa.DataType:
    """The Arrow type of stored embedding components of ``values``' dtype."""
    return {np.dtype(np.float32): pa.float32(), np.dtype(np.float16): pa.float16(), np.dtype(np.int8): pa.int8()}[values.dtype]
