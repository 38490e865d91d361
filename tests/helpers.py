"""Shared test helpers: fixture rasters written with explicit CRS, affine transform and known pixel values,
and small vector stores."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
import rasterio.windows
from affine import Affine

from ofa_embed.sensors import get_modality

UTM33 = "EPSG:32633"
ORIGIN = (500_000.0, 5_000_000.0)  # UTM 33N, about 15 E 45 N


def write_raster(
    path: Path,
    data: np.ndarray,
    *,
    res: float = 10.0,
    crs: str | None = UTM33,
    nodata: float | None = None,
    descriptions: Sequence[str] | None = None,
    tags: dict[str, str] | None = None,
    band_tags: Sequence[dict[str, str]] | None = None,
) -> Path:
    """Write ``data`` ``(bands, rows, cols)`` as a GeoTIFF north-up at ``ORIGIN`` with ``res`` m pixels."""
    count, height, width = data.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": count, "dtype": data.dtype.name}
    if crs is not None:
        profile |= {"crs": crs, "transform": Affine(res, 0, ORIGIN[0], 0, -res, ORIGIN[1])}
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if descriptions:
            dst.descriptions = tuple(descriptions)
        if tags:
            dst.update_tags(**tags)
        for i, btags in enumerate(band_tags or [], start=1):
            dst.update_tags(i, **btags)
    return path


def s2_values(height: int, width: int, seed: int = 0) -> np.ndarray:
    """13-band uint16 L1C-like digital numbers: a per-band level plus a smooth pattern and noise."""
    rng = np.random.default_rng(seed)
    means = get_modality("sentinel2_l1c").mean * 10_000
    yy, xx = np.mgrid[0:height, 0:width]
    pattern = 300 * np.sin(xx / 17.0) * np.cos(yy / 23.0)
    data = means[:, None, None] + pattern[None] + rng.normal(0, 50, (13, height, width))
    return np.clip(data, 1, 20_000).astype(np.uint16)


def write_vector_store(store: Path, scenes: Sequence[tuple[str, int, float, str | None, str]], *, dim: int = 32,
                       seed: int = 0, weights_hash: str = "feedfacefeedface") -> np.ndarray:
    """A store of synthetic scenes for index tests, bypassing the model.

    Each scene is ``(name, rows, west_lon, iso_datetime_or_None, modality)``: a row of 0.01 deg tiles
    along the equator from ``west_lon``, with clustered unit-ish vectors (20 cluster centres + noise).
    Returns all embeddings in store order (files sorted by name, rows as written).
    """
    from datetime import datetime

    from ofa_embed.store import TileRecords, write_scene

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim))
    store.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, rows, west, when, modality in scenes:
        vectors = centres[rng.integers(0, 20, rows)] + 0.35 * rng.normal(size=(rows, dim))
        lon0 = west + 0.01 * np.arange(rows)
        corners = np.stack([np.stack([lon0, np.full(rows, 0.01)], 1), np.stack([lon0 + 0.01, np.full(rows, 0.01)], 1),
                            np.stack([lon0 + 0.01, np.zeros(rows)], 1), np.stack([lon0, np.zeros(rows)], 1)], 1)
        records = TileRecords(
            rows=np.zeros(rows, int), cols=np.arange(rows) * 16, heights=np.full(rows, 16), widths=np.full(rows, 16),
            padded=np.zeros(rows, bool), valid_fraction=np.ones(rows), lonlat=corners, embeddings=vectors.astype(np.float32),
        )
        acquired = datetime.fromisoformat(when) if when else None
        path = write_scene(
            store, name, modality=modality, acquired=acquired, tile_size=16, missing_bands=[], records=records,
            metadata={"model": {"weights_hash": weights_hash, "weights_source": "synthetic"}},
            emb_metadata={"dimension": dim, "weights_hash": weights_hash},
        )
        import pyarrow.parquet as pq

        from ofa_embed.indexes.vectors import embedding_matrix

        written[name] = embedding_matrix(pq.read_table(path, columns=["embedding"]))
    return np.concatenate([written[n] for n in sorted(written)])


TORCHGEO_WHEEL = Path(__file__).resolve().parents[1] / ".cache" / "reference" / "torchgeo-0.8.1-py3-none-any.whl"


def torchgeo_dofa(tmp_dir: Path):
    """TorchGeo 0.8.1's ``torchgeo/models/dofa.py``, imported alone from its wheel (fetched by ``make install``,
    hash-pinned in ``tests/reference/torchgeo.txt``), without the rest of the package and its dependencies.
    """
    import importlib.util
    import zipfile

    import pytest

    if not TORCHGEO_WHEEL.is_file():
        pytest.fail(f"{TORCHGEO_WHEEL} is missing: `make install` fetches it (tests/reference/torchgeo.txt)")
    source = tmp_dir / "torchgeo_dofa.py"
    with zipfile.ZipFile(TORCHGEO_WHEEL) as wheel:
        source.write_bytes(wheel.read("torchgeo/models/dofa.py"))
    spec = importlib.util.spec_from_file_location("torchgeo_dofa", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mae_pos_embed(dim: int, grid: int) -> np.ndarray:
    """MAE's reference ``get_2d_sincos_pos_embed(dim, grid, cls_token=True)``, written from its description:
    ``meshgrid(w, h)``, so the first half of the channels encodes the column; a zero row for the class token.
    """
    def one_d(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    w, h = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))
    table = np.concatenate([one_d(dim // 2, w), one_d(dim // 2, h)], axis=1)
    return np.concatenate([np.zeros((1, dim)), table]).astype(np.float32)


def published_dofa_file(path: Path, name: str = "dofa_small", seed: int = 0) -> Path:
    """A seeded random DOFA saved as the released files are: flat state dict, MAE's position table, no fc_norm."""
    import torch

    from ofa_embed.model.dofa import create_dofa

    model = create_dofa(name, seed=seed)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("fc_norm.")}
    grid = model.config.img_size // model.config.patch_size
    state["pos_embed"] = torch.from_numpy(mae_pos_embed(model.embed_dim, grid))[None]
    torch.save(state, path)
    return path


def cut_tile(scene: Path, window, path: Path) -> Path:
    """Copy ``window`` of ``scene`` (band descriptions kept) into its own georeferenced file ``path``."""
    with rasterio.open(scene) as src:
        data = src.read(window=window)
        profile = src.profile | {"width": window.width, "height": window.height,
                                 "transform": rasterio.windows.transform(window, src.transform)}
        descriptions = src.descriptions
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = descriptions
    return path
