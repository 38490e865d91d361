"""Query embeddings made exactly like a store's: same weights (checked by hash), same normalisation."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rasterio.windows import Window

from ofa_embed.checkpoint import LoadedModel, load_checkpoint, random_init
from ofa_embed.errors import IndexStateError, TilingError
from ofa_embed.extraction import PACKAGED_WEIGHTS
from ofa_embed.model import OFAConfig
from ofa_embed.scene import open_scene
from ofa_embed.store import describe_store, read_metadata

__all__ = ["store_model", "embed_file", "MAX_QUERY_PIXELS"]

MAX_QUERY_PIXELS = 1024


def _candidates(model_meta: dict[str, Any], weights: str | Path | None) -> list[Any]:
    if weights is not None:
        return [Path(weights)]
    source = str(model_meta.get("weights_source", ""))
    if source.startswith("random-init"):
        return [OFAConfig.from_dict(model_meta["config"])]
    return [Path(source), PACKAGED_WEIGHTS]


@functools.lru_cache(maxsize=4)
def _resolve(store_files_key: str, weights: str | None) -> LoadedModel:
    model_meta = read_metadata(store_files_key)["model"]
    wanted = model_meta["weights_hash"]
    for candidate in _candidates(model_meta, weights):
        if isinstance(candidate, OFAConfig):
            loaded = random_init(candidate)
        elif candidate.is_file():
            loaded = load_checkpoint(candidate)
        else:
            continue
        if loaded.weights_hash == wanted:
            return loaded
        if weights is not None:
            raise IndexStateError(
                f"{weights}: weights {loaded.weights_hash} differ from the store's {wanted}; queries must be "
                "embedded by the model that made the store"
            )
    raise IndexStateError(
        f"the store was embedded with weights {wanted} ({model_meta.get('weights_source')}), which are not "
        "available here; pass that checkpoint with --weights"
    )


def store_model(store: str | Path, weights: str | Path | None = None) -> LoadedModel:
    """The model that made a store's embeddings (verified by weights hash).

    Raises:
        StoreError: missing or empty store.
        IndexStateError: those weights are not available, or ``weights`` are other weights.
    """
    first = describe_store(store)[0].path
    return _resolve(str(first), str(weights) if weights is not None else None)


def embed_file(
    path: str | Path | Sequence[str | Path],
    loaded: LoadedModel,
    *,
    modality: str | None = None,
    bands: Sequence[str] | None = None,
    nodata: float | None = None,
) -> np.ndarray:
    """Embed a whole query tile (any supported modality) as one ``(D,)`` float32 vector.

    The tile is normalised like ``extract`` does, zero-padded (= band mean) to a multiple of the
    patch size, and mean-pooled over its patch tokens.

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
        name = scene.modality.name
    patch = loaded.model.patch_size
    padded = np.zeros((data.shape[0], -(-data.shape[1] // patch) * patch, -(-data.shape[2] // patch) * patch), np.float32)
    padded[:, : data.shape[1], : data.shape[2]] = data
    device = next(loaded.model.parameters()).device
    with torch.inference_mode():
        return loaded.model(torch.from_numpy(padded)[None].to(device), name)[0].float().cpu().numpy()
