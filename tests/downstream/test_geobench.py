"""GEO-Bench v1.0 runner on fixture roots written in GEO-Bench's own on-disk format.

Each sample is an ``.hdf5`` file with one dataset per band named by its GEO-Bench band name (plus
``_YYYY-MM-DD`` for dated bands), a ``label`` dataset for segmentation masks, and a ``pickle`` file
attribute holding ``str(pickle.dumps(...))`` of the metadata dict (band descriptions as instances of
``geobench.dataset`` classes, affine transform, CRS, ``bands_order``, classification ``label``). The
geobench classes are stand-ins registered under their real module names only while writing, so the
reader must decode the pickles without them, as it will on a machine without geobench.
"""

from __future__ import annotations

import datetime
import json
import pickle
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from affine import Affine
from rasterio.crs import CRS
from typer.testing import CliRunner

from ofa_embed.cli.main import app
from ofa_embed.downstream.geobench import (
    GEOBENCH_TASKS,
    GeoBenchError,
    find_tasks,
    geobench,
    mean_iou,
    open_task,
    read_sample,
)
from ofa_embed.downstream.geobench.scoring import Layout
from ofa_embed.model import create_model
from ofa_embed.model.checkpoint import save_checkpoint
from ofa_embed.sensors import get_modality

runner = CliRunner()
N_BOOT = 100
EUROSAT_BANDS = GEOBENCH_TASKS["m-eurosat"].bands
BIGEARTHNET_BANDS = GEOBENCH_TASKS["m-bigearthnet"].bands
RGB_BANDS = ("Red", "Green", "Blue")


@contextmanager
def geobench_classes() -> Iterator[types.SimpleNamespace]:
    """Band and label description classes under the module names geobench pickles them with."""
    package, dataset = types.ModuleType("geobench"), types.ModuleType("geobench.dataset")

    class BandInfo:
        def __init__(self, name: str, alt_names: tuple[str, ...] = (), spatial_resolution: float = 10.0) -> None:
            self.name, self.alt_names, self.spatial_resolution = name, alt_names, spatial_resolution

    classes = {"Sentinel2": type("Sentinel2", (BandInfo,), {}), "SpectralBand": type("SpectralBand", (BandInfo,), {}),
               "SegmentationClasses": type("SegmentationClasses", (BandInfo,), {})}
    for name, cls in classes.items():
        cls.__module__, cls.__qualname__ = "geobench.dataset", name
        setattr(dataset, name, cls)
    sys.modules["geobench"], sys.modules["geobench.dataset"] = package, dataset
    try:
        yield types.SimpleNamespace(**classes)
    finally:
        del sys.modules["geobench"], sys.modules["geobench.dataset"]


def write_sample(folder: Path, name: str, bands: dict[str, np.ndarray], label: int | np.ndarray, *,
                 band_class: type, mask_class: type, date: datetime.date | None = None) -> Path:
    """One sample the way geobench's ``write_sample_hdf5`` lays it out."""
    metadata: dict[str, object] = {}
    order = []
    path = folder / f"{name}.hdf5"
    segmentation = isinstance(label, np.ndarray) and label.ndim == 2
    entries = [(band, data, band_class(band)) for band, data in bands.items()]
    if segmentation:
        entries.append(("label", label, mask_class("label")))
    with h5py.File(path, "w") as handle:
        for band, data, info in entries:
            descriptor = band if date is None or band == "label" else f"{band}_{date:%Y-%m-%d}"
            handle.create_dataset(name=descriptor, data=data)
            metadata[descriptor] = {
                "date": date, "date_id": date, "spatial_resolution": 10.0, "band_info": info, "meta_info": None,
                "transform": Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0), "crs": CRS.from_epsg(32633),
            }
            order.append(descriptor)
        if not segmentation:
            metadata["label"] = label
        metadata["bands_order"] = order
        handle.attrs["pickle"] = str(pickle.dumps(metadata))
    return path


def write_task(root: Path, task: str, samples: list[tuple[str, str, dict[str, np.ndarray], object]],
               band_class: str = "Sentinel2", date: datetime.date | None = None) -> Path:
    """A task folder: samples, ``default_partition.json`` and ``band_stats.json``."""
    folder = root / GEOBENCH_TASKS[task].benchmark / task
    folder.mkdir(parents=True)
    partition: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    with geobench_classes() as classes:
        for name, split, bands, label in samples:
            write_sample(folder, name, bands, label, band_class=getattr(classes, band_class),
                         mask_class=classes.SegmentationClasses, date=date)
            partition[split].append(name)
    (folder / "default_partition.json").write_text(json.dumps(partition, indent=2))
    values = {band: np.concatenate([s[2][band].ravel() for s in samples if band in s[2]]) for band in samples[0][2]}
    stats = {band: {"min": float(v.min()), "max": float(v.max()), "mean": float(v.mean()), "std": float(v.std()),
                    "median": float(np.median(v)), **{f"percentile_{q}".replace(".", "_"): float(np.percentile(v, q))
                                                       for q in (0.1, 1, 5, 95, 99, 99.9)}}
             for band, v in values.items()}
    (folder / "band_stats.json").write_text(json.dumps(stats, indent=4, sort_keys=True))
    return folder


def s2_bands(names: dict[str, str | None], modality: str, rng: np.random.Generator, size: int,
             boost: dict[str, float]) -> dict[str, np.ndarray]:
    """Digital numbers at the registry band mean (times ``boost[band]``) plus noise, for each stored name."""
    registry = get_modality(modality)
    out = {}
    for stored, band in names.items():
        level = registry.bands[registry.band_index(band)].mean * 10_000 * boost.get(band, 1.0)
        out[stored] = np.clip(level + rng.normal(0, 30, (size, size)), 1, 30_000).astype(np.int16)
    return out


SPLIT_SIZES = {"train": 8, "valid": 2, "test": 3}


def eurosat_samples(rng: np.random.Generator) -> list:
    """Three classes told apart by content: dark, as is, bright red-edge/NIR vegetation."""
    looks = {0: {b: 0.5 for b in ("B02", "B03", "B04")}, 1: {}, 2: {"B06": 3.0, "B07": 3.0, "B08": 3.0, "B8A": 3.0}}
    return [(f"id_{split}_{label}_{i}", split, s2_bands(EUROSAT_BANDS, "sentinel2_l1c", rng, 32, looks[label]), label)
            for split, count in SPLIT_SIZES.items() for label in looks for i in range(count)]


def bigearthnet_samples(rng: np.random.Generator) -> list:
    """43-long multi-hot labels: label 0 on every sample (cannot be fitted), 7 with bright NIR, 12 with dark SWIR."""
    samples = []
    for split, count in SPLIT_SIZES.items():
        for i in range(4 * count):
            nir, dry = i % 2, (i // 2) % 2
            label = np.zeros(43, np.int64)
            label[[0, 7, 12]] = 1, nir, dry
            boost = {"B08": 3.0, "B8A": 3.0} if nir else {}
            boost |= {"B11": 0.3, "B12": 0.3} if dry else {}
            samples.append((f"id_{split}_{i}", split, s2_bands(BIGEARTHNET_BANDS, "sentinel2_l2a", rng, 32, boost), label))
    return samples


def pv_samples(rng: np.random.Generator) -> list:
    """RGB 32 x 32 with a bright 16 x 16 quadrant that is the class-1 mask."""
    samples = []
    for split, count in SPLIT_SIZES.items():
        for i in range(2 * count):
            row, col = 16 * (i % 2), 16 * ((i // 2) % 2)
            mask = np.zeros((32, 32), np.uint8)
            mask[row:row + 16, col:col + 16] = 1
            image = {b: np.clip(rng.normal(60, 8, (32, 32)) + 150 * mask, 0, 255).astype(np.uint8) for b in RGB_BANDS}
            samples.append((f"pv_{split}_{i}", split, image, mask))
    return samples


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Fixture tensors are tiny: thread hand-offs would cost more than the arithmetic on a busy 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("geobench")
    rng = np.random.default_rng(0)
    write_task(root, "m-eurosat", eurosat_samples(rng))
    write_task(root, "m-bigearthnet", bigearthnet_samples(rng))
    write_task(root, "m-pv4ger-seg", pv_samples(rng), band_class="SpectralBand")
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "ofa_test.safetensors"
    save_checkpoint(create_model("ofa_test"), path)
    return path


def run(*args: object):
    return runner.invoke(app, ["benchmark", "geobench", *map(str, args)])


def test_tasks_are_found_by_folder_and_samples_read_with_bands_labels_and_splits(root):
    found = find_tasks(root)
    assert set(found) == {"m-eurosat", "m-bigearthnet", "m-pv4ger-seg"}
    eurosat = open_task(found["m-eurosat"])
    assert {k: len(v) for k, v in eurosat.partition.items()} == {"train": 24, "valid": 6, "test": 9}
    test = list(eurosat.samples("test"))
    assert len(test) == 9 and {s.split for s in test} == {"test"}
    sample = test[0]
    assert sample.image.shape == (13, 32, 32) and sample.image.dtype == np.float32
    assert sample.band_names == list(EUROSAT_BANDS) and sample.label == int(sample.name.split("_")[2])
    picked = read_sample(eurosat.sample_path(sample.name), ["12 - SWIR", "02 - Blue"])
    assert picked.band_names == ["12 - SWIR", "02 - Blue"] and picked.image.shape == (2, 32, 32)
    assert picked.stored_bands == list(EUROSAT_BANDS)

    multilabel = next(open_task(found["m-bigearthnet"]).samples("train"))
    assert multilabel.image.shape == (12, 32, 32) and multilabel.label.shape == (43,) and multilabel.label[0] == 1
    seg = next(open_task(found["m-pv4ger-seg"]).samples("valid"))
    assert seg.band_names == list(RGB_BANDS) and seg.label.shape == (32, 32) and set(np.unique(seg.label)) == {0, 1}


def test_dated_and_coarser_bands_are_read_by_name_onto_the_finest_grid(tmp_path):
    bands = {"04 - Red": np.full((16, 16), 100, np.uint8), "05 - NIR": np.full((8, 8), 200, np.uint8)}
    with geobench_classes() as classes:
        path = write_sample(tmp_path, "forest", bands, 3, band_class=classes.SpectralBand,
                            mask_class=classes.SegmentationClasses, date=datetime.date(2016, 1, 1))
    with h5py.File(path) as handle:
        assert set(handle) == {"04 - Red_2016-01-01", "05 - NIR_2016-01-01"}
    sample = read_sample(path, ["05 - NIR", "04 - Red"])
    assert sample.band_names == ["05 - NIR", "04 - Red"] and sample.label == 3
    assert sample.image.shape == (2, 16, 16) and np.allclose(sample.image[0], 200) and np.allclose(sample.image[1], 100)


def test_bands_map_onto_the_registry_with_the_corrected_order_and_units():
    eurosat = Layout.of(GEOBENCH_TASKS["m-eurosat"])
    l1c = get_modality("sentinel2_l1c")
    assert eurosat.positions[eurosat.stored.index("12 - SWIR")] == l1c.band_index("B8A")
    assert eurosat.positions[eurosat.stored.index("08A - Vegetation Red Edge")] == l1c.band_index("B09")
    so2sat = Layout.of(GEOBENCH_TASKS["m-so2sat"])
    assert len(so2sat.stored) == 10 and not any("VH" in b or "VV" in b for b in so2sat.stored)
    # so2sat stores reflectance: the band mean in reflectance must normalise to 0, absent B01 stays 0
    reflectance = np.stack([np.full((4, 4), l1c.mean[p]) for p in so2sat.positions]).astype(np.float32)
    normalised = so2sat.normalise(types.SimpleNamespace(image=reflectance))
    assert normalised.shape == (13, 4, 4) and np.allclose(normalised, 0, atol=1e-4)
    assert Layout.of(GEOBENCH_TASKS["m-brick-kiln"]).stored[-1] == "09 - Water vapour"  # TCI channels dropped


def test_mean_iou_of_a_hand_made_case():
    confusions = np.zeros((2, 3, 3))
    confusions[0, :2, :2] = [[3, 1], [0, 4]]
    confusions[1, :2, :2] = [[2, 0], [2, 0]]  # class 2 never occurs: it does not count
    estimate = mean_iou(confusions, n_boot=200, seed=1)
    assert estimate.value == pytest.approx((5 / 8 + 4 / 7) / 2)
    assert estimate.low <= estimate.value <= estimate.high
    assert mean_iou(confusions, n_boot=200, seed=1) == estimate
    unbounded = mean_iou(confusions, n_boot=0)
    assert np.isnan(unbounded.low) and np.isnan(unbounded.high)


def test_probes_learn_labels_that_are_a_function_of_content(root, weights):
    seen: list[tuple[str, int, int]] = []
    report = geobench(root, weights=weights, n_boot=N_BOOT, batch_size=16, on_progress=lambda *a: seen.append(a))
    rows = {r.task: r for r in report.rows}
    assert list(rows) == ["m-bigearthnet", "m-eurosat", "m-pv4ger-seg"]
    eurosat = rows["m-eurosat"]
    assert (eurosat.metric, eurosat.n_train, eurosat.n_test, eurosat.reference) == ("accuracy", 30, 9, 0.962)
    assert eurosat.value >= 0.88 and eurosat.low <= eurosat.value <= eurosat.high
    assert eurosat.tile_size == (32, 32) and eurosat.modality == "sentinel2_l1c"
    big = rows["m-bigearthnet"]
    assert big.metric == "micro_map" and big.value >= 0.8 and (big.n_train, big.n_test) == (40, 12)
    seg = rows["m-pv4ger-seg"]
    # all-background scores 0.375; bilinear upsampling of a 2 x 2 logit grid moves the edge off the quadrant
    assert seg.metric == "miou" and seg.reference is None and seg.value >= 0.75 and (seg.n_train, seg.n_test) == (20, 6)
    assert ("m-eurosat", 39, 39) in seen and ("m-pv4ger-seg", 26, 26) in seen
    frame = report.to_frame()
    assert list(frame.task) == list(rows) and {"value", "low", "high", "reference"} <= set(frame.columns)


def test_cli_prints_the_table_and_json(root, weights):
    table = run("--root", root, "--tasks", "m-eurosat", "--weights", weights, "--n-boot", N_BOOT, "-q")
    assert table.exit_code == 0, table.output
    assert "m-eurosat" in table.output and "0.962" in table.output and "m-pv4ger-seg" not in table.output
    as_json = run("--root", root, "--tasks", "M-EuroSAT", "--weights", weights, "--n-boot", N_BOOT, "--json")
    assert as_json.exit_code == 0, as_json.output
    payload = json.loads(as_json.stdout)
    (row,) = payload["tasks"]
    assert row["task"] == "m-eurosat" and row["reference"] == 0.962 and 0 <= row["low"] <= row["value"] <= row["high"]


def eurosat_root(path: Path, breakage: Callable[[Path], None] = lambda folder: None,
                 edit: Callable[[list], None] = lambda samples: None) -> Path:
    """An m-eurosat root, broken by ``breakage(task_folder)`` or by editing its samples before writing."""
    samples = eurosat_samples(np.random.default_rng(1))
    edit(samples)
    breakage(write_task(path, "m-eurosat", samples))
    return path


def add_foreign_band(samples: list) -> None:
    samples[0][2]["99 - Thermal"] = samples[0][2]["02 - Blue"]


BAD_ROOTS: dict[str, tuple[Callable[[Path, Path], list[object]], str]] = {
    "missing root": (lambda tmp, root: ["--root", tmp / "nowhere"], "nowhere: GEO-Bench root not found"),
    "no task folder": (lambda tmp, root: ["--root", (tmp / "classification_v1.0").mkdir() or tmp],
                       "no GEO-Bench v1.0 task folders"),
    "unknown task": (lambda tmp, root: ["--root", root, "--tasks", "m-eurosat,m-foo"], "unknown GEO-Bench task 'm-foo'"),
    "task not on disk": (lambda tmp, root: ["--root", root, "--tasks", "m-forestnet"], "task m-forestnet not found"),
    "sample missing": (lambda tmp, root: ["--root", eurosat_root(tmp, lambda f: (f / "id_test_1_0.hdf5").unlink())],
                       "1 of 39 samples listed in default_partition.json have no .hdf5 file (first: id_test_1_0.hdf5"),
    "partition missing": (lambda tmp, root: ["--root", eurosat_root(tmp, lambda f: (f / "default_partition.json").unlink())],
                          "partition file default_partition.json missing"),
    "unknown band": (lambda tmp, root: ["--root", eurosat_root(tmp, edit=add_foreign_band)],
                     "band '99 - Thermal' is not a m-eurosat band"),
    "unreadable sample": (lambda tmp, root: ["--root", eurosat_root(tmp, lambda f: (f / "id_train_0_0.hdf5").write_bytes(b"x"))],
                          "id_train_0_0.hdf5: not a readable HDF5 file"),
}


@pytest.mark.parametrize("case", list(BAD_ROOTS))
def test_bad_roots_give_one_line_and_exit_1(tmp_path, root, weights, case):
    arguments, message = BAD_ROOTS[case]
    args = arguments(tmp_path, root)
    result = run(*args, "--weights", weights, "--n-boot", 0, "-q")
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output


def test_library_errors_are_geobench_errors(tmp_path):
    with pytest.raises(GeoBenchError, match="root not found"):
        find_tasks(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="sample file not found"):
        read_sample(tmp_path / "nothing.hdf5")
