"""Which weights a command uses: the one resolver for extraction, queries, SQL and benchmarks.

Rules, in order:

1. ``weights`` given: that checkpoint (an ofa-embed ``.safetensors``, or a published DOFA ``.pth``,
   converted once and cached: ``model/checkpoint.py``), or a one-line error.
2. No ``weights`` and the default model: the checkpoint shipped in the package (:data:`PACKAGED_WEIGHTS`,
   whose content hash must be :data:`PACKAGED_WEIGHTS_HASH`, the hash the model card states).
3. Otherwise a seeded random initialisation of the model, with a warning: deterministic, not meaningful.

For embedding queries against an existing store, :func:`weights_for_store` finds the weights the store
was made with (its recorded source file, then the packaged checkpoint, then the random init it names) and
accepts them only when their content hash equals the store's. Loaded models are cached by file, size and
modification time, so a checkpoint rewritten in place is loaded again.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any

from ofa_embed.errors import ConfigError, IndexStateError, WeightsError
from ofa_embed.model.checkpoint import LoadedModel, load_checkpoint, load_published, random_init
from ofa_embed.model.config import CONFIGS, DEFAULT_MODEL, DOFA_CONFIGS, config_from_dict
from ofa_embed.model.dofa import published_config

__all__ = ["PACKAGED_WEIGHTS", "PACKAGED_WEIGHTS_HASH", "load_weights", "weights_for_store"]

logger = logging.getLogger(__name__)

PACKAGED_WEIGHTS = Path(__file__).resolve().parents[1] / "data" / f"{DEFAULT_MODEL}.safetensors"
PACKAGED_WEIGHTS_HASH = "47003888b7e0579d"


# published state dicts; everything else is read as an ofa-embed checkpoint
PUBLISHED_SUFFIXES = (".pth", ".pt")


def load_weights(weights: str | Path | None = None, model: str = DEFAULT_MODEL,
                 weights_layout: str | None = None) -> LoadedModel:
    """The checkpoint at ``weights``; else the packaged default; else a seeded random init of ``model``.

    Args:
        weights: an ofa-embed checkpoint, or a published DOFA ``.pth``.
        model: a size of :data:`CONFIGS` or :data:`DOFA_CONFIGS`, for the random init.
        weights_layout: kernel layout of a ``.pth`` that is not a recognised release.

    Raises:
        WeightsError: ``weights`` cannot be loaded, or the packaged file is not the released checkpoint.
        ConfigError: ``model`` is not a known size.
    """
    if weights is not None:
        return _checkpoint(Path(weights), weights_layout)
    if model == DEFAULT_MODEL and PACKAGED_WEIGHTS.is_file():
        loaded = _checkpoint(PACKAGED_WEIGHTS)
        if loaded.weights_hash != PACKAGED_WEIGHTS_HASH:
            raise WeightsError(
                f"{PACKAGED_WEIGHTS}: weights hash {loaded.weights_hash} is not the released "
                f"{PACKAGED_WEIGHTS_HASH}; reinstall ofa-embed"
            )
        return loaded
    if model not in CONFIGS and model not in DOFA_CONFIGS:
        raise ConfigError(f"unknown model {model!r}; choose one of: {', '.join([*CONFIGS, *DOFA_CONFIGS])}")
    config = CONFIGS[model] if model in CONFIGS else published_config(model)
    loaded = _random_init(json.dumps(config.to_dict()))
    logger.warning(
        "no pre-trained weights for %s: using a seeded random init (hash %s); embeddings are "
        "deterministic but not meaningful; pass a checkpoint with --weights", model, loaded.weights_hash,
    )
    return loaded


def weights_for_store(model_meta: dict[str, Any], weights: str | Path | None = None) -> LoadedModel:
    """The weights a store was embedded with, verified by content hash.

    Args:
        model_meta: the ``model`` entry of a store file's ``ofa_embed`` metadata.
        weights: a checkpoint the caller names instead of the recorded source.

    Raises:
        WeightsError: ``weights`` is given but missing or unreadable.
        IndexStateError: ``weights`` are other weights than the store's, or the store's are not available.
    """
    wanted = model_meta["weights_hash"]
    source = str(model_meta.get("weights_source", ""))
    if weights is not None and not Path(weights).is_file():
        raise WeightsError(f"{weights}: checkpoint not found")
    layout = model_meta.get("config", {}).get("kernel_layout") if model_meta.get("config", {}).get("family") == "dofa" else None
    for candidate in _candidates(model_meta, weights):
        if isinstance(candidate, str):
            loaded = _random_init(candidate)
        elif candidate.is_file():
            loaded = _checkpoint(candidate, layout)
        else:
            continue
        if loaded.weights_hash == wanted:
            _check_readout(model_meta, loaded)
            return loaded
        if weights is not None:
            raise IndexStateError(
                f"{weights}: weights {loaded.weights_hash} differ from the store's {wanted}; queries must be "
                "embedded by the model that made the store"
            )
    raise IndexStateError(
        f"the store was embedded with weights {wanted} ({source}), which are not available here; pass that "
        "checkpoint with --weights"
    )


def _check_readout(model_meta: dict[str, Any], loaded: LoadedModel) -> None:
    """The weights hash covers the weights, not how their tokens are read out: the same weights under another
    pooling make other vectors, refused like other weights.
    """
    recorded = model_meta.get("pooling")
    if recorded and recorded != loaded.model.pooling:
        raise IndexStateError(
            f"{loaded.source}: reads its tokens out as {loaded.model.pooling!r}, the store's were read out as "
            f"{recorded!r}; queries must be embedded the way the store was (pass the checkpoint that made it)"
        )


def _candidates(model_meta: dict[str, Any], weights: str | Path | None) -> list[Path | str]:
    """Checkpoint paths, or a random init's config as JSON (key order kept: it fixes the init order), to try in order."""
    if weights is not None:
        return [Path(weights)]
    source = str(model_meta.get("weights_source", ""))
    if source.startswith("random-init"):
        return [json.dumps(model_meta["config"])]
    return [Path(source), PACKAGED_WEIGHTS]


def _checkpoint(path: Path, layout: str | None = None) -> LoadedModel:
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint not found")
    stat = path.stat()
    return _cached_checkpoint(str(path.resolve()), stat.st_size, stat.st_mtime_ns, layout)


@functools.lru_cache(maxsize=4)
def _cached_checkpoint(path: str, size: int, mtime_ns: int, layout: str | None) -> LoadedModel:
    if path.lower().endswith(PUBLISHED_SUFFIXES):
        return load_published(path, layout)
    return load_checkpoint(path)


@functools.lru_cache(maxsize=4)
def _random_init(config_json: str) -> LoadedModel:
    return random_init(config_from_dict(json.loads(config_json)))
