"""Query embeddings made exactly like a store's: same weights (checked by hash), same normalisation."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from ofa_embed.embedding.forward import embed, model_input
from ofa_embed.errors import IndexStateError, TilingError
from ofa_embed.location import AnyPath
from ofa_embed.model.checkpoint import LoadedModel
from ofa_embed.model.weights import weights_for_store
from ofa_embed.raster.evidence import describe_evidence
from ofa_embed.raster.files import RASTER_SUFFIXES
from ofa_embed.raster.opening import open_scene
from ofa_embed.sensors import CUSTOM
from ofa_embed.store import describe_store, read_metadata

__all__ = ["MAX_QUERY_PIXELS", "StoreModel", "embed_file", "store_model"]

MAX_QUERY_PIXELS = 1024

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreModel:
    """How a store's embeddings were made, to embed queries the same way.

    Attributes:
        loaded: the weights (verified by hash).
        precision: the forward pass's; ``auto`` for files written before it was recorded (they ran as
            ``auto`` resolves on a CPU without native bf16: float32, or bf16 on CUDA).
        custom_input: for a store of a sensor given by wavelengths, the recorded model input (bands,
            wavelengths, normalisation) that query tiles of that sensor are read with; else None.
        sar_scale: how the store's SAR values were given (query tiles of SAR are read the same way).
        modality: the registered modality the store's scenes were read as (``custom`` for a sensor given by
            wavelengths).
        source_bands: the bands of the store's files as read, in file order (``--bands`` of its extraction),
            where its scenes were multi-band files; empty for band-file scenes, whose file order says nothing
            of a multi-band query file's.
        input_dtype: the data type of the store's files (None for stores written before it was recorded).
    """

    loaded: LoadedModel
    precision: str
    custom_input: dict[str, Any] | None = None
    sar_scale: str = "db"
    modality: str = ""
    source_bands: tuple[str, ...] = ()
    input_dtype: str | None = None


def store_model(store: str | AnyPath, weights: str | Path | None = None) -> StoreModel:
    """The model that made a store's embeddings, the precision it ran in and, for a sensor given by
    wavelengths, how its bands were fed.

    Raises:
        StoreError: missing or empty store.
        WeightsError: ``weights`` is given but cannot be loaded.
        IndexStateError: those weights are not available, or ``weights`` are other weights, or the store holds
            an imported product's embeddings (its model does not run here).
    """
    meta = read_metadata(describe_store(store)[0].path)
    imported = meta.get("imported")
    if imported:  # vectors of a published product (ofa-embed import): its model does not run here
        raise IndexStateError(
            f"{store}: holds imported {imported['product']} embeddings (model {imported['model']}), which is not "
            "available here to embed a query tile; query with --like-id or --like-point instead")
    model_meta = meta["model"]
    custom = meta.get("model_input") if meta["modality"]["name"] == CUSTOM else None
    values = meta.get("input_values") or {}
    multiband = str((meta.get("scene") or {}).get("path", "")).lower().endswith(RASTER_SUFFIXES)
    return StoreModel(weights_for_store(model_meta, weights), str(model_meta.get("precision", "auto")), custom,
                      str(values.get("sar_scale", "db")), str(meta["modality"]["name"]),
                      tuple(meta.get("source_bands") or ()) if multiband else (), values.get("dtype"))


def embed_file(
    path: str | Path | Sequence[str | Path],
    made: StoreModel,
    *,
    modality: str | None = None,
    bands: Sequence[str] | None = None,
    nodata: float | None = None,
) -> np.ndarray:
    """Embed a whole query tile (any supported modality) as one ``(D,)`` float32 vector, as ``made``'s store
    embedded its tiles.

    The tile is normalised like ``extract`` does, zero-padded (= band mean) to a multiple of the
    patch size, and pooled over its patch tokens, at the store's precision. A store of a sensor given by
    wavelengths reads a query tile without a ``modality`` as that sensor, with the store's normalisation.

    Raises:
        OFAEmbedError subclasses for unreadable files or unknown modalities;
        TilingError: the tile is larger than :data:`MAX_QUERY_PIXELS` on a side.
    """
    loaded, custom = made.loaded, made.custom_input if modality is None else None
    sensor = {"wavelengths": custom["wavelengths_um"], "statistics": (custom["mean"], custom["std"])} if custom else {}
    if modality is None and bands is None and not custom:
        modality, bands = _as_recorded(path, made)
    with open_scene(path, modality=modality, bands=bands, nodata=nodata, **sensor, sar_scale=made.sar_scale) as scene:
        if max(scene.width, scene.height) > MAX_QUERY_PIXELS:
            raise TilingError(
                f"{scene.path}: query tile is {scene.width} x {scene.height} px; cut a tile of at most "
                f"{MAX_QUERY_PIXELS} px (about the store's tile size)"
            )
        data, _ = scene.read(Window(0, 0, scene.width, scene.height))
        fed = model_input(loaded.model, scene.modality, scene.missing_bands, scene.band_scaling())
    patch = loaded.model.patch_size
    padded = np.zeros((data.shape[0], -(-data.shape[1] // patch) * patch, -(-data.shape[2] // patch) * patch), np.float32)
    padded[:, : data.shape[1], : data.shape[2]] = data
    return embed(loaded.model, padded[None], fed, next(loaded.model.parameters()).device, precision=made.precision)[0]


def _as_recorded(path: str | Path | Sequence[str | Path], made: StoreModel) -> tuple[str | None, list[str] | None]:
    """The store's modality and bands for a query file that does not say what it is (no band names, no
    wavelengths, no sensor tags or sensor file name) while its band count and data type are those the store
    was read from; ``(None, None)`` otherwise (the file is detected as any other, and refused where its
    values contradict what it is taken for).
    """
    if not isinstance(path, (str, Path)) or not made.source_bands or made.input_dtype is None:
        return None, None
    evidence = describe_evidence(Path(path))
    if evidence is None or evidence.says_what_it_is:
        return None, None
    if (evidence.band_count, evidence.dtype) != (len(made.source_bands), made.input_dtype):
        return None, None
    logger.info("%s names no bands: read as the store's %s bands %s (%s, as its scenes were)", path, made.modality,
                ",".join(made.source_bands), made.input_dtype)
    return made.modality, list(made.source_bands)
