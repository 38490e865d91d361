"""A store described in STAC: one Collection, one Item per store file and per embedding field, Embeddings extension.

The ``emb:`` fields follow the STAC Embedding extension's requirements (prefix ``emb``, schema v0.0.1, status
Proposal; ``requirements.md`` of the CNG embeddings sprint, March 2026): on the Collection ``emb:type`` (``pixel``
or ``chip``), ``emb:dimensions``, ``data_type``, ``gsd``, ``emb:chip_layout`` (``layout_type``, ``chip_size``,
``stride``, ``grid_id``) and ``emb:temporal_resolution``, with links ``emb:model`` and ``emb:source-data``; on each
Item ``emb:quantization`` (``method``, ``original_dtype``, ``quantized_dtype``, ``scale``, ``offset``, ``link``),
``emb:runtime_parameters`` and ``processing:datetime``, and an ``embeddings`` asset pointing at the file. Items of
embedding fields (``STORE/fields/*.tif``) add ``proj:`` (code, shape, transform) and ``raster:bands``.

Everything is read from the store files' own footers (``emb``, ``ofa_embed``, ``geo``), so the description and the
files say the same: a store of this project and an imported product (:mod:`ofa_embed.interop.importer`) alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ofa_embed.location import AnyPath, as_location
from ofa_embed.store import describe_store, read_metadata
from ofa_embed.store.quantise import stac_quantization

__all__ = ["EMB_FIELDS", "EMB_LINKS", "EMB_SCHEMA", "StacReport", "imported_quantization", "write_stac"]

EMB_SCHEMA = "https://stac-extensions.github.io/embeddings/v0.0.1/schema.json"
PROJ_SCHEMA = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER_SCHEMA = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
PROCESSING_SCHEMA = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
# the extension's published field names and link relations (requirements.md, v0.0.1)
EMB_FIELDS = ("emb:type", "emb:dimensions", "emb:chip_layout", "emb:temporal_resolution", "emb:runtime_parameters",
              "emb:preprocessing", "emb:postprocessing", "emb:quantization", "emb:fit_for_use", "emb:uncertainty")
EMB_LINKS = ("emb:model", "emb:decoder", "emb:source-data", "emb:benchmark")
MODEL_CARD = "https://github.com/ofa-embed/ofa-embed/blob/main/ofa_embed/data/MODEL_CARD.md"


@dataclass
class StacReport:
    """What was written: the collection file and the item files."""

    collection: str
    items: list[str]


def _quantization(emb: dict[str, Any], imported: dict[str, Any] | None) -> dict[str, Any]:
    """The Item's ``emb:quantization``: the file's own record where it has one (``emb`` 0.2.0 and later, the
    same object), else made as it would be for the older file.
    """
    if "emb:quantization" in emb:
        return dict(emb["emb:quantization"])
    if imported:
        return imported_quantization(imported["quantization"])
    return stac_quantization(emb.get("quantization", "float32"))


def imported_quantization(quantization: dict[str, Any]) -> dict[str, Any]:
    """``emb:quantization`` of an imported product: how the product stored its vectors, and where it says so."""
    fields = {k: v for k, v in quantization.items() if k in ("method", "original_dtype", "quantized_dtype", "scale", "offset")}
    return fields | ({"link": {"href": quantization["link"], "rel": "about"}} if "link" in quantization else {})


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value).astimezone(UTC) if value else None


def write_stac(store: str | AnyPath, out: str | Path) -> StacReport:
    """Write ``collection.json`` and ``items/<file>.json`` describing ``store`` into ``out``.

    Raises:
        StoreError: the store is missing or empty.
    """
    import pystac

    root = as_location(store)
    files = describe_store(root)
    metas = [read_metadata(f.path) for f in files]
    first = metas[0]
    imported = first.get("imported")
    tiling = first.get("tiling", {})
    dtype = files[0].embedding_dtype
    out = Path(out)
    items: list[pystac.Item] = []
    for described, meta in zip(files, metas, strict=True):
        bbox = meta["geo"]["columns"]["geometry"]["bbox"]
        start, end = (_time(t) for t in meta["emb"].get("datetime_range", [None, None]))
        geometry = {"type": "Polygon", "coordinates": [[[bbox[0], bbox[1]], [bbox[2], bbox[1]], [bbox[2], bbox[3]],
                                                        [bbox[0], bbox[3]], [bbox[0], bbox[1]]]]}
        properties: dict[str, Any] = {
            "emb:quantization": _quantization(meta["emb"], meta.get("imported")),
            "emb:runtime_parameters": {"tiling": meta.get("tiling"), "modality": meta.get("modality", {}).get("name"),
                                       "pooling": meta["model"].get("pooling")},
            "processing:datetime": meta.get("created"),
        }
        if start and end and start != end:
            properties |= {"start_datetime": start.isoformat(), "end_datetime": end.isoformat()}
        when = start if start == end else None
        if start is None:
            # STAC needs a time; a scene whose files name none gets the time its embeddings were made, and says so
            when = _time(meta.get("created")) or datetime.now(UTC)
            properties["description"] = "acquisition time unknown: datetime is when these embeddings were made"
        item = pystac.Item(Path(described.name).with_suffix("").as_posix().replace("/", "__"), geometry, bbox,
                           when, properties,
                           stac_extensions=[EMB_SCHEMA, PROCESSING_SCHEMA])
        item.add_asset("embeddings", pystac.Asset(str(described.path), media_type="application/vnd.apache.parquet",
                                                  roles=["data"], extra_fields={"table:row_count": described.rows}))
        items.append(item)
    items += _field_items(root)
    west = min(i.bbox[0] for i in items if i.bbox)
    south = min(i.bbox[1] for i in items if i.bbox)
    east = max(i.bbox[2] for i in items if i.bbox)
    north = max(i.bbox[3] for i in items if i.bbox)
    times = [t for m in metas for t in (_time(x) for x in m["emb"].get("datetime_range", [])) if t]
    model_href = (imported or {}).get("links", {}).get("model") or (
        first["model"].get("weights_source") if str(first["model"].get("weights_source", "")).startswith("http") else MODEL_CARD)
    source_href = (imported or {}).get("links", {}).get("source-data") or str(first.get("scene", {}).get("path")
                                                                                  or first.get("chips", {}).get("roots", [""])[0])
    tile = tiling.get("tile_size")
    extra: dict[str, Any] = {
        "emb:type": "chip",  # one vector a tile: a pixel product's pixels are pooled to tiles on import
        "emb:dimensions": files[0].dimension,
        "data_type": dtype,
        "emb:temporal_resolution": (imported or {}).get("temporal_resolution", "single_acquisition"),
        "ofa_embed:weights_hash": files[0].weights_hash,
    }
    if imported and imported["kind"] == "pixel":
        extra["gsd"] = imported["gsd"] * (tile or 1)
    if tile:
        extra["emb:chip_layout"] = {"layout_type": "regular_grid", "chip_size": [tile, tile],
                                    "stride": [tiling.get("stride", tile)] * 2}
    collection = pystac.Collection(
        id=root.name or "store",
        description=(f"Embeddings of {imported['product']} {imported['version']} ({imported['model']}), imported by "
                     "ofa-embed" if imported else f"Embeddings of {first['model']['name']} made by ofa-embed"),
        extent=pystac.Extent(pystac.SpatialExtent([[west, south, east, north]]),
                             pystac.TemporalExtent([[min(times) if times else None, max(times) if times else None]])),
        license=(imported or {}).get("license", "other"),
        stac_extensions=[EMB_SCHEMA], extra_fields=extra,
    )
    collection.add_link(pystac.Link("emb:model", model_href, media_type="text/html",
                                    title=(f"{imported['model']}" if imported else first["model"]["name"])))
    collection.add_link(pystac.Link("emb:source-data", source_href, title="source data"))
    collection.add_items(items)
    collection.normalize_hrefs(str(out))
    collection.save(pystac.CatalogType.SELF_CONTAINED)
    return StacReport(str(out / "collection.json"), sorted(str(Path(i.get_self_href() or "")) for i in items))


def _field_items(root: AnyPath) -> list[Any]:
    """Items of the store's embedding fields (``STORE/fields/*.tif``), with ``proj:`` and ``raster:`` fields."""
    import pystac

    if not isinstance(root, Path) or not (root / "fields").is_dir():  # fields of a remote store: not described yet
        return []
    folder = root / "fields"
    import rasterio
    from rasterio.warp import transform_bounds

    items = []
    for path in sorted(folder.glob("*.tif")):
        with rasterio.open(path) as src:
            bounds = list(transform_bounds(src.crs, "OGC:CRS84", *src.bounds))
            item = pystac.Item(f"field__{path.stem}", {"type": "Polygon", "coordinates": [[
                [bounds[0], bounds[1]], [bounds[2], bounds[1]], [bounds[2], bounds[3]], [bounds[0], bounds[3]],
                [bounds[0], bounds[1]]]]}, bounds, datetime.now(UTC), {
                "emb:type": "pixel", "emb:dimensions": src.count,
                "proj:code": src.crs.to_string() if src.crs.to_epsg() else None,
                "proj:wkt2": None if src.crs.to_epsg() else src.crs.to_wkt(),
                "proj:shape": [src.height, src.width], "proj:transform": list(src.transform)[:6],
            }, stac_extensions=[EMB_SCHEMA, PROJ_SCHEMA, RASTER_SCHEMA])
            item.add_asset("embeddings", pystac.Asset(str(path), media_type=pystac.MediaType.COG, roles=["data"],
                                                      extra_fields={"raster:bands": [
                                                          {"data_type": src.dtypes[i], "nodata": src.nodata}
                                                          for i in range(src.count)]}))
        items.append(item)
    return items
