"""Query embeddings made exactly like a store's: same weights (checked by hash), same normalisation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from ofa_embed.embedding.forward import embed, model_input
from ofa_embed.errors import TilingError
from ofa_embed.model.checkpoint import LoadedModel
from ofa_embed.model.weights import weights_for_store
from ofa_embed.raster.scene import open_scene
from ofa_embed.store import describe_store, read_metadata

__all__ = ["store_model", "embed_file", "MAX_QUERY_PIXELS"]

MAX_QUERY_PIXELS = 1024


def store_model(store: str | Path, weights: str | Path | None = None) -> tuple[LoadedModel, str]:
    """The model that made a store's embeddings (verified by weights hash) and the precision it ran in.

    Returns:
        ``(loaded, precision)``; precision ``auto`` for files written before it was recorded (they ran as
        ``auto`` resolves on a CPU without native bf16: float32, or bf16 on CUDA).

    Raises:
        StoreError: missing or empty store.
        WeightsError: ``weights`` is given but cannot be loaded.
        IndexStateError: those weights are not available, or ``weights`` are other weights.
    """
    model_meta = read_metadata(describe_store(store)[0].path)["model"]
    return weights_for_store(model_meta, weights), str(model_meta.get("precision", "auto"))


def embed_file(
    path: str | Path | Sequence[str | Path],
    loaded: LoadedModel,
    *,
    modality: str | None = None,
    bands: Sequence[str] | None = None,
    nodata: float | None = None,
    precision: str = "auto",
) -> np.ndarray:
    """Embed a whole query tile (any supported modality) as one ``(D,)`` float32 vector.

    The tile is normalised like ``extract`` does, zero-padded (= band mean) to a multiple of the
    patch size, and mean-pooled over its patch tokens, at ``precision`` (pass the store's, from
    :func:`store_model`, to embed it exactly as the store's tiles were).

    Raises:
        OFAEmbedError subclasses for unreadable files or unknown modalities;
        TilingError: the tile is larger than :data:`MAX_QUERY_PIXELS` on a side.
    """
    with open_scene(path, modality=modality, bands=bands, nodata=nodata) as scene:
        if max(scene.width, scene.height) > MAX_QUERY_PIXELS:
            raise TilingError(
                f"{scene.path}: query tile is {scene.width} x {scene.height} px; cut a tile of at most "
                f"{MAX_QUERY_PIXELS} px (about the store's tile size)"
            )
        data, _ = scene.read(Window(0, 0, scene.width, scene.height))
        fed = model_input(loaded.model, scene.modality, scene.missing_bands)
    patch = loaded.model.patch_size
    padded = np.zeros((data.shape[0], -(-data.shape[1] // patch) * patch, -(-data.shape[2] // patch) * patch), np.float32)
    padded[:, : data.shape[1], : data.shape[2]] = data
    return embed(loaded.model, padded[None], fed, next(loaded.model.parameters()).device, precision=precision)[0]
