"""A pixel product's pixels kept as an embedding field of the store (``import --fields``).

The field of a :class:`~ofa_embed.interop.dense.DensePart` is written by the field writer of
:mod:`ofa_embed.field_files` (``STORE/fields/<scene>.tif``, one COG a scene), so that ``read_field``, ``probe
--dense``, ``predict --dense``, ``change`` and ``ofa-embed stac`` read it as they read a field made here:

- the product's own grid and resolution (one field pixel a product pixel: ``patch_px`` 1), cut to the whole tiles
  the import read (its ``--bbox`` window widened to tiles), turned north-up where the product is stored bottom-up;
- the values the product documents, de-quantised (AEF's ``sign(q) (|q| / 127.5)^2``, TESSERA's ``q * scale``),
  NaN where the product has no data; stored as ``float32`` (the de-quantised values exactly: the default),
  ``float16`` or the field writer's own ``int8`` (``--field-dtype``);
- its record (the COG's tag and the store file's ``field`` metadata) names the product as the ``model`` (the same
  identity its rows carry, so commands that compare fields refuse a mix), the product's quantisation
  (``source_quantization``) and how the field's own ``int8`` is read (``quantization``).

Opt-in: a field is the product again, at four times its int8 size in float32, and is built in memory before its
COG is written, so a field above :data:`FIELD_MAX_BYTES` is refused before anything is read (select less with
``--bbox``).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
from affine import Affine

from ofa_embed.errors import ConfigError
from ofa_embed.field_files import FIELDS_DIR, INT8_SCHEME, FieldGrid, field_path, write_field
from ofa_embed.interop.dense import DensePart, tile_range
from ofa_embed.interop.product import model_record
from ofa_embed.location import AnyPath

__all__ = ["FIELD_MAX_BYTES", "FieldCanvas", "check_field_size", "write_part_field"]

FIELD_MAX_BYTES = 2 * 2**30  # float32 values of one field held in memory while it is written


def _extent(part: DensePart, tile: int) -> tuple[int, int, int, int]:
    return tile_range(part.window, tile, part.grid.height, part.grid.width)


def check_field_size(part: DensePart, tile: int) -> None:
    """Refuse a field too large to build in memory.

    Raises:
        ConfigError: its float32 values would exceed :data:`FIELD_MAX_BYTES`.
    """
    r0, r1, c0, c1 = _extent(part, tile)
    size = (r1 - r0) * (c1 - c0) * part.product.dimension * 4
    if size > FIELD_MAX_BYTES:
        raise ConfigError(f"{part.source}: its field would be {r1 - r0} x {c1 - c0} px of {part.product.dimension} "
                          f"values, {size / 2**30:.1f} GiB in memory (at most {FIELD_MAX_BYTES / 2**30:.0f} GiB); "
                          "select less with --bbox, or import without --fields")


class FieldCanvas:
    """The field of one part, filled strip by strip as the import reads it (NaN where the product has no data).

    Args:
        part: the part read.
        tile: the import's tile size (the field covers the whole tiles read).
    """

    def __init__(self, part: DensePart, tile: int) -> None:
        self.part = part
        self.r0, r1, self.c0, c1 = _extent(part, tile)
        self.values = np.full((part.product.dimension, r1 - self.r0, c1 - self.c0), np.nan, np.float32)

    def add(self, row: int, col: int, values: np.ndarray, valid: np.ndarray) -> None:
        """Place a strip read at grid ``row``, ``col``: ``(h, w, D)`` values and ``(h, w)`` validity."""
        h, w = valid.shape
        target = self.values[:, row - self.r0 : row - self.r0 + h, col - self.c0 : col - self.c0 + w]
        target[:] = np.where(valid[None], np.moveaxis(values, -1, 0), np.nan)

    def grid(self) -> tuple[FieldGrid, np.ndarray]:
        """The field's grid and its values, north-up (a bottom-up product's rows reversed)."""
        g = self.part.grid
        transform = Affine(g.a, g.b, g.c, g.d, g.e, g.f) @ Affine.translation(self.c0, self.r0)
        values = self.values
        if transform.b == 0 and transform.d == 0 and transform.e > 0:
            transform = Affine(transform.a, 0.0, transform.c, 0.0, -transform.e,
                               transform.f + transform.e * values.shape[1])
            values = values[:, ::-1]
        return FieldGrid(values.shape[2], values.shape[1], transform, g.crs.to_wkt(), 1), np.ascontiguousarray(values)


def write_part_field(store: AnyPath, canvas: FieldCanvas, *, dtype: str, tile: int, min_valid: float,
                     pooling: str) -> dict[str, Any]:
    """Write ``canvas`` as the field of its part in ``store``; its record (for the part's store file).

    Raises:
        StoreError: the field cannot be written (nothing is left).
    """
    part = canvas.part
    product = part.product
    grid, values = canvas.grid()
    quantization = product.quantization
    record = {
        "path": f"{FIELDS_DIR}/{part.name}.tif", "scene": part.name, "dtype": dtype,
        "pixel": (f"the product's own pixel, de-quantised as {quantization.get('formula', 'documented')}; "
                  "nodata where the product has none"),
        "tile_size": tile, "stride": tile, "min_valid": min_valid,
        "quantization": INT8_SCHEME if dtype == "int8" else None,
        "source_quantization": quantization,
        "datetime": part.acquired.isoformat(),
        "model": asdict(model_record(product, pooling)),
        "imported": {"format": product.format, "product": product.product, "version": product.version,
                     "model": product.model, "source": part.source},
        "width": grid.width, "height": grid.height, "transform": list(grid.transform)[:6], "crs": grid.crs,
        "patch_px": 1, "dimension": int(values.shape[0]),
    }
    write_field(field_path(store, part.name), values, grid, dtype, record)
    return record
