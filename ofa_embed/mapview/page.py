"""The self-contained HTML page: layers encoded as binary arrays (base64) in a JSON block of ``page.html``.

Coordinates are Web Mercator metres relative to the layers' mean (float32: sub-metre precision within
about 4,000 km of it, 2 m at the far side of the Earth), 32 bytes per tile, colours 3 bytes. Tooltip
columns are dictionary-encoded where values repeat (scene, date, class), tile ids are 8 raw bytes. A store
of 10^6 tiles makes a page of about 60-70 MB.
"""

from __future__ import annotations

import base64
import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ofa_embed.atomic import atomic_target
from ofa_embed.mapview.layers import Layer

__all__ = ["mercator", "write_page"]

EARTH_RADIUS_M = 6378137.0
MAX_LATITUDE = 85.05112878
_HEX_ID = re.compile(r"^[0-9a-f]{16}$")


def mercator(lonlat: np.ndarray) -> np.ndarray:
    """Web Mercator (EPSG:3857) metres of longitude/latitude points ``(..., 2)``."""
    lon = np.radians(lonlat[..., 0])
    lat = np.radians(np.clip(lonlat[..., 1], -MAX_LATITUDE, MAX_LATITUDE))
    return np.stack([EARTH_RADIUS_M * lon, EARTH_RADIUS_M * np.log(np.tan(np.pi / 4 + lat / 2))], axis=-1)


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat(timespec="seconds") if value.time().isoformat() != "00:00:00" else str(value.date())
    return str(value)


def encode_field(name: str, values: Any) -> dict[str, Any]:
    """One tooltip column: numbers as float32, 16-hex ids as bytes, repeating text dictionary-encoded."""
    series = pd.Series(values).reset_index(drop=True)
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return {"name": name, "kind": "num", "data": _b64(series.to_numpy(np.float32, na_value=np.nan))}
    codes, uniques = pd.factorize(series)  # missing values get code -1
    texts = [_text(v) for v in uniques]
    if len(texts) == len(series) and texts and all(_HEX_ID.match(t or "") for t in texts):
        # all distinct, so in row order: the ids of a store
        raw = np.frombuffer(bytes.fromhex("".join(texts)), np.uint8)  # type: ignore[arg-type]
        return {"name": name, "kind": "hex", "width": 8, "data": _b64(raw)}
    if len(texts) <= max(1000, len(series) // 4):
        wide = len(texts) + 1 > 65535
        codes = np.where(codes < 0, len(texts), codes).astype(np.uint32 if wide else np.uint16)
        return {"name": name, "kind": "cat", "values": [*texts, None], "codes": _b64(codes), "wide": wide}
    return {"name": name, "kind": "str", "values": [texts[c] if c >= 0 else None for c in codes]}


def write_page(out: Path, layers: list[Layer], *, title: str, notes: list[str], basemap: str | None) -> int:
    """Write the page to ``out`` atomically; returns its size in bytes."""
    projected = [mercator(layer.corners) for layer in layers]
    everything = np.concatenate([p.reshape(-1, 2) for p in projected])
    origin = everything.mean(axis=0)
    low, high = everything.min(axis=0) - origin, everything.max(axis=0) - origin
    data = {
        "title": title, "notes": notes, "basemap": basemap, "origin": origin.tolist(),
        "bounds": [float(low[0]), float(low[1]), float(high[0]), float(high[1])],
        "layers": [{
            "name": layer.name, "count": layer.count, "visible": layer.visible, "opacity": layer.opacity,
            "outline": layer.outline, "legend": layer.legend,
            "coords": _b64((xy - origin).astype(np.float32)), "colors": _b64(layer.colors.astype(np.uint8)),
            "fields": [encode_field(name, values) for name, values in layer.fields.items()],
        } for layer, xy in zip(layers, projected, strict=True)],
    }
    # "</" would end the <script> element holding the data early
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    template = files("ofa_embed.mapview").joinpath("page.html").read_text(encoding="utf-8")
    # the data first: a title naming "__DATA__" must not receive it; the <title> comes before the data
    html = template.replace("__DATA__", payload, 1).replace("__TITLE__", _escape(title), 1)
    with atomic_target(out) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return out.stat().st_size


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
