"""Opening scenes: one multi-band raster, a folder or archive of single-band files, or a list of band files,
as one band stack (:class:`~ofa_embed.raster.scene.Scene`) with its modality, band layout, date and values
checked; the scenes of a run (:func:`open_scenes`), and the chips of a collection (:func:`open_like`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from ofa_embed.errors import ModalityError, SceneNotFoundError
from ofa_embed.raster.checks import check_value_range, sample_statistics
from ofa_embed.raster.dates import acquisition_time
from ofa_embed.raster.evidence import sensor_evidence
from ofa_embed.raster.files import archive_kind, band_files, scene_name
from ofa_embed.raster.radiometry import file_scaling, modality_by_scaling, read_radiometry
from ofa_embed.raster.scene import SAR_SCALES, Scene
from ofa_embed.raster.source import Source, band_source, check_georeferenced, image_bands, open_dataset
from ofa_embed.raster.spectral import band_wavelengths, spectral_matrix
from ofa_embed.sensors import (
    CUSTOM,
    Modality,
    band_name_from_filename,
    choose_file_order,
    custom_modality,
    detect_band_file_modality,
    detect_modality,
    generic_descriptions,
    get_modality,
)

__all__ = ["KEPT_OPEN_FILES", "open_like", "open_scene", "open_scenes"]

logger = logging.getLogger(__name__)

# scenes of a run stay open once opened and checked, up to this many files (a Sentinel-2 scene is 13; 1024 open
# files is a common limit); the scenes past it are released and reopened when read
KEPT_OPEN_FILES = 128


def open_scene(
    scene: str | Path | Sequence[str | Path],
    *,
    modality: str | None = None,
    bands: Sequence[str] | None = None,
    nodata: float | None = None,
    wavelengths: Sequence[float] | None = None,
    statistics: tuple[Sequence[float], Sequence[float]] | None = None,
    sar_scale: str = "db",
    check_values: bool = True,
) -> Scene:
    """Open a scene as a band stack on one grid, with its values checked against the modality's scaling.

    Args:
        scene: a multi-band raster (GeoTIFF/COG/JP2/VRT), a folder of single-band files (band-per-file
            Sentinel-2 or Landsat, SAFE folders included), or a list of single-band files.
        modality: registered modality name; detected from the file when None.
        bands: names of the file's bands in file order (a subset of the modality's bands is allowed;
            missing bands are filled with the band mean). Overrides band descriptions.
        nodata: nodata value; defaults to the file's.
        wavelengths: centre wavelength (µm) of each band in file order, for a sensor the registry does
            not know: the scene becomes a :data:`~ofa_embed.sensors.CUSTOM` modality, normalised with
            ``statistics`` or else with the mean/std of a sample of its own file values. (A file whose
            modality cannot be detected but whose bands carry wavelength tags is opened the same way.)
        statistics: ``(mean, std)`` per band of the file values, for ``wavelengths`` (e.g. a store's).
        sar_scale: Sentinel-1 file values in ``db`` (default), linear ``power`` or ``amplitude``
            (converted to dB while reading).
        check_values: sample the file's values and refuse those that contradict the modality's scaling
            (8-bit modalities given 16-bit values, digital-number modalities given reflectance floats or
            8-bit renderings, dB given linear SAR), naming what would fit; where the values are plausible
            either way, warn (logged, and recorded in ``Scene.input_values``).

    Raises:
        SceneNotFoundError: a path does not exist.
        SceneReadError: not a raster, or unreadable.
        NoGeoreferenceError: no CRS or geotransform.
        ModalityError: modality unknown, or bands that do not fit it.
    """
    if wavelengths is not None and modality is not None:
        raise ModalityError("give either a modality or band wavelengths, not both")
    if sar_scale not in SAR_SCALES:
        raise ModalityError(f"--sar-scale {sar_scale!r}: choose one of {', '.join(SAR_SCALES)}")
    opened = _open_scene(scene, modality, bands, nodata, wavelengths)
    if opened.mask is not None:  # a fact of the file, not an assumption
        logger.info("%s: pixels its %s marks invalid are left out", opened.path, opened.mask)
    if opened.modality.name != CUSTOM:
        try:
            if sar_scale != "db" and opened.modality.value_kind != "sar_db":
                raise ModalityError(f"{opened.path}: --sar-scale is for SAR; this scene is {opened.modality.name}")
            opened.sar_scale = sar_scale
            if check_values:
                opened.input_values = check_value_range(opened)
            return opened
        except BaseException:
            opened.close()
            raise
    try:
        if statistics is None:
            sampled_mean, sampled_std, stats_source = sample_statistics([opened])
            mean, std = sampled_mean.tolist(), sampled_std.tolist()
        else:
            (mean, std), stats_source = statistics, "given"
        opened.modality = custom_modality(opened.modality.wavelengths_um.tolist(), mean, std, stats_source=stats_source,
                                          labels=opened.modality.band_names)
        return opened
    except BaseException:
        opened.close()
        raise


def open_scenes(items: Sequence[str | Path | Sequence[str | Path]], **open_args: Any) -> list[Scene]:
    """Open and check the scenes of a run (:func:`open_scene`, given ``open_args``), in order. They stay open up
    to :data:`KEPT_OPEN_FILES` files (the first whatever its count): a run reads them without reopening them.
    The scenes past that are released (:meth:`Scene.release`) once checked, so that a run of thousands holds a
    bounded number of files open; the kept scenes but the first drop their value sample as a released scene
    does.

    (They are opened one after the other: opening several at once measured no faster, since reading the value
    sample is GIL-bound Python around many small reads; ``benchmarks/`` measures it.)

    Raises:
        what :func:`open_scene` raises, for the first scene that fails, once those opened are closed.
    """
    scenes: list[Scene] = []
    open_files = 0
    try:
        for item in items:
            scene = open_scene(item, **open_args)
            scenes.append(scene)
            files = len(scene.sources)
            if len(scenes) == 1 or open_files + files <= KEPT_OPEN_FILES:
                open_files += files
                if len(scenes) > 1:
                    scene.drop_sample()
            else:
                scene.release()
    except BaseException:
        for scene in scenes:
            scene.close()
        raise
    return scenes


def open_like(template: Scene, path: Path, name: str, nodata: float | None = None) -> Scene:
    """Open ``path``, a file of the same sensor and band layout as ``template`` (one chip of a collection),
    without detecting its modality or checking its values again: the template's modality, band positions,
    labels and value check apply. Its grid, CRS, date and nodata (``nodata``, else the file's) are its own.

    Raises:
        SceneReadError, NoGeoreferenceError: unreadable or not georeferenced.
        ModalityError: a band count, data type or band descriptions other than the template's.
    """
    if len(template.sources) != 1 or template.sources[0].grid is not None:
        raise ModalityError(f"{template.path}: chips are single multi-band files, not band files on several grids")
    first = template.sources[0].dataset
    dataset = open_dataset(path)
    try:
        check_georeferenced(path, dataset)
        layout = (dataset.count, dataset.dtypes[0], [d or "" for d in dataset.descriptions])
        expected = (first.count, first.dtypes[0], [d or "" for d in first.descriptions])
        if layout != expected:
            raise ModalityError(
                f"{path}: {layout[0]} {layout[1]} band(s) described {layout[2]}, but the collection's first chip "
                f"{template.path} has {expected[0]} {expected[1]} band(s) described {expected[2]}; "
                "extract each sensor's chips into their own store"
            )
        return template.on_files(
            [Source(path, dataset, template.sources[0].indexes)], path=path, name=name, crs=dataset.crs,
            transform=dataset.transform, width=dataset.width, height=dataset.height,
            nodata=nodata if nodata is not None else dataset.nodata, acquired=acquisition_time(path.stem, dataset.tags()),
        )
    except BaseException:
        dataset.close()
        raise


def _open_scene(
    scene: str | Path | Sequence[str | Path], modality: str | None, bands: Sequence[str] | None,
    nodata: float | None, wavelengths: Sequence[float] | None,
) -> Scene:
    paths = [Path(scene)] if isinstance(scene, (str, Path)) else [Path(p) for p in scene]
    if not paths:
        raise SceneNotFoundError("no scene given")
    for path in paths:
        if not path.exists():
            raise SceneNotFoundError(f"{path}: no such file or folder")
    if len(paths) == 1 and (paths[0].is_dir() or archive_kind(paths[0])):
        label, files = paths[0], band_files(paths[0])
    else:
        label, files = paths[0], paths
    if len(files) == 1:
        return _open_multiband(files[0], modality, bands, nodata, wavelengths)
    return _open_band_files(label, files, modality, bands, nodata, wavelengths)


def _given_sensor(source: Path, wavelengths: Sequence[float], labels: Sequence[str], count: int) -> Modality:
    """A placeholder custom modality (statistics follow in :func:`open_scene`) for ``count`` bands."""
    if len(wavelengths) != count:
        raise ModalityError(f"{source}: {len(wavelengths)} wavelength(s) given for {count} band(s)")
    names = list(labels) if len(set(labels)) == count and all(labels) else None
    return custom_modality(wavelengths, [0.0] * count, [1.0] * count, stats_source="", labels=names)


def _open_multiband(
    path: Path, modality_name: str | None, bands: Sequence[str] | None, nodata: float | None,
    given_wavelengths: Sequence[float] | None,
) -> Scene:
    dataset = open_dataset(path)
    try:
        check_georeferenced(path, dataset)
        # an alpha band is the file's validity mask (Source.mask), not a band, unless --bands names every band
        indexes, alpha_said = image_bands(dataset)
        if bands is not None and len(bands) == dataset.count:
            indexes, alpha_said = list(range(1, dataset.count + 1)), None
        count = len(indexes)
        descriptions = [dataset.descriptions[i - 1] or "" for i in indexes]
        wavelengths = band_wavelengths(dataset)
        tags = dataset.tags()
        # sensor tags (SPACECRAFT_NAME=Sentinel-2A, PRODUCT_TYPE=S2MSI2A, ...) count like the file name
        evidence = sensor_evidence(path.stem, tags)
        labels_given = list(bands) if bands is not None else descriptions
        if given_wavelengths is not None:
            modality = _given_sensor(path, given_wavelengths, labels_given, count)
        elif modality_name:
            modality = get_modality(modality_name)
        else:
            try:
                modality = detect_modality(count, descriptions=descriptions, name=evidence,
                                           has_wavelengths=wavelengths is not None, source=str(path))
            except ModalityError:
                if wavelengths is None or bands is not None:
                    raise
                # no registered sensor, but the file says where its bands sit in the spectrum
                modality = _given_sensor(path, wavelengths, labels_given, count)
        said: list[str] = []
        scaling = file_scaling([(dataset, indexes)])
        if (modality_name is None and given_wavelengths is None and bands is None and not modality.spectral_resample
                and modality.name != CUSTOM and generic_descriptions(descriptions)
                and not any(re.search(p, evidence, re.IGNORECASE) for p in modality.filename_patterns)):
            # identified by its band count alone: the file's own scaling may name the product; else say the guess
            by_scaling = modality_by_scaling(count, scaling)
            if by_scaling is not None and by_scaling is not modality:
                said.append(f"{path}: {count} bands without names read as {by_scaling.name} "
                            f"({', '.join(by_scaling.band_names)}): its GDAL scale/offset ({by_scaling.scale:g}, "
                            f"{by_scaling.offset:g}) are that product's; pass --modality if it is another")
                modality = by_scaling
            elif by_scaling is None:
                said.append(_band_count_guess(path, modality))
        spectral = None
        if modality.name == CUSTOM:
            labels, positions = list(modality.band_names), list(range(count))
        elif modality.spectral_resample:
            if wavelengths is None:
                raise ModalityError(
                    f"{path}: hyperspectral input needs a wavelength per band (band tag 'wavelength')"
                )
            labels, positions = [f"{w:.4f}um" for w in wavelengths], list(range(count))
            spectral = spectral_matrix(modality, wavelengths)
        else:
            labels, positions = _band_layout(path, modality, count, descriptions, bands)
        nodata_value = _nodata(path, modality, nodata, dataset.nodata, said)
        opened = Scene(
            path, path.stem, modality, dataset.crs, dataset.transform, dataset.width, dataset.height,
            positions, labels, nodata_value, acquisition_time(path.stem, tags), spectral,
            [Source(path, dataset, indexes)],
        )
        if spectral is not None and wavelengths is not None:
            opened, kept = _drop_empty_bands(opened, wavelengths)
            scaling = [scaling[i] for i in kept]
        if alpha_said:
            opened.assumed.append(alpha_said)
            logger.info(alpha_said)
        if modality.file_orders and bands is None and generic_descriptions(descriptions):
            _settle_file_order(opened)
        _settle_radiometry(opened, scaling, [], tags, said)
        return opened
    except BaseException:
        dataset.close()
        raise


def _drop_empty_bands(scene: Scene, wavelengths: Sequence[float]) -> tuple[Scene, list[int]]:
    """A hyperspectral scene without the bands that hold no valid value (water-vapour absorption bands are
    nodata in every pixel of EnMAP or PRISMA products): resampled from the others, as a band outside the
    input's range is, instead of leaving every pixel invalid. Said in one line. Also the source bands kept.

    Raises:
        ModalityError: no band holds a valid value.
    """
    empty = scene.empty_bands()
    kept = [i for i in range(len(scene.band_positions)) if i not in empty]
    if not empty:
        return scene, kept
    if not kept:
        raise ModalityError(f"{scene.path}: no band holds a valid value (all nodata or not finite); check --nodata")
    source = scene.sources[0]
    lost = [wavelengths[i] for i in empty]
    said = (f"{scene.path}: {len(empty)} band(s) at {min(lost):.4f}-{max(lost):.4f} µm hold no valid pixel (absorption "
            "bands?): left out, the others resampled onto the model's wavelengths")
    trimmed = scene.on_files(
        [Source(source.path, source.dataset, [source.indexes[i] for i in kept])],
        band_positions=list(range(len(kept))), source_labels=[scene.source_labels[i] for i in kept],
        spectral_matrix=spectral_matrix(scene.modality, [wavelengths[i] for i in kept]),
    )
    trimmed.assumed.append(said)
    logger.info(said)
    return trimmed, kept


def _band_count_guess(path: Path, modality: Modality) -> str:
    """The line that says a file was taken for ``modality`` by its band count alone, and what else it may be."""
    hint = f"; {modality.guess_hint}" if modality.guess_hint else "; pass --modality and --bands if it is not"
    return (f"{path}: no band names, sensor tags or product name: its {modality.num_bands} bands read as "
            f"{modality.name} ({', '.join(modality.band_names)}), the guess for {modality.num_bands} bands{hint}")


def _nodata(path: Path, modality: Modality, given: float | None, declared: float | None, said: list[str]) -> float | None:
    """The nodata value: given, else the file's, else the product's fill value (said)."""
    if given is not None:
        return given
    if declared is None and modality.fill_value is not None:
        said.append(f"{path}: the file declares no nodata: {modality.name}'s fill value {modality.fill_value:g} taken "
                    "as nodata; pass --nodata if it uses another")
        return modality.fill_value
    return declared


def _settle_radiometry(scene: Scene, scaling: list[tuple[float, float] | None], texts: list[str], tags: dict[str, str],
                       said: list[str]) -> None:
    """Give ``scene`` its bands' scale and offset from the file and its product (:mod:`~ofa_embed.raster.radiometry`)
    and put ``said`` (what the opening took for granted) with what this takes for granted first in
    ``scene.assumed``, logged.

    Raises:
        ModalityError: the file's own scaling contradicts the modality.
    """
    if scene.modality.name != CUSTOM and len(scaling) == len(scene.source_labels):
        radiometry, notes = read_radiometry(
            scene.modality, scene.source_labels, scaling, where=scene.path, texts=[scene.path.name, *texts],
            tags=tags, acquired=scene.acquired, source=str(scene.path))
        scene.radiometry = radiometry if radiometry.own else None
        said = [*said, *notes]
    for line in said:
        logger.info(line)
    scene.assumed[:0] = said


def _settle_file_order(scene: Scene) -> None:
    """Read the bands of a file that names none in the order its values fit, of the orders its sensor's
    distributions use (:func:`~ofa_embed.sensors.choose_file_order`), and say which.

    Raises:
        ModalityError: the values fit no order, or several.
    """
    sample = scene.sample_raw()
    if sample.shape[1] == 0:  # nothing to read either: the tiling reports the scene as empty
        said = (f"{scene.path}: no valid pixel in the value sample to tell the order of its unnamed bands by: "
                f"{scene.modality.name}'s canonical order taken; pass --bands")
        scene.assumed.append(said)
        logger.warning(said)
        return
    order, said = choose_file_order(scene.modality, np.median(sample, axis=1), source=str(scene.path))
    scene.source_labels = list(order.bands)
    scene.band_positions = scene.modality.resolve_bands(order.bands, source=f"{scene.path}: {order.name} order")
    scene.assumed.append(said)
    logger.info(said)


def _band_layout(
    path: Path, modality: Modality, count: int, descriptions: Sequence[str], bands: Sequence[str] | None
) -> tuple[list[str], list[int]]:
    """Labels and canonical positions of a file's bands: ``--bands`` first, then band descriptions that
    name the modality's bands (any order: they fix band-order mix-ups), else the canonical order.
    """
    if bands is not None:
        if len(bands) != count:
            raise ModalityError(f"{path}: --bands names {len(bands)} band(s) but the file has {count}")
        return list(bands), modality.resolve_bands(bands, source=f"{path}: --bands")
    if not generic_descriptions(descriptions):
        # descriptions that say what the bands are decide, whatever the modality's order or band count
        if not all(descriptions):
            raise ModalityError(f"{path}: only some bands have descriptions ({', '.join(map(repr, descriptions))}); "
                                "name all the file's bands with --bands")
        return list(descriptions), modality.resolve_bands(descriptions, source=f"{path}: band descriptions")
    if count != modality.num_bands:
        raise ModalityError(
            f"{path}: {count} band(s) but {modality.name} has {modality.num_bands}; name the file's bands "
            f"with --bands (e.g. --bands {','.join(modality.band_names[:count])})"
        )
    return list(modality.band_names), list(range(count))


def _open_band_files(
    label: Path, files: list[Path], modality_name: str | None, bands: Sequence[str] | None, nodata: float | None,
    given_wavelengths: Sequence[float] | None,
) -> Scene:
    tokens = [band_name_from_filename(f.stem) for f in files]
    if given_wavelengths is not None:
        # file order is band order: the wavelengths were given for the files as listed
        modality = _given_sensor(label, given_wavelengths, list(bands) if bands else [t or "" for t in tokens], len(files))
        return _stack_band_files(label, files, modality, list(range(len(files))), list(modality.band_names), nodata)
    if bands is None and any(t is None for t in tokens):
        unnamed = files[tokens.index(None)]
        raise ModalityError(f"{unnamed}: cannot tell which band this file is (no _B<n> in its name); use --bands")
    names = list(bands) if bands is not None else [t for t in tokens if t]
    if bands is not None and len(bands) != len(files):
        raise ModalityError(f"{label}: --bands names {len(bands)} band(s) but {len(files)} band files were given")
    if modality_name:
        modality = get_modality(modality_name)
    else:
        modality = detect_band_file_modality(names, texts=[label.name, *(f.stem for f in files)], source=str(label))
    keep = [i for i, n in enumerate(names) if modality.band_index(n) is not None]
    if not keep:
        raise ModalityError(f"{label}: no band file matches a {modality.name} band ({', '.join(modality.band_names)})")
    files, names = [files[i] for i in keep], [names[i] for i in keep]
    positions = modality.resolve_bands(names, source=str(label))
    return _stack_band_files(label, files, modality, positions, names, nodata)


def _stack_band_files(label: Path, files: list[Path], modality: Modality, positions: list[int], names: list[str],
                      nodata: float | None) -> Scene:
    datasets: list[rasterio.io.DatasetReader] = []
    try:
        for path in files:
            datasets.append(open_dataset(path))
            check_georeferenced(path, datasets[-1])
            if datasets[-1].count != 1:
                raise ModalityError(f"{path}: band files must have one band, this one has {datasets[-1].count}")
        reference = min(datasets, key=lambda d: abs(d.res[0] * d.res[1]))
        said: list[str] = []
        nodata_value = _nodata(label, modality, nodata, reference.nodata, said)
        sources = [band_source(d, reference, nodata if nodata is not None or d.nodata is not None else nodata_value)
                   for d in datasets]
        scene = Scene(
            label, scene_name(label), modality, reference.crs, reference.transform,
            reference.width, reference.height, positions, names, nodata_value,
            acquisition_time(label.name + " " + files[0].stem, reference.tags()), None, sources,
        )
        _settle_radiometry(scene, file_scaling([(d, [1]) for d in datasets]), [f.name for f in files],
                           reference.tags(), said)
        return scene
    except BaseException:
        for dataset in datasets:
            dataset.close()
        raise
