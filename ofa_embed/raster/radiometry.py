"""What turns a scene's file values into physical ones, band by band: the file's own scale and offset before the
registry's.

Where each band's ``value * scale + offset`` comes from, first found first:

1. the file's GDAL scale and offset (``dataset.scales``/``dataset.offsets``, any but 1 and 0): what the file
   says of itself (Landsat Collection-2 Level-2 exports carry 2.75e-5 and -0.2, harmonised Sentinel-2 stacks
   1e-4 and -0.1);
2. a Sentinel-2 product's metadata, ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml`` in its SAFE folder or archive (or a
   folder above its band files): ``QUANTIFICATION_VALUE`` (L2A ``BOA_QUANTIFICATION_VALUE``) and the per-band
   ``RADIO_ADD_OFFSET`` (L1C) / ``BOA_ADD_OFFSET`` (L2A), -1000 DN from processing baseline 04.00 (January 2022)
   on: reflectance = (DN + offset) / quantification;
3. the processing baseline in a Sentinel-2 product name (``S2B_MSIL2A_20230101T101031_N0509_...``) or its
   ``PROCESSING_BASELINE`` tag, where the metadata is absent: 04.00 and later mean an offset of -1000 DN;
4. the registry's scaling of the modality (:attr:`~ofa_embed.sensors.Modality.scale`/``offset``).

A file whose own scaling is another sensor product's and not its chosen modality's (a Landsat surface
reflectance stack, 2.75e-5/-0.2, given ``--modality landsat_oli``) is refused; one taken for its modality by its
band count alone takes the product its scaling names (:func:`modality_by_scaling`).
"""

from __future__ import annotations

import re
import tarfile
import xml.etree.ElementTree as ElementTree
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import rasterio

from ofa_embed.errors import ModalityError
from ofa_embed.sensors import MODALITIES, Modality

__all__ = ["BASELINE_OFFSET_DN", "OFFSET_BASELINE", "Radiometry", "file_scaling", "modality_by_scaling",
           "read_radiometry"]

# ESA added a radiometric offset of -1000 DN to every Sentinel-2 band from processing baseline 04.00 on
# (products from 25 January 2022, and the reprocessed collection): reflectance = (DN - 1000) / 10000
OFFSET_BASELINE = (4, 0)
BASELINE_OFFSET_DN = -1000.0
_BASELINE_FROM = datetime(2022, 1, 25, tzinfo=UTC)
_S2_PRODUCT = re.compile(r"S2[ABCD]_MSIL(?:1C|2A)_\d{8}T\d{6}_N(\d{2})(\d{2})_")
_S2_METADATA = ("MTD_MSIL2A.xml", "MTD_MSIL1C.xml")
# the band order of the product metadata's band_id 0-12
_S2_BAND_IDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
# how far above a band file a SAFE's product metadata may sit (GRANULE/<id>/IMG_DATA/R10m/<file>)
_METADATA_DEPTH = 5
REGISTRY = "registry"


@dataclass(frozen=True)
class Radiometry:
    """Per source band (file order): physical value = file value * ``scale`` + ``offset``, and where each came from.

    Attributes:
        scale: multiplier per source band.
        offset: added after ``scale``, per source band.
        sources: where each band's pair came from (``registry``, ``GDAL scale/offset``, ``MTD_MSIL2A.xml``,
            ``processing baseline N0509 in the product name``).
    """

    scale: tuple[float, ...]
    offset: tuple[float, ...]
    sources: tuple[str, ...]

    @property
    def uniform(self) -> bool:
        """Whether every band shares one scale and offset."""
        return len(set(zip(self.scale, self.offset, strict=True))) <= 1

    @property
    def own(self) -> bool:
        """Whether any band's scaling came from the file or its product rather than the registry."""
        return any(source != REGISTRY for source in self.sources)

    def in_model_order(self, modality: Modality, positions: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(scale, offset)``, each ``(C,)`` float32 in the modality's band order (its own scaling where no
        source band sits).
        """
        scale = np.full(modality.num_bands, modality.scale, np.float32)
        offset = np.full(modality.num_bands, modality.offset, np.float32)
        scale[list(positions)] = self.scale
        offset[list(positions)] = self.offset
        return scale, offset

    def record(self, labels: Sequence[str]) -> dict[str, object]:
        """JSON-serialisable record for the store: per band its label, scale, offset and source."""
        return {"bands": list(labels), "scale": list(self.scale), "offset": list(self.offset),
                "source": list(self.sources)}


def file_scaling(datasets: Sequence[tuple[rasterio.io.DatasetReader, Sequence[int]]]) -> list[tuple[float, float] | None]:
    """The GDAL scale and offset of each band (``(dataset, band indexes)`` in source order), None where the
    file sets neither (1 and 0).
    """
    found: list[tuple[float, float] | None] = []
    for dataset, indexes in datasets:
        scales, offsets = dataset.scales, dataset.offsets
        for i in indexes:
            scale, offset = float(scales[i - 1] or 1.0), float(offsets[i - 1] or 0.0)
            found.append(None if (scale, offset) == (1.0, 0.0) else (scale, offset))
    return found


def _same_scaling(modality: Modality, scale: float, offset: float) -> bool:
    return bool(np.isclose(modality.scale, scale, rtol=1e-3, atol=0) and np.isclose(modality.offset, offset, atol=1e-6))


def modality_by_scaling(band_count: int, scaling: Sequence[tuple[float, float] | None]) -> Modality | None:
    """The one registered sensor of ``band_count`` bands whose registry scaling is the file's own (every band's
    GDAL scale/offset alike), or None where the file gives none, its bands differ, or several or no sensor has it.
    """
    pairs = set(scaling)
    if len(pairs) != 1 or None in pairs:
        return None
    scale, offset = next(iter(pairs))  # type: ignore[misc]
    fitting = [m for m in MODALITIES.values()
               if m.num_bands == band_count and not m.spectral_resample and _same_scaling(m, scale, offset)]
    return fitting[0] if len(fitting) == 1 else None


def read_radiometry(modality: Modality, labels: Sequence[str], scaling: Sequence[tuple[float, float] | None], *,
                    where: Path, texts: Sequence[str], tags: dict[str, str], acquired: datetime | None,
                    source: str) -> tuple[Radiometry, list[str]]:
    """Each source band's scale and offset, first found first (see the module docstring).

    Args:
        modality: the scene's modality.
        labels: the source bands' names, in file order.
        scaling: each source band's GDAL scale/offset (:func:`file_scaling`).
        where: the scene's file, folder or archive: a SAFE's product metadata is looked for in it and above it.
        texts: the scene's and its files' names, for a Sentinel-2 processing baseline.
        tags: the (first) file's dataset tags.
        acquired: the acquisition time, to say where a Sentinel-2 offset may be missing.
        source: the scene, for messages.

    Returns:
        The radiometry, and the lines that say what was taken for granted (for ``Scene.assumed``).

    Raises:
        ModalityError: the file's own scaling is another registered product's (of the same bands) and not
            this modality's; a product metadata file that cannot be read.
    """
    _refuse_other_products(modality, scaling, source)
    count = len(labels)
    scale, offset, sources = [modality.scale] * count, [modality.offset] * count, [REGISTRY] * count
    said: list[str] = []
    sentinel2 = modality.scale == 1e-4 and all(_s2_band(label) for label in labels) and modality.value_kind == "optical"
    product = _product_offsets(where, source) if sentinel2 else None
    baseline = _baseline(texts, tags) if sentinel2 and product is None else None
    for i, label in enumerate(labels):
        if scaling[i] is not None:
            scale[i], offset[i] = scaling[i]  # type: ignore[misc]
            sources[i] = "GDAL scale/offset"
        elif product is not None:
            name, quantification, offsets = product
            scale[i] = 1.0 / quantification
            offset[i] = offsets.get(_s2_band(label) or "", 0.0) / quantification
            sources[i] = name
        elif baseline is not None:
            offset[i] = BASELINE_OFFSET_DN * modality.scale if baseline >= OFFSET_BASELINE else 0.0
            sources[i] = f"processing baseline {baseline[0]:02d}.{baseline[1]:02d} of the product name or tags"
    if sentinel2 and REGISTRY in sources and baseline is None and acquired is not None and acquired >= _BASELINE_FROM:
        said.append(f"{source}: Sentinel-2 acquired {acquired:%Y-%m-%d}, after processing baseline 04.00 added an "
                    "offset of -1000 DN, but neither a product metadata file (MTD_MSIL*.xml), a GDAL offset nor a "
                    "product name says whether its values carry it: read without it (as harmonised collections "
                    "ship them); if they carry it, set it on the file (gdal_edit -scale 0.0001 -offset -0.1)")
    return Radiometry(tuple(scale), tuple(offset), tuple(sources)), said


def _refuse_other_products(modality: Modality, scaling: Sequence[tuple[float, float] | None], source: str) -> None:
    pairs = {pair for pair in scaling if pair is not None}
    for scale, offset in pairs:
        if _same_scaling(modality, scale, offset):
            continue
        others = [m for m in MODALITIES.values() if m is not modality and m.band_names == modality.band_names
                  and _same_scaling(m, scale, offset)]
        if others:
            raise ModalityError(
                f"{source}: the file's GDAL scale/offset ({scale:g}, {offset:g}) are {others[0].name}'s ({others[0].units}), "
                f"not {modality.name}'s ({modality.scale:g}, {modality.offset:g}: {modality.units}); pass --modality "
                f"{others[0].name}"
            )


def _s2_band(label: str) -> str | None:
    """A Sentinel-2 band label as the product metadata names it (``B02`` -> ``B2``), or None."""
    key = re.sub(r"^B0(\d)$", r"B\1", label.strip().upper())
    return key if key in _S2_BAND_IDS else None


def _baseline(texts: Sequence[str], tags: dict[str, str]) -> tuple[int, int] | None:
    """The processing baseline a Sentinel-2 product name or ``PROCESSING_BASELINE`` tag carries."""
    for text in texts:
        if match := _S2_PRODUCT.search(text):
            return int(match.group(1)), int(match.group(2))
    tag = tags.get("PROCESSING_BASELINE", "")
    if match := re.fullmatch(r"\s*(\d{1,2})\.(\d{2})\s*", tag):
        return int(match.group(1)), int(match.group(2))
    return None


def _product_offsets(where: Path, source: str) -> tuple[str, float, dict[str, float]] | None:
    """``(file name, quantification, {band: offset in DN})`` from the Sentinel-2 product metadata in or above
    ``where``, or None where there is none.

    Raises:
        ModalityError: a metadata file that is no readable XML.
    """
    found = _find_metadata(where)
    if found is None:
        return None
    name, text = found
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise ModalityError(f"{source}: {name} is no readable product metadata ({exc}); remove it or repair it") from None
    quantification = 10_000.0
    offsets: dict[str, float] = {}
    band_ids = dict(enumerate(_S2_BAND_IDS))
    for element in root.iter():
        tag = element.tag.rsplit("}", 1)[-1]
        if tag in ("QUANTIFICATION_VALUE", "BOA_QUANTIFICATION_VALUE") and element.text:
            quantification = float(element.text)
        elif tag == "Spectral_Information" and (element.get("bandId") or element.get("band_id")) is not None:
            band = _s2_band(element.get("physicalBand", ""))
            if band:
                band_ids[int(element.get("bandId") or element.get("band_id") or 0)] = band
    for element in root.iter():
        tag = element.tag.rsplit("}", 1)[-1]
        if tag in ("RADIO_ADD_OFFSET", "BOA_ADD_OFFSET") and element.text and element.get("band_id") is not None:
            offsets[band_ids.get(int(element.get("band_id") or 0)) or ""] = float(element.text)
    return name, quantification, offsets


def _find_metadata(where: Path) -> tuple[str, str] | None:
    """``(name, text)`` of the Sentinel-2 product metadata of a scene: in its archive, its folder, or a folder
    above its file (a band file inside a SAFE's ``GRANULE``).
    """
    text = str(where)
    for vsi in ("/vsizip/", "/vsitar/"):
        if text.startswith(vsi):
            archive = Path("/" + text[len(vsi):].lstrip("/"))
            while archive.suffix.lower() not in (".zip", ".tar", ".gz", ".tgz") and archive != archive.parent:
                archive = archive.parent
            where = archive
    lowered = where.name.lower()
    if where.is_file() and lowered.endswith((".zip", ".tar", ".tgz", ".tar.gz")):
        return _metadata_in_archive(where)
    folder = where if where.is_dir() else where.parent
    for _ in range(_METADATA_DEPTH + 1):
        for name in _S2_METADATA:
            if (folder / name).is_file():
                return name, (folder / name).read_text(encoding="utf-8", errors="replace")
        if folder.parent == folder:
            break
        folder = folder.parent
    return None


def _metadata_in_archive(archive: Path) -> tuple[str, str] | None:
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as handle:
                names = [n for n in handle.namelist() if Path(n).name in _S2_METADATA]
                if names:
                    chosen = min(names, key=lambda n: n.count("/"))
                    return Path(chosen).name, handle.read(chosen).decode("utf-8", errors="replace")
            return None
        with tarfile.open(archive) as handle:
            members = [m for m in handle.getmembers() if m.isfile() and Path(m.name).name in _S2_METADATA]
            if members:
                chosen_member = min(members, key=lambda m: m.name.count("/"))
                extracted = handle.extractfile(chosen_member)
                if extracted is not None:
                    return Path(chosen_member.name).name, extracted.read().decode("utf-8", errors="replace")
    except (zipfile.BadZipFile, tarfile.TarError, OSError):
        return None  # the band files' own reading reports an unreadable archive
    return None
