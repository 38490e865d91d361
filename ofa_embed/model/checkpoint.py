"""Checkpoint files: safetensors weights with the model's JSON config in the file header.

Layout of a checkpoint (one ``.safetensors`` file)::

    tensors           the model's state dict (float32 or float16)
    __metadata__      {"format": "ofa-embed-checkpoint", "format_version": "1",
                       "config": <OFAConfig as JSON>, "source": <free text, e.g. training run>}

The weights hash identifies the tensors, independent of header text and file name: SHA-256 over the
sorted tensor names, dtypes, shapes and bytes, first 16 hex digits.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from ofa_embed.atomic import atomic_target
from ofa_embed.errors import WeightsError
from ofa_embed.model import DEFAULT_MODEL, OFAConfig, OFANet, create_model

FORMAT = "ofa-embed-checkpoint"
FORMAT_VERSION = "1"
RANDOM_INIT_SEED = 0


@dataclass(frozen=True)
class LoadedModel:
    """A backbone with what identifies its weights.

    Attributes:
        model: the backbone in eval mode.
        weights_hash: 16-hex content hash of the weights.
        source: where the weights come from (a path, or ``random-init(seed=0)``).
        pretrained: False for a random initialisation.
    """

    model: OFANet
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
    model: OFANet, path: str | Path, *, dtype: torch.dtype = torch.float32, source: str = ""
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
    config = OFAConfig.from_dict(json.loads(metadata["config"]))
    model = create_model(config)
    result = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise WeightsError(
            f"{path}: weights do not match config {config.name}: missing {result.missing_keys[:3]}, "
            f"unexpected {result.unexpected_keys[:3]}"
        )
    return LoadedModel(model.eval(), weights_hash(state), str(path), pretrained=True)


def random_init(config: str | OFAConfig = DEFAULT_MODEL) -> LoadedModel:
    """The seeded random initialisation used until pre-trained weights are given."""
    model = create_model(config, seed=RANDOM_INIT_SEED).eval()
    return LoadedModel(model, weights_hash(model.state_dict()), f"random-init(seed={RANDOM_INIT_SEED})", False)
