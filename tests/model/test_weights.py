"""The default checkpoint shipped in the package: loads, matches its model card, is used by default."""

import re
from pathlib import Path

from ofa_embed.model.checkpoint import load_checkpoint
from ofa_embed.model.weights import PACKAGED_WEIGHTS, PACKAGED_WEIGHTS_HASH, load_weights

CARD = Path(PACKAGED_WEIGHTS).parent / "MODEL_CARD.md"


def test_shipped_checkpoint_loads_and_its_hash_matches_the_card():
    loaded = load_checkpoint(PACKAGED_WEIGHTS)
    card_hash = re.search(r"weights hash: `([0-9a-f]{16})`", CARD.read_text()).group(1)
    assert loaded.weights_hash == card_hash == PACKAGED_WEIGHTS_HASH
    assert loaded.model.config.name == "ofa_tiny" and loaded.pretrained
    assert PACKAGED_WEIGHTS.stat().st_size < 15 * 2**20


def test_extract_uses_the_shipped_checkpoint_by_default():
    default = load_weights()
    assert default.pretrained and Path(default.source) == PACKAGED_WEIGHTS
