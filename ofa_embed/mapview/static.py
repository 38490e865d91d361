"""The map as a static image for reports (``--png``): the same layers, colours and legends, via matplotlib."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ofa_embed.atomic import atomic_target
from ofa_embed.mapview.layers import Layer
from ofa_embed.mapview.page import mercator

__all__ = ["write_image"]


def write_image(out: Path, layers: list[Layer], *, title: str, size_px: int = 1200) -> int:
    """Draw the visible layers in Web Mercator to ``out`` (PNG, or any format matplotlib infers from the
    suffix, such as SVG), atomically; returns its size in bytes.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display: a report image, drawn the same on a server
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import LinearSegmentedColormap, Normalize
    from matplotlib.patches import Patch

    figure, axes = plt.subplots(figsize=(size_px / 100, size_px / 100 * 0.8), dpi=100)
    try:
        shown = [layer for layer in layers if layer.visible]
        projected = [mercator(layer.corners) for layer in shown]
        for layer, xy in zip(shown, projected, strict=True):
            colours = np.concatenate([layer.colors / 255.0, np.full((layer.count, 1), layer.opacity)], axis=1)
            if layer.outline:
                edge = layer.outline["color"] or colours
                collection = PolyCollection(list(xy), facecolors=colours if layer.outline["fill"] else "none",
                                            edgecolors=edge, linewidths=layer.outline["width"] * 0.75)
            else:
                collection = PolyCollection(list(xy), facecolors=colours, edgecolors="none", antialiaseds=False)
            axes.add_collection(collection)
        everything = np.concatenate([xy.reshape(-1, 2) for xy in projected])
        low, high = everything.min(axis=0), everything.max(axis=0)
        pad = 0.03 * max(high - low)
        axes.set_xlim(low[0] - pad, high[0] + pad)
        axes.set_ylim(low[1] - pad, high[1] + pad)
        axes.set_aspect("equal")
        axes.set_axis_off()
        axes.set_title(title, fontsize=11)
        handles, notes = [], []
        for layer in shown:
            legend = layer.legend or {}
            if legend.get("type") == "classes":
                handles += [Patch(color=(r / 255, g / 255, b / 255), label=name) for name, (r, g, b) in legend["items"]]
            elif legend.get("type") == "ramp":
                ramp = LinearSegmentedColormap.from_list(legend["label"], np.array(legend["stops"]) / 255)
                bar = figure.colorbar(plt.cm.ScalarMappable(Normalize(0, 1), ramp), ax=axes, shrink=0.5, pad=0.01)
                bar.set_ticks([0, 1], labels=[legend["low"], legend["high"]])
                bar.set_label(legend["label"])
            elif legend.get("type") == "text":
                notes.append(legend["text"])
        if handles:
            axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
        if notes:
            figure.text(0.01, 0.01, "\n".join(notes), fontsize=8, color="#444")
        kind = out.suffix.lstrip(".").lower() or "png"
        # no creation date, fixed element ids: the same map gives the same file
        with atomic_target(out) as tmp, matplotlib.rc_context({"svg.hashsalt": "ofa-embed"}):
            figure.savefig(tmp, format=kind, bbox_inches="tight", metadata={"Date": None} if kind in ("svg", "pdf") else None)
    finally:
        plt.close(figure)
    return out.stat().st_size
