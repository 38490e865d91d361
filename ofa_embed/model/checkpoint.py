"""Checkpoint files: safetensors weights with the model's JSON config in the file header.

Layout of a checkpoint (one ``.safetensors`` file)::

    tensors           the model's state dict (float32 or float16)
    __metadata__      {"format": "ofa-embed-checkpoint", "format_version": "1",
                       "config": <OFAConfig as JSON>, "source": <free text, e.g. training run>}

The weights hash identifies the tensors, independent of header text and file name: SHA-256 over the
sorted tensor names, dtypes, shapes and bytes, first 16 hex digits.

Published DOFA files (flat ``.pth`` state dicts) are converted once into this format by
:func:`load_published` and cached under :func:`weights_cache_dir`, keyed by the source file's SHA-256;
the converted file records that SHA-256 and the model family in its config.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from ofa_embed.atomic import atomic_target
from ofa_embed.errors import WeightsError
from ofa_embed.model import DEFAULT_MODEL, OFANet, create_model
from ofa_embed.model.config import DOFAConfig, ModelConfig, config_from_dict
from ofa_embed.model.dofa import DOFA, PUBLISHED_WEIGHTS, adapt_published, create_dofa
from ofa_embed.model.layers import KERNEL_LAYOUTS

FORMAT = "ofa-embed-checkpoint"
FORMAT_VERSION = "1"
RANDOM_INIT_SEED = 0

Backbone = OFANet | DOFA
# torchvision's convention for released files: the name ends in the first 8 hex digits of the SHA-256
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8})$")


@dataclass(frozen=True)
class LoadedModel:
    """A backbone with what identifies its weights.

    Attributes:
        model: the backbone in eval mode.
        weights_hash: 16-hex content hash of the weights.
        source: where the weights come from (a path, or ``random-init(seed=0)``).
        pretrained: False for a random initialisation.
    """

    model: Backbone
    weights_hash: str
    source: str
    pretrained: bool


def weights_hash(state_dict: dict[str, torch.Tensor]) -> str:
    """16-hex content hash of ``state_dict``: sha256 over each tensor's name, dtype, shape and bytes,
    in name order (independent of device and insertion order).
    """
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]


def save_checkpoint(
    model: Backbone, path: str | Path, *, dtype: torch.dtype = torch.float32, source: str = ""
) -> str:
    """Write ``model`` to ``path`` atomically; returns the weights hash of what was written."""
    path = Path(path)
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(model.config.to_dict()),
        "source": source,
    }
    with atomic_target(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return weights_hash(state)


def load_checkpoint(path: str | Path) -> LoadedModel:
    """Load a checkpoint written by :func:`save_checkpoint` into a float32 model in eval mode.

    Raises:
        WeightsError: missing or unreadable file, foreign format, or tensors that do not match the
            config (all keys must match exactly: a checkpoint is always a complete backbone).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors checkpoint ({exc})") from None
    if metadata.get("format") != FORMAT:
        raise WeightsError(f"{path}: not an ofa-embed checkpoint (header has no '{FORMAT}' format)")
    try:
        config = config_from_dict(json.loads(metadata["config"]))
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"{path}: unusable model config ({exc})") from None
    model = build_model(config)
    result = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise WeightsError(
            f"{path}: weights do not match config {config.name}: missing {result.missing_keys[:3]}, "
            f"unexpected {result.unexpected_keys[:3]}"
        )
    return LoadedModel(model.eval(), weights_hash(state), str(path), pretrained=True)


def build_model(config: ModelConfig, seed: int = RANDOM_INIT_SEED) -> Backbone:
    """A seeded, randomly initialised backbone of either family."""
    return create_dofa(config, seed=seed) if isinstance(config, DOFAConfig) else create_model(config, seed=seed)


def read_out_as(model: Backbone, pooling: str) -> Backbone:
    """``model``'s weights in a backbone whose readout is ``pooling`` (``model`` itself where it already is):
    other vectors from the same weights, so the weights hash stays and the store records the readout.
    """
    if pooling == model.config.pooling:
        return model
    other = build_model(replace(model.config, pooling=pooling))
    other.load_state_dict(model.state_dict())
    return other.train(model.training)


def random_init(config: str | ModelConfig = DEFAULT_MODEL) -> LoadedModel:
    """The seeded random initialisation used until pre-trained weights are given."""
    model = (create_model(config, seed=RANDOM_INIT_SEED) if isinstance(config, str) else build_model(config)).eval()
    return LoadedModel(model, weights_hash(model.state_dict()), f"random-init(seed={RANDOM_INIT_SEED})", False)


def weights_cache_dir() -> Path:
    """Where converted weights are kept: ``$OFA_EMBED_CACHE``, else ``$XDG_CACHE_HOME/ofa-embed``, else
    ``~/.cache/ofa-embed``; plus ``/weights``.
    """
    root = os.environ.get("OFA_EMBED_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ofa-embed"
    return Path(root) / "weights"


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 8 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 23):
            digest.update(block)
    return digest.hexdigest()


def published_layout(path: Path, sha256: str, kernel_layout: str | None) -> str:
    """The kernel layout of a published DOFA file: the one given, else that of a recognised release.

    Raises:
        WeightsError: an unknown layout; a file named as a release whose content is not that release;
            an unrecognised file with no layout given (shapes cannot tell the layouts apart).
    """
    if kernel_layout is not None and kernel_layout not in KERNEL_LAYOUTS:
        raise WeightsError(f"{path}: unknown weights layout {kernel_layout!r}; choose one of {', '.join(KERNEL_LAYOUTS)}")
    match = _HASH_IN_NAME.search(path.stem)
    prefix = match.group(1) if match else ""
    release = PUBLISHED_WEIGHTS.get(prefix)
    if release is not None and not sha256.startswith(prefix):
        raise WeightsError(f"{path}: named as the release {release.filename}, but its SHA-256 is {sha256[:8]}...: "
                           f"a renamed or damaged file; download it again from {release.url}")
    if kernel_layout is not None:
        return kernel_layout
    if release is None:
        raise WeightsError(
            f"{path}: not a recognised DOFA release (known: {', '.join(w.filename for w in PUBLISHED_WEIGHTS.values())}); "
            "its kernel layout cannot be told from its shapes: pass --weights-layout bands_first (TorchGeo's files) "
            "or --weights-layout legacy (DOFA's first release)"
        )
    return release.kernel_layout


def load_published(path: str | Path, kernel_layout: str | None = None) -> LoadedModel:
    """A published DOFA ``.pth`` state dict as a loaded model, converted once and cached.

    Args:
        path: the ``.pth`` file (``torch.load(weights_only=True)``: no code runs from it).
        kernel_layout: ``bands_first`` or ``legacy``; needed unless the file is a recognised release.

    Raises:
        WeightsError: unreadable, unrecognised without a layout, or not a DOFA state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint not found")
    sha256 = file_sha256(path)
    layout = published_layout(path, sha256, kernel_layout)
    cached = weights_cache_dir() / f"{path.stem}-{sha256[:16]}-{layout}.safetensors"
    if not cached.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as exc:
            raise WeightsError(f"{path}: not a readable PyTorch state dict ({str(exc).splitlines()[0]})") from None
        if isinstance(state, dict) and set(state) <= {"model", "state_dict"} and len(state) == 1:
            state = next(iter(state.values()))
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise WeightsError(f"{path}: not a flat state dict of tensors")
        config, converted = adapt_published(state, layout, source=str(path), source_sha256=sha256)
        model = build_model(config)
        model.load_state_dict(converted, strict=True)
        cached.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(model, cached, source=f"converted from {path.name} (sha256 {sha256})")
    return replace(load_checkpoint(cached), source=str(path))
