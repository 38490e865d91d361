"""``ofa-embed map``: one self-contained HTML page (and optionally a static image) of a store, search hits or
predictions.

Why a page of its own and not a web-map library: folium and most Leaflet wrappers load their scripts
from a CDN, so their pages stay blank offline; lonboard bundles deck.gl, but its standalone export loads
the widget runtime from a CDN too. This page holds its script, style and data (:mod:`.page`), draws on a
plain 2D canvas, and needs no network unless a basemap URL is asked for.

Layers (:mod:`.layers`): the store's tiles, coloured by the first three principal components of their
embeddings (:mod:`.colours`) or by a column; search hits over them, coloured by similarity; predictions,
coloured by class or value; the query tile outlined. From embedding fields (:mod:`.dense`): a segmentation's
class COGs, pixel by pixel, and a change ranking's tiles and pixels, by cosine distance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ofa_embed.errors import MapError
from ofa_embed.location import AnyPath, as_location
from ofa_embed.mapview.dense import change_layers, class_layers
from ofa_embed.mapview.layers import Layer, hits_layer, predictions_layer, query_layer, store_layer
from ofa_embed.mapview.page import write_page
from ofa_embed.mapview.static import write_image

__all__ = ["MapReport", "map"]

HELP = "drag to pan, wheel to zoom, double-click to fit; hover a tile for its values"


@dataclass
class MapReport:
    """What ``map`` wrote.

    Attributes:
        out: the HTML page; bytes: its size.
        image: the static image, when asked; image_bytes: its size.
        layers: ``(name, tiles)`` per layer, bottom first.
        seconds: wall time.
    """

    out: Path
    bytes: int
    image: Path | None = None
    image_bytes: int = 0
    layers: list[tuple[str, int]] = field(default_factory=list)
    seconds: float = 0.0


def map(  # noqa: A001 - the public name the CLI command mirrors; ofa_embed.map never shadows the builtin
    store: str | AnyPath,
    out: str | Path = "map.html",
    *,
    color: str | None = None,
    hits: str | Path | None = None,
    predictions: str | Path | None = None,
    classes: str | Path | None = None,
    change: str | Path | None = None,
    query: str | Path | None = None,
    png: str | Path | None = None,
    basemap: str | None = None,
    title: str | None = None,
) -> MapReport:
    """Write a map of ``store`` to ``out``: one HTML file that works offline.

    Args:
        store: store directory.
        out: the HTML file (written under a temporary name, then renamed).
        color: a store column to colour tiles by (numbers and dates on a ramp, text as classes) instead of
            the embeddings' principal components; ``"change"``: the ``change`` ranking alone.
        hits: a search result (``search --format parquet`` or ``geojson``) drawn over the store.
        predictions: a predictions file (``probe/knn/predict --predict``) drawn over the store, which is
            then hidden until switched on.
        classes: a segmentation's class COG, or the folder of them (``probe/predict --dense --predict``), drawn
            pixel by pixel over the store, which is then hidden until switched on.
        change: a change ranking (``ofa-embed change --out FILE``) drawn over the store by cosine distance, with
            the per-pixel change COGs written beside it.
        query: the query tile to outline: its raster file, or a stored tile's id.
        png: also draw the same view to this image (PNG; SVG etc. by suffix).
        basemap: an XYZ tile URL template (``https://tile.openstreetmap.org/{z}/{x}/{y}.png``) drawn under
            the tiles when the browser can reach it; default none.
        title: the page title (default: the store and its tile count).

    Raises:
        StoreError: missing or empty store. MapError: unreadable hits/predictions/classes/change/query, unknown
        column, a basemap that is not an XYZ template.
    """
    start = time.perf_counter()
    store, out = as_location(store), Path(out)
    if basemap is not None and not all(key in basemap for key in ("{z}", "{x}", "{y}")):
        raise MapError(f"--basemap {basemap!r}: give an XYZ tile URL template with {{z}}, {{x}} and {{y}}")
    if color == "change" and change is None:
        raise MapError("--color change: the change between two times is not a store column; run ofa-embed change "
                       "STORE --before A --after B --out change.parquet, then pass --change change.parquet")
    base, files = store_layer(store, None if color == "change" else color)
    layers: list[Layer] = [base]
    notes = [f"weights {files[0].weights_hash}", HELP]
    if hits is not None:
        base.opacity = 0.45
        layers.append(hits_layer(Path(hits)))
    if predictions is not None:
        base.visible = False
        layers.append(predictions_layer(Path(predictions)))
    if classes is not None:
        base.visible = False
        layers += class_layers(Path(classes))
    if change is not None:
        base.opacity = 0.45
        base.visible = color != "change"  # the ranking alone
        layers += change_layers(Path(change))
    if query is not None:
        layers.append(query_layer(query, base))
    title = title or f"{store.name}: {base.count:,} tiles"
    size = write_page(out, layers, title=title, notes=notes, basemap=basemap)
    report = MapReport(out, size, layers=[(layer.name, layer.count) for layer in layers])
    if png is not None:
        report.image = Path(png)
        report.image_bytes = write_image(report.image, layers, title=title)
    report.seconds = time.perf_counter() - start
    return report
