"""Checking a scene's values: the value-range check against its modality's scaling (:func:`check_value_range`),
the checks of a run in a thread beside it (:class:`ValueChecks`), and the pooled statistics that normalise a
sensor given by wavelengths (:func:`sample_statistics`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np

from ofa_embed.errors import ModalityError
from ofa_embed.raster.radiometry import REGISTRY, Radiometry
from ofa_embed.raster.scene import Scene
from ofa_embed.sensors import MODALITIES, Modality
from ofa_embed.threads import wait_through_interrupts

logger = logging.getLogger(__name__)

__all__ = ["VALUE_CHECK_VALUES", "ValueChecks", "check_value_range", "sample_statistics"]

# the value check's percentiles are taken of at most about this many of the sampled values
VALUE_CHECK_VALUES = 1 << 18
# reflectance below this at the 1st percentile (or a median below 0) is no reflectance: Level-2 products have
# small negatives over water and in shadow (a few hundredths at most), a wrong scaling or offset far larger ones
LOWEST_REFLECTANCE = -0.05


class ValueChecks:
    """The value checks (:func:`check_value_range`) of a run's released scenes, in order, in a thread of their own
    beside the run's reading and model; each result goes to its scene's ``input_values``.

    A run opens its scenes without them (``open_scenes(..., check_values=False)``), so that its model starts
    after one scene's opening instead of every scene's checks. Made with ``begun=False``, the checks wait for
    :meth:`begin`: a run begins them once its model is busy, since beside the first batch's reading they hold
    it back (their files' opening and reading contend with the reader's for the GIL). The run polls
    :meth:`raise_failure` as it goes, so a bad scene stops it within a few batches, and calls :meth:`wait`
    (which begins them) before its first write, so nothing is written unless every scene passed. Each check
    reads through file handles of its own, never the scene's, which the reader may hold.
    Use as a context manager: leaving stops the checks and joins their thread, on every path.
    """

    def __init__(self, scenes: Sequence[Scene], *, begun: bool = True) -> None:
        self._scenes = list(scenes)
        self._stop = threading.Event()
        self._begun = threading.Event()
        if begun:
            self._begun.set()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ofa-embed-value-checks", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._begun.wait()
        try:
            for scene in self._scenes:
                if self._stop.is_set():
                    return
                with scene.own_handles() as own:
                    scene.input_values = check_value_range(own)
        except BaseException as exc:  # raised in the run's own thread by raise_failure / wait
            self._failure = exc

    def raise_failure(self) -> None:
        """Raise what a check has raised so far (a bad scene, an unreadable file), if anything."""
        if self._failure is not None:
            raise self._failure

    def begin(self) -> None:
        """Start the checks, if not yet begun."""
        self._begun.set()

    def wait(self) -> None:
        """Begin the checks, wait for every one; raise the first failure."""
        self.begin()
        self._join()
        self.raise_failure()

    def close(self) -> None:
        """Stop after the check under way (or before the first, if not begun) and join the thread."""
        self._stop.set()
        self.begin()
        self._join()

    def _join(self) -> None:
        wait_through_interrupts(self._thread.join, lambda: not self._thread.is_alive())

    def __enter__(self) -> ValueChecks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sample_statistics(scenes: Sequence[Scene]) -> tuple[np.ndarray, np.ndarray, str]:
    """``(mean, std, source)`` per band of the file values of ``scenes``' samples pooled, to normalise a sensor
    given by wavelengths; std is kept above zero for a constant band.

    Raises:
        ModalityError: fewer than 2 valid pixels in the samples.
    """
    moments = [scene.sample_moments() for scene in scenes]
    counts = np.array([n for n, _, _ in moments], np.float64)[:, None]
    means, m2s = np.stack([m for _, m, _ in moments]), np.stack([m2 for _, _, m2 in moments])
    count = int(counts.sum())
    if count < 2:
        raise ModalityError(f"{scenes[0].path}: too few valid pixels to normalise a sensor given by wavelengths")
    mean = (counts * means).sum(axis=0) / count
    # Chan et al.'s pooling: each scene's m2 plus what its mean's offset from the pooled mean adds
    m2 = (m2s + counts * np.square(means - mean)).sum(axis=0)
    names = scenes[0].path.name if len(scenes) == 1 else f"{len(scenes)} scenes"
    std = np.maximum(np.sqrt(m2 / count), 1e-6 * np.abs(mean) + 1e-12)
    return mean, std, f"{count} valid pixels sampled from {names}"


def check_value_range(scene: Scene) -> dict[str, object]:
    """Check a sample of a scene's file values against its modality's scaling.

    Digital numbers are judged by the scale and offset the scene reads them with (the file's own,
    ``Scene.radiometry``, else the modality's): reflectance above 2, or well below 0 (1st percentile below
    :data:`LOWEST_REFLECTANCE`, or a negative median; zeros, the fill value of digital-number products, left
    out) is refused, naming the registered sensors of the same band count whose scaling fits. Values within
    -1 to 1 with negatives are a normalised index, not SAR backscatter in dB.

    Returns:
        What was found: ``dtype``, ``p1``/``p50``/``p99`` of the sampled values, ``sar_scale``, a
        ``warning`` (None, or the line logged when the values fit the modality and another reading), and
        ``radiometry``: per band its scale, offset and where they came from (``registry``, ``GDAL
        scale/offset``, a Sentinel-2 product's ``MTD_MSIL2A.xml`` or processing baseline).

    Raises:
        ModalityError: values the modality's scaling cannot be right for, naming the options that fit.
    """
    modality, path = scene.modality, scene.path
    dtype = np.dtype(scene.sources[0].dataset.dtypes[0])
    flat = scene.value_sample()
    found: dict[str, object] = {"dtype": dtype.name, "sar_scale": scene.sar_scale, "warning": None}
    radiometry = scene.radiometry or _registry_radiometry(modality, len(scene.source_labels))
    found["radiometry"] = radiometry.record(scene.source_labels)
    if not flat.size:
        return found
    # a regular stride through a large sample (0.8M values of a Sentinel-2 scene): the 1st and 99th
    # percentiles of 2^18 values are within 0.02 percentile points of the sample's (binomial standard
    # error), far inside the factors between the scalings told apart below, at a fraction of the cost
    p1, p50, p99 = (float(v) for v in np.percentile(flat[:: max(1, flat.size // VALUE_CHECK_VALUES)], [1, 50, 99]))
    found |= {"p1": p1, "p50": p50, "p99": p99}
    seen = f"values {p1:.4g} to {p99:.4g} (1st-99th percentile, {dtype.name})"
    other = "; for another sensor give its band wavelengths with --wavelengths (normalised by their own statistics)"
    warning = None
    own = scene.radiometry is not None and scene.radiometry.own and scene.spectral_matrix is None
    if modality.value_kind == "sar_db":
        if scene.sar_scale == "db" and -1.0 <= p1 < 0 and p99 <= 1.0:
            raise ModalityError(f"{path}: {seen}, all within -1 to 1: a normalised index (NDVI, NDWI, ...) or "
                                f"reflectance, not SAR backscatter in dB ({modality.name} expects about -30 to +5 dB)"
                                + other)
        if scene.sar_scale == "db" and p1 >= 0:
            raise ModalityError(f"{path}: {seen}, none negative: not backscatter in dB ({modality.name} expects dB, "
                                "about -30 to +5); linear values are converted with --sar-scale power (sigma0) or "
                                "--sar-scale amplitude")
        if scene.sar_scale != "db" and p1 < 0:
            raise ModalityError(f"{path}: {seen}, negative: already in dB, not linear {scene.sar_scale}; drop --sar-scale")
    elif own:  # the file's own scale/offset: judged as the physical values they give
        low, _, high = _physical_percentiles(scene, flat, radiometry)
        if high > 2.0:
            raise ModalityError(f"{path}: {seen} scale to {high:.3g} with the file's own scale/offset "
                                f"({_scaling_said(radiometry)}): not reflectance; correct the file's scale/offset "
                                "(gdal_edit -scale/-offset) or pass --wavelengths" + other)
        _refuse_negative(scene, flat, radiometry, seen, other)
    elif np.isclose(modality.scale, 1 / 255):
        if p99 > 255:
            raise ModalityError(
                f"{path}: {seen} are not 8-bit {modality.name} imagery (0-255). Landsat 8/9 digital numbers: "
                "--modality landsat_oli (Level-1) or landsat_oli_sr (Level-2) with --bands (e.g. B4,B3,B2 for "
                "red, green, blue); Sentinel-2: --modality sentinel2_l2a (or _l1c) with --bands (e.g. B04,B03,B02)"
                + other)
        if p1 < 0:
            raise ModalityError(f"{path}: {seen}, negative: not 8-bit {modality.name} imagery (0-255); SAR backscatter "
                                "in dB is --modality sentinel1_grd with --bands (e.g. VV,VH)" + other)
        if dtype.kind == "f" and p99 <= 1.5:
            raise ModalityError(f"{path}: {seen} are already scaled to 0-1, not 8-bit {modality.name} imagery" + other)
        if dtype.itemsize > 1:
            warning = f"{path}: {dtype.name} file with {seen}: read as 8-bit {modality.name} (scaled by 1/255)"
    elif modality.scale < 1e-3:  # digital numbers: reflectance x 10,000 (Sentinel-2), Landsat DN
        if dtype.kind == "f" and p99 <= 2.0:
            raise ModalityError(f"{path}: {seen} look like reflectance, not {modality.name} digital numbers "
                                f"(scaled by {modality.scale:g})" + other)
        if dtype == np.uint8:
            raise ModalityError(f"{path}: {seen}: 8-bit values cannot be {modality.name} digital numbers (an 8-bit "
                                "rendering?); 8-bit RGB(-NIR): --modality rgb or rgbn with --bands" + other)
        if p99 * modality.scale + modality.offset > 2.0:
            raise ModalityError(f"{path}: {seen} scale to reflectance above 2 as {modality.name} "
                                f"(x {modality.scale:g}); not this sensor's digital numbers" + other)
        _refuse_negative(scene, flat, radiometry, seen, other)
    if warning:
        logger.warning(warning)
        found["warning"] = warning
    return found


def _registry_radiometry(modality: Modality, count: int) -> Radiometry:
    return Radiometry((modality.scale,) * count, (modality.offset,) * count, (REGISTRY,) * count)


def _scaling_said(radiometry: Radiometry) -> str:
    pairs = dict.fromkeys(zip(radiometry.scale, radiometry.offset, strict=True))
    text = ", ".join(f"x {scale:g} {offset:+g}" for scale, offset in list(pairs)[:3])
    sources = ", ".join(dict.fromkeys(radiometry.sources))
    return f"{text}{' ...' if len(pairs) > 3 else ''} from {sources}"


def _physical_percentiles(scene: Scene, flat: np.ndarray, radiometry: Radiometry,
                          fill: float | None = None) -> tuple[float, float, float]:
    """1st, 50th and 99th percentile of the physical values (file values scaled band by band), zeros and
    ``fill`` left out; NaN where none is left.
    """
    if radiometry.uniform:
        values = flat * np.float32(radiometry.scale[0]) + np.float32(radiometry.offset[0])
        raw = flat
    else:  # per band: the scene-grid sample keeps the bands apart
        sample = scene.sample_raw()
        raw = sample.reshape(-1)
        values = (sample * np.asarray(radiometry.scale, np.float32)[:, None]
                  + np.asarray(radiometry.offset, np.float32)[:, None]).reshape(-1)
    keep = raw != 0
    if fill is not None:
        keep &= raw != fill
    values = values[keep][:: max(1, int(keep.sum()) // VALUE_CHECK_VALUES)]
    if not values.size:
        return float("nan"), float("nan"), float("nan")
    low, mid, high = (float(v) for v in np.percentile(values, [1, 50, 99]))
    return low, mid, high


def _refuse_negative(scene: Scene, flat: np.ndarray, radiometry: Radiometry, seen: str, other: str) -> None:
    """Refuse physical values well below zero, naming the sensors of the scene's band count whose scaling fits.

    Raises:
        ModalityError: 1st percentile below :data:`LOWEST_REFLECTANCE`, or a negative median.
    """
    modality = scene.modality
    low, mid, _ = _physical_percentiles(scene, flat, radiometry)
    if not (low < LOWEST_REFLECTANCE or mid < 0):
        return
    fits = [m.name for m in MODALITIES.values()
            if m is not modality and m.num_bands == len(scene.source_labels) and m.value_kind == "optical"
            and m.scale < 1e-3 and _fits(scene, flat, m)]
    options = (f"; they fit {', '.join(fits)}: pass --modality {fits[0]}" if fits
               else "; check the file's scale/offset (gdal_edit -scale/-offset) or pass --modality")
    raise ModalityError(f"{scene.path}: {seen} scale to reflectance {low:.3g} (1st percentile), median {mid:.3g} as "
                        f"{modality.name} ({_scaling_said(radiometry)}): well below 0, not this scaling's digital "
                        f"numbers{options}" + other)


def _fits(scene: Scene, flat: np.ndarray, modality: Modality) -> bool:
    """Whether the file values give reflectance within bounds with ``modality``'s scaling (its fill left out)."""
    low, mid, high = _physical_percentiles(scene, flat, _registry_radiometry(modality, len(scene.source_labels)),
                                           modality.fill_value)
    return bool(low >= LOWEST_REFLECTANCE and mid >= 0 and high <= 2.0)
