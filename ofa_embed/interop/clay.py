"""Clay embeddings (v0 and v1.5).

Specification followed: the Clay submission to the CNG geo-embeddings survey
(https://github.com/cloudnativegeo/geo-embeddings-survey, ``data/clay/readme.md``), the Source Cooperative
repositories ``clay/clay-model-v0-embeddings`` and ``clay/lgnd-clay-v1-5-sentinel-2-l2a``, and TorchGeo 0.9's
``ClayEmbeddings``, which reads both:

- GeoParquet (``.gpq``/``.parquet``), one file per MGRS tile and date range (``03WVN_20220610_20220610_v001.gpq``);
- v0 columns: ``index`` (int64, the sub-window within the MGRS tile), ``source_url`` (the source imagery),
  ``date`` (date), ``embeddings`` (list of float32, 768 values), ``geometry`` (polygon, EPSG:4326);
- v1.5: ``embedding`` (1,024 values) and ``datetime`` in place of ``embeddings`` and ``date``;
- chips of 256 x 256 px of Sentinel-2 (10 m: 2,560 m); no quantisation (float32).

Row groups are pruned on a bbox covering and on the date column's statistics where present.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ofa_embed.errors import ProductError
from ofa_embed.interop.chips import ChipSpec
from ofa_embed.interop.product import Product

__all__ = ["SPEC", "VERSIONS", "product_for"]

VERSIONS = {768: "v0", 1024: "v1.5"}
DOCS = {"v0": "https://source.coop/clay/clay-model-v0-embeddings",
        "v1.5": "https://source.coop/clay/lgnd-clay-v1-5-sentinel-2-l2a"}


def _names(table: pa.Table, stem: str, rows: np.ndarray) -> list[str]:
    if "source_url" in table.column_names and "index" in table.column_names:
        return [f"{url}#{index}" for url, index in zip(table.column("source_url").to_pylist(),
                                                        table.column("index").to_pylist(), strict=True)]
    return [f"{stem}:{int(r)}" for r in rows]


SPEC = ChipSpec(("embedding", "embeddings"), ("date", "datetime"), _names, 2560.0, 256)


def product_for(path: Path, dimension: int) -> Product:
    """The Clay release a file belongs to, told by its vector length.

    Raises:
        ProductError: a length no Clay release has.
    """
    version = VERSIONS.get(dimension)
    if version is None:
        raise ProductError(f"{path}: {dimension}-d vectors; Clay's releases hold 768 (v0) or 1024 (v1.5); "
                           "is --format right?")
    return Product("clay", "Clay", version, f"clay-{version}", dimension, "chip", 2560.0, "single_acquisition",
                   {"method": "none", "original_dtype": "float32"}, "ODC-BY-1.0",
                   {"documentation": DOCS[version], "model": "https://clay-foundation.github.io/model/",
                    "source-data": "https://registry.opendata.aws/sentinel-2-l2a-cogs/"})
