"""Major TOM embedding datasets (Core-S2L1C-SSL4EO, Core-S1RTC-SSL4EO, Core-S2RGB-DINOv2, Core-S2RGB-SigLIP).

Specification followed: "Global and Dense Embeddings of Earth: Major TOM Floating in the Latent Space"
(Czerkawski et al. 2024, https://arxiv.org/abs/2412.05600) and the dataset cards at
https://huggingface.co/Major-TOM, as TorchGeo 0.9's ``MajorTOMEmbeddings`` reads them:

- Parquet files (``<dataset>/embeddings/part_*.parquet``), one row per fragment of 224 x 224 px (10 m: 2,240 m) cut
  from a Major TOM grid cell;
- columns ``unique_id``, ``embedding`` (list of float32), ``timestamp`` (acquisition time of the product),
  ``product_id``, ``grid_cell``, ``grid_row_u``, ``grid_col_r``, ``geometry`` (WKB footprint of the fragment in
  EPSG:4326), ``centre_lat``, ``centre_lon``, ``utm_footprint``, ``utm_crs``, ``pixel_bbox``;
- no quantisation (float32).

The model is the dataset's: its name is read from a ``Core-*`` folder in the path; without one, from the vector
length where only one dataset has it (1,024: DINOv2, 1,152: SigLIP); 2,048 (SSL4EO, both Sentinel-1 and -2)
needs the folder. Row groups are pruned on ``centre_lon``/``centre_lat`` and ``timestamp`` statistics.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa

from ofa_embed.errors import ProductError
from ofa_embed.interop.chips import ChipSpec
from ofa_embed.interop.product import Product

__all__ = ["DATASETS", "SPEC", "product_for"]

CARDS = "https://huggingface.co/Major-TOM"
DATASETS = {
    "Core-S2L1C-SSL4EO": 2048, "Core-S1RTC-SSL4EO": 2048, "Core-S2RGB-DINOv2": 1024, "Core-S2RGB-SigLIP": 1152,
}
_DATASET = re.compile(r"^Core-[A-Za-z0-9]+-[A-Za-z0-9]+$")


def _names(table: pa.Table, stem: str, rows: np.ndarray) -> list[str]:
    if "unique_id" in table.column_names:
        return [str(v) for v in table.column("unique_id").to_pylist()]
    return [f"{stem}:{int(r)}" for r in rows]


SPEC = ChipSpec(("embedding",), ("timestamp",), _names, 2240.0, 224)


def product_for(path: Path, dimension: int) -> Product:
    """The Major TOM dataset a file belongs to.

    Raises:
        ProductError: the dataset cannot be told, or its vectors are not the length it documents.
    """
    folder = next((part for part in reversed(path.parent.parts) if _DATASET.match(part)), None)
    if folder is None:
        matching = [name for name, dim in DATASETS.items() if dim == dimension]
        if len(matching) != 1:
            raise ProductError(f"{path}: {dimension}-d vectors of {' or '.join(matching) or 'no known Major TOM dataset'}; "
                               "keep the file under its dataset folder (Core-S2L1C-SSL4EO/...)")
        folder = matching[0]
    if folder in DATASETS and DATASETS[folder] != dimension:
        raise ProductError(f"{path}: {dimension}-d vectors, but {folder} holds {DATASETS[folder]}-d ones")
    model = folder.rsplit("-", 1)[1]
    return Product("majortom", f"Major-TOM/{folder}", "1", model, dimension, "chip", 2240.0, "single_acquisition",
                   {"method": "none", "original_dtype": "float32"}, "CC-BY-SA-4.0",
                   {"documentation": f"{CARDS}/{folder}", "model": "https://arxiv.org/abs/2412.05600",
                    "source-data": f"{CARDS}/{folder.split('-')[0]}-{folder.split('-')[1]}"})
