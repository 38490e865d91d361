"""What a run refuses before anything is read or written, and what it agrees with its store: the options, the
store's location, weights and dtype, the model's inputs, and the one normalisation of a sensor given by
wavelengths. Shared by ``extract`` (scenes) and ``extract_chips`` (chip collections).
"""

from __future__ import annotations

import os

from ofa_embed.embedding.forward import model_input
from ofa_embed.embedding.options import RunOptions
from ofa_embed.errors import ModalityError, StoreError, TilingError
from ofa_embed.location import AnyPath, RemotePath
from ofa_embed.model.checkpoint import LoadedModel
from ofa_embed.raster.checks import sample_statistics
from ofa_embed.raster.scene import Scene
from ofa_embed.sensors import CUSTOM, custom_modality
from ofa_embed.store import read_metadata, store_files
from ofa_embed.store.claim import StoreIdentity
from ofa_embed.store.quantise import check_dtype

__all__ = ["check_batching", "check_model_takes", "check_options", "check_writable", "share_custom_statistics",
           "store_identity"]


def check_batching(min_valid: float, batch_size: int) -> None:
    """Refuse a ``min_valid`` outside [0, 1] or a batch size below 1.

    Raises:
        TilingError: either is out of range.
    """
    if not 0.0 <= min_valid <= 1.0:
        raise TilingError(f"min_valid must be within [0, 1], got {min_valid}")
    if batch_size <= 0:
        raise TilingError(f"batch_size must be positive, got {batch_size}")


def check_options(options: RunOptions) -> None:
    """Refuse options out of range before anything is opened (the precision is checked with the model's device).

    Raises:
        TilingError: ``min_valid`` or ``batch_size`` out of range.
        StoreError: an unknown ``embedding_dtype``.
    """
    check_batching(options.min_valid, options.batch_size)
    check_dtype(options.embedding_dtype)


def check_writable(store: AnyPath) -> None:
    """Refuse a local store whose nearest existing folder cannot be written (a remote store fails at its first
    write, with the filesystem's own error, before any file of it exists).

    Raises:
        StoreError: that folder is not a writable directory.
    """
    if isinstance(store, RemotePath):
        return
    existing = store
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise StoreError(f"{store}: output location is not a writable directory ({existing})")


def store_identity(loaded: LoadedModel, embedding_dtype: str) -> StoreIdentity:
    """What a run's embeddings are, for its store to hold only such (:func:`~ofa_embed.store.claim.claimed_store`:
    a store holds the embeddings of one set of weights, stored in one dtype).
    """
    return StoreIdentity(loaded.weights_hash, loaded.model.embedding_dim, embedding_dtype, loaded.model.config.name,
                         loaded.model.pooling)


def check_model_takes(scene: Scene, loaded: LoadedModel) -> None:
    """Refuse a scene the model has no input for (a modality it lacks, wavelengths it cannot take).

    Raises:
        ModalityError: the model cannot take the scene's bands.
    """
    if scene.modality.name == CUSTOM:
        model_input(loaded.model, scene.modality)
    elif scene.modality.name not in loaded.model.modalities:
        raise ModalityError(f"{scene.path}: the model has no patch embedding for {scene.modality.name}")


def share_custom_statistics(scenes: list[Scene], store: AnyPath) -> None:
    """One normalisation per store for a sensor given by wavelengths, so that its scenes' embeddings compare:
    the one the store already records, else the mean/std of all these scenes' samples pooled.

    Raises:
        ModalityError: the scenes' wavelengths differ from each other's or from those the store records.
    """
    if not scenes:
        return
    wavelengths = [b.wavelength_um for b in scenes[0].modality.bands]
    for scene in scenes[1:]:
        if [b.wavelength_um for b in scene.modality.bands] != wavelengths:
            raise ModalityError(f"{scene.path}: its band wavelengths differ from {scenes[0].path}'s; "
                                "extract each sensor into its own store")
    metas = [(path, read_metadata(path)) for path in store_files(store)] if store.is_dir() else []
    recorded = [(path, meta) for path, meta in metas if meta["modality"]["name"] == CUSTOM]
    if recorded:
        path, meta = recorded[0]
        fed = meta["model_input"]
        if fed["wavelengths_um"] != wavelengths:
            raise ModalityError(f"{scenes[0].path}: band wavelengths {wavelengths} differ from those of the sensor "
                                f"in {store} ({fed['wavelengths_um']}); use another store")
        mean, std, source = fed["mean"], fed["std"], f"as recorded in {path.name}"
    else:
        sampled_mean, sampled_std, source = sample_statistics(scenes)
        mean, std = sampled_mean.tolist(), sampled_std.tolist()
    for scene in scenes:
        scene.modality = custom_modality(wavelengths, mean, std, stats_source=source, labels=scene.modality.band_names)
