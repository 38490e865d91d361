"""Tile colours: embeddings to RGB by their first three principal components, columns by ramp or palette.

Every function returns ``(N, 3)`` uint8 RGB and the legend that explains it (a JSON-able dict the page and
the static view both draw): ``{"type": "text", "text": ...}``, ``{"type": "ramp", "label", "low", "high",
"stops": [[r, g, b], ...]}`` or ``{"type": "classes", "items": [[name, [r, g, b]], ...]}``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MISSING", "PCA", "categorical", "column_colours", "pca_rgb", "ramp", "stretch"]

MISSING = (160, 160, 160)  # a tile without a value
STRETCH = (2.0, 98.0)  # percentiles mapped to the ends of a channel or ramp: robust to a few outliers
MAX_CLASSES = 20  # beyond this many classes the rarest share one "other" colour


class PCA:
    """The first three principal components of embeddings, fitted on a sample, with deterministic signs.

    Each component's sign makes its largest-magnitude loading positive (scikit-learn's ``svd_flip``), so
    the same store always gets the same colours.
    """

    def __init__(self, sample: np.ndarray) -> None:
        """Fit on ``sample`` ``(S, D)`` float embeddings (S >= 2)."""
        sample = np.asarray(sample, np.float64)
        self.mean = sample.mean(axis=0)
        centred = sample - self.mean
        # eigenvectors of the D x D covariance: the SVD of the S x D sample gives the same, far slower for S >> D
        variance, vectors = np.linalg.eigh(centred.T @ centred / max(len(sample) - 1, 1))
        variance, components = np.clip(variance[::-1], 0, None), vectors[:, ::-1].T[:3]
        signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
        self.components = components * signs[:, None]
        total = variance.sum()
        self.explained = (variance[:3] / total).tolist() if total > 0 else [0.0] * len(components)

    def project(self, embeddings: np.ndarray) -> np.ndarray:
        """``(N, 3)`` component scores of ``embeddings`` ``(N, D)`` (zero columns when D < 3)."""
        scores = (np.asarray(embeddings, np.float64) - self.mean) @ self.components.T
        return np.pad(scores, ((0, 0), (0, 3 - scores.shape[1])))


def stretch(values: np.ndarray, low: float | None = None, high: float | None = None) -> tuple[np.ndarray, float, float]:
    """``values`` mapped to [0, 1] between their 2nd and 98th percentiles (or ``low``/``high``), clipped;
    NaN stays NaN. Returns the mapped values and the two ends used.
    """
    finite = values[np.isfinite(values)]
    if low is None or high is None:
        low, high = (float(v) for v in np.percentile(finite, STRETCH)) if finite.size else (0.0, 1.0)
    span = high - low if high > low else 1.0
    return np.clip((values - low) / span, 0.0, 1.0), low, high


def pca_rgb(pca: PCA, scores: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """``(N, 3)`` uint8: each principal component stretched to one channel (PC1 red, PC2 green, PC3 blue)."""
    rgb = np.empty(scores.shape, np.uint8)
    for channel in range(3):
        mapped, _, _ = stretch(scores[:, channel])
        rgb[:, channel] = np.round(np.nan_to_num(mapped) * 255).astype(np.uint8)
    shares = ", ".join(f"{100 * v:.0f}" for v in pca.explained)
    legend = {"type": "text", "text": f"colour: embedding principal components 1-3 as red, green, blue "
                                      f"({shares} % of the variance), {STRETCH[0]:g}-{STRETCH[1]:g} % stretch"}
    return rgb, legend


def ramp(values: np.ndarray, label: str, colormap: str = "viridis", *, robust: bool = True,
         format_value: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Numbers to a matplotlib colour map, stretched between percentiles 2 and 98 (``robust``) or min and max."""
    from matplotlib import colormaps

    values = np.asarray(values, np.float64)
    finite = values[np.isfinite(values)]
    if robust or not finite.size:
        mapped, low, high = stretch(values)
    else:
        mapped, low, high = stretch(values, float(finite.min()), float(finite.max()))
    lut = np.round(colormaps[colormap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    rgb = lut[np.round(np.nan_to_num(mapped) * 255).astype(int)]
    rgb[~np.isfinite(values)] = MISSING
    show = format_value or (lambda v: f"{v:.4g}")
    legend = {"type": "ramp", "label": label, "low": show(low), "high": show(high),
              "stops": lut[::32].tolist() + [lut[-1].tolist()]}
    return rgb, legend


def categorical(values: Iterable[Any], order: list[Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Classes to matplotlib's tab10/tab20 colours, in ``order`` (default: most frequent first); beyond
    :data:`MAX_CLASSES` the rarest share one grey "other".
    """
    from matplotlib import colormaps

    series = pd.Series(list(values), dtype=object).map(lambda v: None if v is None or v is pd.NaT or (
        isinstance(v, float) and np.isnan(v)) else str(v))
    names = [str(v) for v in order] if order is not None else list(series.value_counts().index)
    shown = names[: MAX_CLASSES - 1] if len(names) > MAX_CLASSES else names
    table = colormaps["tab10" if len(shown) <= 10 else "tab20"]
    colours = {name: [int(round(c * 255)) for c in table(i % table.N)[:3]] for i, name in enumerate(shown)}
    rgb = np.array([colours.get(v, list(MISSING)) if v is not None else list(MISSING) for v in series], np.uint8).reshape(-1, 3)
    items = [[name, colours[name]] for name in shown]
    if len(names) > len(shown):
        items.append([f"{len(names) - len(shown)} other classes", list(MISSING)])
    return rgb, {"type": "classes", "items": items}


def column_colours(values: pd.Series, label: str) -> tuple[np.ndarray, dict[str, Any]]:
    """A store column's colours: numbers and times on a ramp, anything else as classes."""
    if pd.api.types.is_datetime64_any_dtype(values):
        days = (values - pd.Timestamp("1970-01-01", tz=values.dt.tz)).dt.total_seconds().to_numpy() / 86400
        return ramp(days, label, format_value=lambda d: str((pd.Timestamp("1970-01-01") + pd.Timedelta(days=d)).date()))
    if pd.api.types.is_bool_dtype(values):
        return categorical(values.astype(str), order=["False", "True"])
    if pd.api.types.is_numeric_dtype(values):
        return ramp(values.to_numpy(np.float64), label)
    return categorical(values)
