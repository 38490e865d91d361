"""Registry of supported sensors ("modalities"): the built-in entries of :mod:`ofa_embed.sensors.catalogue`,
and those registered at run time. What an entry holds is :class:`~ofa_embed.sensors.modality.Modality`.

Sensors are data. Each :class:`Modality` lists its bands in the one canonical order the model sees;
every band carries its name, aliases, centre wavelength (µm), native GSD (m) and the mean/std used to
normalise it. Raw file values become physical values with ``value * scale + offset`` (e.g. Sentinel-2
L1C digital numbers / 10000 = top-of-atmosphere reflectance), then ``(value - mean) / std``. Missing
bands are filled with 0 after normalisation, i.e. with the band mean, and reported per tile.

Where the statistics come from is stated per modality in :attr:`Modality.stats_source`. Statistics
computed from real scenes with ``benchmarks/data/band_stats.py`` are preferred and used where a real
scene of the sensor is available here.

Everything the rest of the package knows about a sensor is read from its entry: how its band files are
named (:attr:`Modality.band_file_token`), which files beside them are no bands, where its names and tags
carry the acquisition date, what its values are (:attr:`Modality.value_kind`) and whether it is the guess
for a file of its band count. A new sensor is one :func:`register_modality` call.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ofa_embed.errors import ModalityError
from ofa_embed.sensors.catalogue import HYPERSPECTRAL_GRID_UM, built_in_modalities
from ofa_embed.sensors.modality import VALUE_KINDS, Band, FileOrder, Modality, ValueKind

__all__ = [
    "Band",
    "FileOrder",
    "CUSTOM",
    "Modality",
    "MODALITIES",
    "custom_modality",
    "get_modality",
    "list_modalities",
    "HYPERSPECTRAL_GRID_UM",
    "VALUE_KINDS",
    "ValueKind",
    "register_modality",
    "registered_modality",
    "unregister_modality",
]

_DATE_GROUPS = ("year", "month", "day")

MODALITIES: dict[str, Modality] = {m.name: m for m in built_in_modalities()}
_BUILT_IN = frozenset(MODALITIES)

# a sensor the registry does not know, described by its band wavelengths (wavelength-conditioned models only)
CUSTOM = "custom"


def custom_modality(wavelengths_um: Sequence[float], mean: Sequence[float], std: Sequence[float], *,
                    stats_source: str, labels: Sequence[str] | None = None) -> Modality:
    """A sensor given by its bands' centre wavelengths (µm, file band order), normalised with ``mean``/``std``
    of its file values (no scaling: the units are whatever the file holds).

    Bands are named by wavelength (``490nm``) unless ``labels`` are given.

    Raises:
        ModalityError: a wavelength that is no band centre in µm (0.3-20 or radar 3,000-1,000,000), or
            lengths that differ.
    """
    if not (len(wavelengths_um) == len(mean) == len(std)) or not wavelengths_um:
        raise ModalityError(f"{len(wavelengths_um)} wavelength(s) for {len(mean)} band(s)")
    # optical to thermal infrared, or radar (centimetres); between them no Earth-observation band sits,
    # and values there are most often nanometres given as µm
    if bad := [w for w in wavelengths_um if not (0.3 <= w <= 20 or 3_000 <= w <= 1_000_000)]:
        hint = f" (nanometres? {bad[0]} nm is {bad[0] / 1000:g} µm)" if 300 <= bad[0] < 3_000 else ""
        raise ModalityError(f"wavelength {bad[0]} is not a centre wavelength in µm: optical 0.4-2.5, thermal 8-14, "
                            f"radar 3,000-1,000,000{hint}")
    names = list(labels) if labels else [f"{w * 1000:.0f}nm" for w in wavelengths_um]
    names = [n if names.count(n) == 1 else f"{n}_{i + 1}" for i, n in enumerate(names)]
    bands = tuple(Band(n, float(w), 0.0, float(m), float(sd)) for n, w, m, sd in zip(names, wavelengths_um, mean, std,
                                                                                      strict=True))
    return Modality(CUSTOM, f"a sensor given by {len(bands)} band wavelengths", bands, 1.0, 0.0, "file values", 128,
                    stats_source)


def get_modality(name: str) -> Modality:
    """Look a modality up by name.

    Raises:
        ModalityError: ``name`` is not registered; the message lists the registered names.
    """
    try:
        return MODALITIES[name]
    except KeyError:
        raise ModalityError(
            f"unknown modality {name!r}; choose one of: {', '.join(MODALITIES)}"
        ) from None


def list_modalities() -> list[Modality]:
    """The registered modalities, in registration order."""
    return list(MODALITIES.values())


def register_modality(modality: Modality) -> None:
    """Add a sensor to the registry: from then on it is detected, opened, checked and embedded like the
    built-in ones (wavelength-conditioned models embed it from its bands' wavelengths).

    Raises:
        ModalityError: the name is taken (or is ``custom``), band names repeat, a pattern is no valid regex, a
            date pattern lacks its ``year``/``month``/``day`` groups, the value kind is unknown, or another
            modality is already the default for its band count.
    """
    if modality.name in MODALITIES or modality.name == CUSTOM:
        raise ModalityError(f"modality {modality.name!r} is already registered; unregister_modality it first")
    if not modality.bands or len(set(modality.band_names)) != modality.num_bands:
        raise ModalityError(f"modality {modality.name!r}: band names must be given and distinct ({modality.band_names})")
    if modality.value_kind not in VALUE_KINDS:
        raise ModalityError(f"modality {modality.name!r}: value_kind {modality.value_kind!r}; choose one of "
                            f"{', '.join(VALUE_KINDS)}")
    patterns = [*modality.filename_patterns, *modality.not_band_files, *modality.date_patterns]
    for pattern in [modality.band_file_token, *patterns] if modality.band_file_token else patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ModalityError(f"modality {modality.name!r}: {pattern!r} is no valid regex ({exc})") from None
    for pattern in modality.date_patterns:
        groups = re.compile(pattern).groupindex
        if missing := [g for g in _DATE_GROUPS if g not in groups and not (g != "year" and "doy" in groups)]:
            raise ModalityError(f"modality {modality.name!r}: date pattern {pattern!r} lacks the group(s) "
                                f"{', '.join(missing)}")
    if modality.default_for_band_count:
        taken = [m.name for m in MODALITIES.values() if m.default_for_band_count and m.num_bands == modality.num_bands]
        if taken:
            raise ModalityError(f"modality {modality.name!r}: {taken[0]} is already the default for "
                                f"{modality.num_bands} band(s)")
    MODALITIES[modality.name] = modality


def unregister_modality(name: str) -> Modality:
    """Remove a sensor added by :func:`register_modality` and return it.

    Raises:
        ModalityError: ``name`` is not registered, or is one of the built-in modalities.
    """
    if name in _BUILT_IN:
        raise ModalityError(f"modality {name!r} is built in and cannot be unregistered")
    return MODALITIES.pop(get_modality(name).name)


@contextmanager
def registered_modality(modality: Modality) -> Iterator[Modality]:
    """``modality`` registered (:func:`register_modality`) for the block, unregistered after it on every path."""
    register_modality(modality)
    try:
        yield modality
    finally:
        unregister_modality(modality.name)
