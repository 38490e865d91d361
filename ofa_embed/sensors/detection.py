"""Which sensor a scene is: from band descriptions, file names and band counts, and from the band tokens of
band-per-file products. Every sensor rule is registry data (:mod:`ofa_embed.sensors.registry`); this module
only weighs the evidence.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import PurePath

import numpy as np

from ofa_embed.errors import ModalityError
from ofa_embed.sensors.registry import MODALITIES, FileOrder, Modality

__all__ = ["ALIKE_MARGIN", "DARKEST_MARGIN", "band_name_from_filename", "choose_file_order",
           "detect_band_file_modality", "detect_modality", "generic_descriptions",
           "without_band_token"]

_MIN_HYPERSPECTRAL_BANDS = 20

# The band token ends a file stem after one or more separators ("_B02", "-B8A_20m", ".B4", ", B08" of tutorial
# exports), optionally followed by the band's resolution. Which tokens there are is registry data
# (Modality.band_file_token): one expression over every registered sensor, rebuilt when the registry changes.
_SEPARATORS = r"[_\-.\s,]+"


@functools.lru_cache(maxsize=8)
def _band_token_regex(tokens: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(f"(?:{token})" for token in tokens) or r"(?!)"
    return re.compile(rf"(?:^|{_SEPARATORS})({alternatives})(?:_\d+m)?$", re.IGNORECASE)


def _band_token(stem: str) -> re.Match[str] | None:
    tokens = tuple(dict.fromkeys(m.band_file_token for m in MODALITIES.values() if m.band_file_token))
    return _band_token_regex(tokens).search(stem)


def band_name_from_filename(stem: str) -> str | None:
    """Band token at the end of a file stem, upper case: ``"s2_B02"`` -> ``"B02"``, ``"T33_B8A_20m"`` ->
    ``"B8A"``, ``"LC08_..._B4"`` -> ``"B4"``, ``"..._VV"`` -> ``"VV"``; None when the stem carries no band token
    of a registered sensor (e.g. ``"..._BQA"``).
    """
    match = _band_token(stem)
    return match.group(1).upper() if match else None


def without_band_token(stem: str) -> str:
    """The product id of a band file: its stem without the band token and its separators
    (``"LC08_..._RT_B2"`` -> ``"LC08_..._RT"``); the stem itself when it has no token or is nothing else.
    """
    match = _band_token(stem)
    return (stem[: match.start()] if match else stem) or stem


def detect_band_file_modality(names: Sequence[str], *, texts: Sequence[str] = (), source: str = "") -> Modality:
    """The sensor a set of band files is, from their band tokens (upper case, as :func:`band_name_from_filename`
    gives them, or band names given for them).

    The candidates are the sensors whose :attr:`~ofa_embed.sensors.Modality.band_file_token` every name matches
    (Sentinel-2's padded ``B02``, Landsat's ``B2``, ...). Among them: the one with the most of the names among its
    bands, then the one with the fewest bands (a Sentinel-2 product without ``B10`` is Level-2A), then the one
    whose file-name patterns match one of ``texts`` (the scene's and its files' names: Landsat Level-2 surface
    reflectance, ``..._L2SP_..._SR_B4``), then the first registered. A
    :attr:`~ofa_embed.sensors.Modality.named_only` sensor is a candidate only where ``texts`` match its patterns,
    and then comes first (``HLS.L30....B05`` is HLS L30's NIR, not Sentinel-2's red edge B05).

    Raises:
        ModalityError: no registered sensor names its band files so; the message says to pass ``--modality``.
    """
    def named_so(modality: Modality) -> bool:
        return any(re.search(p, t, re.IGNORECASE) for p in modality.filename_patterns for t in texts)

    # a product whose band tokens are another sensor's (HLS's B05 is Landsat's NIR, not Sentinel-2's red edge)
    # only where its name says so
    candidates = [m for m in MODALITIES.values()
                  if m.band_file_token and names and all(re.fullmatch(m.band_file_token, n) for n in names)
                  and (not m.named_only or named_so(m))]
    if not candidates:
        raise ModalityError(f"{source}: band files {', '.join(names)} fit no known modality; pass --modality")

    def rank(modality: Modality) -> tuple[bool, int, int, bool]:
        named = sum(modality.band_index(n) is not None for n in names)
        return not modality.named_only, -named, modality.num_bands, not named_so(modality)

    return min(candidates, key=rank)


def detect_modality(
    band_count: int,
    *,
    descriptions: Sequence[str | None] = (),
    name: str = "",
    has_wavelengths: bool = False,
    source: str = "",
) -> Modality:
    """Infer the modality of a scene.

    Evidence, strongest first: many bands with wavelengths (hyperspectral); band descriptions, which
    decide band identity whenever they are given (any order, any subset: ``nir, red, green`` is ``rgbn``
    without blue; descriptions naming no known band are an error, generic ones like ``Band 1`` are
    ignored); a file-name pattern; then the band count (the modality registered as the default for it),
    whose guess the value-range check of :func:`~ofa_embed.raster.opening.open_scene` guards.

    Args:
        band_count: number of bands in the file (or band files in a folder).
        descriptions: band descriptions (or band tokens of band files), in file order.
        name: file or folder name, matched against the modalities' file-name patterns.
        has_wavelengths: whether every band carries a centre wavelength.
        source: what to call the scene in error messages (default: ``name``).

    Raises:
        ModalityError: nothing identifies the modality; the message says how to choose one.
    """
    source = source or name or "scene"
    labels = [d for d in descriptions if d]
    resampled = next((m for m in MODALITIES.values() if m.spectral_resample), None)
    if has_wavelengths and band_count >= _MIN_HYPERSPECTRAL_BANDS and resampled is not None:
        return resampled
    if labels and len(labels) == band_count and not generic_descriptions(labels):
        return _from_descriptions(labels, name, source)
    for modality in MODALITIES.values():
        if modality.num_bands == band_count or modality.spectral_resample:
            if any(re.search(p, name, re.IGNORECASE) for p in modality.filename_patterns):
                if not modality.spectral_resample or has_wavelengths:
                    return modality
    token = band_name_from_filename(PurePath(source).stem)
    if band_count == 1 and token:
        raise ModalityError(
            f"{source}: one band ({token}) of a band-per-file product; give all its band files "
            "together (files sharing a product id become one scene), or their folder, or --stack to stack files "
            "named otherwise"
        )
    for modality in MODALITIES.values():
        if not modality.spectral_resample and any(re.search(p, name, re.IGNORECASE) for p in modality.filename_patterns):
            raise ModalityError(
                f"{source}: its name or sensor tags say {modality.name} but it has {band_count} of its "
                f"{modality.num_bands} bands; name them in file order with --bands (choosing among "
                f"{', '.join(modality.band_names)})"
            )
    for modality in MODALITIES.values():
        if modality.default_for_band_count and modality.num_bands == band_count:
            return modality
    raise ModalityError(
        f"{source}: {band_count} band(s) fit no known modality; pass --modality "
        f"({', '.join(MODALITIES)}) and, for a subset of its bands, --bands"
    )


# descriptions GDAL and common tools write that say nothing about the band ("Band 1", "b2", "layer_3")
_GENERIC = re.compile(r"(band|layer|channel|b)[ _\-]?\d+", re.IGNORECASE)


def generic_descriptions(labels: Sequence[str]) -> bool:
    """Whether band descriptions say nothing about the bands (``Band 1``, ``layer_2``; empty ones count too)."""
    return all(not label or _GENERIC.fullmatch(label.strip()) and all(m.band_index(label) is None for m in MODALITIES.values())
               for label in labels)


def _from_descriptions(labels: Sequence[str], name: str, source: str) -> Modality:
    """The modality whose bands the descriptions name: complete where one fits exactly, else the one
    registered sensor they are a subset of; the file name breaks ties; several left is an error.
    """
    fitting = [m for m in MODALITIES.values() if not m.spectral_resample and _names_distinct_bands(m, labels)
               and (not m.named_only or any(re.search(p, name, re.IGNORECASE) for p in m.filename_patterns))]
    if not fitting:
        unknown = [x for x in labels if all(m.band_index(x) is None for m in MODALITIES.values())]
        what = f"band description(s) {', '.join(map(repr, unknown))} name no known band" if unknown else (
            f"band descriptions {', '.join(labels)} are not bands of one sensor")
        raise ModalityError(f"{source}: {what}; name the file's bands with --bands (and --modality), or give "
                            "--wavelengths for a sensor not in the registry")
    # the file name first, then descriptions that are a sensor's own band names (``B4`` is Landsat's, ``B04``
    # Sentinel-2's, ``nir`` the RGB-NIR band's) rather than aliases
    evidence = {m.name: (sum(bool(re.search(p, name, re.IGNORECASE)) for p in m.filename_patterns),
                         sum(x in m.band_names for x in labels)) for m in fitting}
    best = max(evidence.values())
    pool = [m for m in fitting if evidence[m.name] == best]
    complete = [m for m in pool if m.num_bands == len(labels)]
    if len(complete) == 1:
        return complete[0]
    if len(pool) == 1:
        return pool[0]
    # the names others share once unpadded (Landsat's B4 is Sentinel-2's B04): those sensors are options too
    also = [m for m in fitting if m not in pool and evidence[m.name][0] == best[0]]
    options = ""
    if also:
        theirs = [also[0].bands[also[0].band_index(x) or 0].name for x in labels]
        options = (f" and, read as {', '.join(theirs)}, {', '.join(m.name for m in also)} (--modality {also[0].name} "
                   f"--bands {','.join(theirs)})")
    raise ModalityError(f"{source}: band descriptions {', '.join(labels)} fit {', '.join(m.name for m in pool)}"
                        f"{options}; pass --modality")


def _names_distinct_bands(modality: Modality, labels: Sequence[str]) -> bool:
    positions = [modality.band_index(label) for label in labels]
    return None not in positions and len(set(positions)) == len(positions)


# a file order's darkest band must have a median at most this fraction of the next darkest band's (the cirrus
# band's few tens of DN against hundreds); its alike bands' medians must differ by this much less in log ratio
# than those at the other order's places (B8A / B08 near 1, against B09 or B12 / B08 of a third to a half);
# less clear a difference decides nothing
DARKEST_MARGIN = 0.5
ALIKE_MARGIN = 0.2


def choose_file_order(modality: Modality, medians: Sequence[float], *, source: str) -> tuple[FileOrder, str]:
    """The order in which a file of all ``modality``'s bands, none named, stores them (see
    :class:`~ofa_embed.sensors.registry.FileOrder`), from the median file value of each band.

    Each cue that is clear votes for the orders it fits: the darkest band's place, and the place of the two
    bands alike; the order that every clear cue fits is taken. None clear, or cues that disagree: refused.

    Args:
        modality: a modality with :attr:`~ofa_embed.sensors.registry.Modality.file_orders`.
        medians: the median value of each file band, in file order.
        source: the file, for messages.

    Returns:
        The order, and the line that says which was taken and why.

    Raises:
        ModalityError: the values fit no order, or several; the message says what to pass.
    """
    values = np.asarray(medians, np.float64)
    orders = modality.file_orders
    ranked = np.argsort(values, kind="stable")
    darkest = int(ranked[0])
    said: list[str] = []
    votes: list[set[str]] = []
    if values[darkest] <= DARKEST_MARGIN * values[ranked[1]]:
        votes.append({o.name for o in orders if o.bands.index(o.darkest) == darkest})
        said.append(f"band {darkest + 1} is far the darkest (median {values[darkest]:.4g})")
    with np.errstate(divide="ignore", invalid="ignore"):
        gaps = {o.name: abs(float(np.log(values[o.bands.index(o.alike[0])] / values[o.bands.index(o.alike[1])])))
                for o in orders}
    finite = sorted((g, n) for n, g in gaps.items() if np.isfinite(g))
    if len(finite) == len(orders) and finite[0][0] + ALIKE_MARGIN < finite[1][0]:
        best = next(o for o in orders if o.name == finite[0][1])
        votes.append({best.name})
        places = [best.bands.index(b) + 1 for b in best.alike]
        said.append(f"bands {places[0]} and {places[1]} are alike (median ratio {np.exp(finite[0][0]):.3g})")
    chosen = set.intersection(*votes) if votes else set()
    options = "; ".join(f"{o.source}: --bands {','.join(o.bands)}" for o in orders)
    if len(chosen) != 1:
        why = ("the cues disagree: " + ", ".join(said)) if votes else (
            f"no cue is clear (band {darkest + 1} is the darkest, median {values[darkest]:.4g} against "
            f"{values[ranked[1]]:.4g})")
        raise ModalityError(f"{source}: {len(values)} {modality.name} bands without names, and their values do not tell "
                            f"in which order they are stored ({why}); name them in file order ({options})")
    order = next(o for o in orders if o.name in chosen)
    line = (f"{source}: {len(values)} bands without names read in {order.source} order ({order.name}): "
            f"{' and '.join(said)}, as in that order; pass --bands if the file says otherwise")
    return order, line
