"""The one forward pass: device choice, precision policy, and concurrent CPU workers.

Every path that turns tiles into embeddings (``extract``, query tiles of ``search --like`` and SQL
``embed()``, GEO-Bench) calls :func:`embed`, so all of them run the model the same way: inference mode,
the precision of :func:`resolve_precision`, float32 output. Under bfloat16 the Transformer blocks run in
bfloat16 autocast while the patch embedding (where radiometry enters) stays float32
(:meth:`~ofa_embed.model.ofa.OFANet.embed_tokens`).

On CPU the forward passes of ``extract`` run in :func:`model_workers` threads, each on its own batch
with a share of torch's threads. Alone, one intra-op team over all cores does the same work in the
same CPU time; but whenever the reader takes a core, the team's other threads wait at every op for
the one preempted, while independent workers just share the cores, so a run with reading overlapped
finishes sooner and varies less from run to run.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch

from ofa_embed.embedding import PRECISIONS
from ofa_embed.errors import ConfigError, ModalityError
from ofa_embed.model.checkpoint import Backbone
from ofa_embed.raster.reader import TileBatch
from ofa_embed.sensors import CUSTOM, Modality, get_modality
from ofa_embed.threads import wait_through_interrupts

__all__ = ["MAX_CPU_WORKERS", "PRECISIONS", "DenseOutput", "ModelInput", "batches_held", "dense_batches", "embed",
           "embed_batches", "embed_dense", "model_input", "model_workers", "native_cpu_bf16", "CPU_BF16_ENV",
           "resolve_device", "resolve_precision"]

# beyond this many concurrent batches, more threads per batch are cheaper than more batches in memory
MAX_CPU_WORKERS = 4


def resolve_device(device: str | None) -> torch.device:
    """``device`` as a torch device; None or ``"auto"``: CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# "0" or "1" overrides what the CPU says for ``auto``: a host whose detection is wrong, or a run (the test suite)
# that must give the same numbers on every CPU
CPU_BF16_ENV = "OFA_EMBED_CPU_BF16"


def native_cpu_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX); without it torch emulates bf16,
    which is slower than float32. The environment variable :data:`CPU_BF16_ENV` (``0`` or ``1``), where set,
    answers instead of the CPU.

    Raises:
        ConfigError: the variable holds something other than ``0`` or ``1``.
    """
    forced = os.environ.get(CPU_BF16_ENV, "").strip()
    if forced:
        if forced not in ("0", "1"):
            raise ConfigError(f"{CPU_BF16_ENV}={forced!r}: set 0 (emulated bf16: auto is fp32) or 1 (native: auto is "
                              "bf16), or unset it to ask the CPU")
        return forced == "1"
    return _cpu_reports_bf16()


@functools.cache
def _cpu_reports_bf16() -> bool:
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"fp32"`` or ``"bf16"`` for a requested precision on ``device``.

    ``auto`` is bf16 on CUDA and on CPUs with native bf16 (:func:`native_cpu_bf16`), else fp32.

    Raises:
        ConfigError: ``precision`` is not one of :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" or (device.type == "cpu" and native_cpu_bf16()) else "fp32"


@dataclass(frozen=True)
class ModelInput:
    """What a backbone is fed from a modality's normalised band stack (as :class:`~ofa_embed.raster.scene.Scene`
    reads it): which bands, at which wavelengths, re-normalised how.

    Attributes:
        modality: the registered modality of the stack.
        positions: indices into the stack of the bands fed, in order; None: all of them.
        bands: names of the bands fed.
        wavelengths_um: the wavelength each fed band is given (wavelength-conditioned models), or None.
        gain, bias: ``(C_fed,)`` affine from the registry's normalisation to the weights' own, or None.
        record: the exact model input, for the store's metadata: ``bands``, ``wavelengths_um`` and per
            fed band the ``scale``/``offset`` from file values and the ``mean``/``std`` of the result.
    """

    modality: str
    positions: tuple[int, ...] | None
    bands: tuple[str, ...]
    wavelengths_um: tuple[float, ...] | None
    gain: np.ndarray | None
    bias: np.ndarray | None
    record: dict[str, Any]

    def feed(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C_stack, H, W)`` normalised tiles -> ``(B, C_fed, H, W)``, the fed bands as the weights expect."""
        if self.positions is not None:
            images = images[:, list(self.positions)]
        if self.gain is not None and self.bias is not None:
            gain, bias = self.gain[None, :, None, None], self.bias[None, :, None, None]
            images = images * torch.from_numpy(gain).to(images) + torch.from_numpy(bias).to(images)
        return images


def model_input(model: Backbone, modality: Modality | str, missing_bands: Sequence[str] = (),
                scaling: tuple[np.ndarray, np.ndarray] | None = None) -> ModelInput:
    """What ``model`` is fed from a stack of ``modality``'s bands of which ``missing_bands`` are absent;
    ``scaling`` is the ``(scale, offset)`` of each of the modality's bands, in its order, where the file gives
    its own (:meth:`~ofa_embed.raster.scene.Scene.band_scaling`), recorded instead of the registry's.

    Wavelength-conditioned models are fed the present bands only (a missing band is left out, not
    filled) at the wavelengths their weights were trained with; the per-modality model takes every band,
    missing ones filled with the band mean. Where the weights document their own normalisation
    (``band_stats`` of a DOFA config), the registry's is mapped onto it.
    """
    modality = get_modality(modality) if isinstance(modality, str) else modality
    conditioned = model.wavelength_conditioned
    registered = modality.name != CUSTOM
    if not registered and not conditioned:
        raise ModalityError(f"a sensor given by wavelengths needs a wavelength-conditioned model; "
                            f"{model.config.name} has one patch embedding per registered modality")
    names = [b.name for b in modality.bands if not (conditioned and b.name in missing_bands)]
    positions = tuple(modality.band_names.index(n) for n in names)
    if not conditioned:
        wavelengths = None
    elif registered:
        wavelengths = tuple(model.band_wavelengths(modality.name, names))
    else:
        wavelengths = tuple(b.wavelength_um for b in modality.bands if b.name in names)
    registry = {b.name: (b.mean, b.std) for b in modality.bands}
    own = getattr(model.config, "band_stats", {}).get(modality.name, {}) if registered else {}
    stats = [tuple(own.get(n, registry[n])) for n in names]
    gain = bias = None
    if own:
        # x_registry = (v - m_r) / s_r  ->  x_own = (v - m_o) / s_o = x_registry * s_r / s_o + (m_r - m_o) / s_o
        gain = np.array([registry[n][1] / st[1] for n, st in zip(names, stats, strict=True)], np.float32)
        bias = np.array([(registry[n][0] - st[0]) / st[1] for n, st in zip(names, stats, strict=True)], np.float32)
    record = {
        "bands": names, "wavelengths_um": list(wavelengths) if wavelengths else None,
        "scale": [float(scaling[0][i]) for i in positions] if scaling else [modality.scale] * len(names),
        "offset": [float(scaling[1][i]) for i in positions] if scaling else [modality.offset] * len(names),
        "mean": [float(st[0]) for st in stats], "std": [float(st[1]) for st in stats],
    }
    return ModelInput(modality.name, None if len(positions) == modality.num_bands else positions, tuple(names),
                      wavelengths, gain, bias, record)


def embed(
    model: Backbone, images: np.ndarray | torch.Tensor, modality: str | ModelInput, device: torch.device, *,
    tokens: bool = False, precision: str = "auto",
) -> np.ndarray:
    """Embeddings of a batch of normalised tiles.

    Args:
        model: the backbone, already on ``device``.
        images: ``(B, C, H, W)`` float32, C = the bands of ``modality``, any strides (a reader's view of its
            window: the patch embedding gathers its patches from it in place).
        modality: registered modality name (all bands present), or the :class:`ModelInput` of
            :func:`model_input`.
        device: where the forward pass runs.
        tokens: return final-normed patch tokens ``(B, N, D)`` instead of pooled ``(B, E)`` embeddings
            (E = ``model.embedding_dim``: D, or 2 D under ``token_mean_std``).
        precision: ``auto``, ``fp32`` or ``bf16`` (see :func:`resolve_precision`).

    Returns:
        float32 ``(B, E)`` (or ``(B, N, D)``); ``(0, E)`` (``(0, D)``) for an empty batch.
    """
    if not len(images):  # a window whose tiles were all skipped
        return np.empty((0, model.embed_dim if tokens else model.embedding_dim), np.float32)
    fed = model_input(model, modality) if isinstance(modality, str) else modality
    x = fed.feed((torch.from_numpy(images) if isinstance(images, np.ndarray) else images).to(device, non_blocking=True))
    bf16 = resolve_precision(precision, device) == "bf16"
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
        forward = model.forward_features if tokens else model
        if fed.modality == CUSTOM:
            assert fed.wavelengths_um is not None
            out = forward(x, None, wavelengths_um=torch.tensor(fed.wavelengths_um, dtype=torch.float32))
        else:
            out = forward(x, fed.modality, bands=list(fed.bands) if model.wavelength_conditioned else None)
    return out.float().cpu().numpy()


class DenseOutput(NamedTuple):
    """A dense forward pass of a batch: the tiles' embeddings ``(B, E)`` and the patch tokens ``(B, N, D)`` they
    pool (N = (T / P)², row-major).
    """

    pooled: np.ndarray
    tokens: np.ndarray


def embed_dense(model: Backbone, images: np.ndarray | torch.Tensor, modality: str | ModelInput, device: torch.device,
                *, precision: str = "auto") -> DenseOutput:
    """:func:`embed` with ``tokens=True``, and each tile's embedding pooled from those float32 tokens by the
    backbone's own ``pool`` in the same call (the numbers of :func:`embed` in float32; under bfloat16 the pooling
    runs on the float32 tokens). Run in a model worker, so that the consumer of a dense run does no torch work.
    """
    tokens = embed(model, images, modality, device, tokens=True, precision=precision)
    if not len(images):
        return DenseOutput(np.empty((0, model.embedding_dim), np.float32), np.empty((0, 0, model.embed_dim), np.float32))
    with torch.inference_mode():
        pooled = model.pool(torch.from_numpy(tokens)).numpy()
    return DenseOutput(pooled, tokens)


def model_workers(device: torch.device) -> tuple[int, int]:
    """``(workers, torch threads per worker)`` for forward passes on ``device``.

    CPU: ``torch.get_num_threads()`` split into at most :data:`MAX_CPU_WORKERS` concurrent batches
    (2 threads -> 2 workers of 1 thread); other devices: one worker, threads untouched (0).
    """
    if device.type != "cpu":
        return 1, 0
    threads = torch.get_num_threads()
    workers = max(1, min(threads, MAX_CPU_WORKERS))
    return workers, max(1, threads // workers)


def batches_held(workers: int) -> int:
    """How many batches :func:`embed_batches` holds at once with ``workers`` workers (readers size their rings
    of reused arrays by it): one queued beyond those running, so that a worker that finishes takes the next
    batch at once instead of waiting for the consumer, which may be writing a scene's file.
    """
    return workers + 1 if workers > 1 else 1


AnyBatch = TypeVar("AnyBatch", bound=TileBatch)
Output = TypeVar("Output")


def embed_batches(
    batches: Iterator[AnyBatch], model: Backbone, modality: str | ModelInput, device: torch.device, workers: int = 1,
    threads: int = 0, precision: str = "auto",
) -> Generator[tuple[AnyBatch, np.ndarray], None, None]:
    """``(batch, embeddings (B, E))`` for every batch, in order, ``workers`` batches running at once and
    :func:`batches_held` in flight.

    Each worker thread runs with ``threads`` torch threads (0: unchanged); torch's thread count is
    per calling thread, so the caller's own setting is left as it was.
    """
    def forward(images: np.ndarray) -> np.ndarray:
        return embed(model, images, modality, device, precision=precision)

    return _run_batches(batches, forward, workers, threads)


def dense_batches(
    batches: Iterator[AnyBatch], model: Backbone, modality: str | ModelInput, device: torch.device, workers: int = 1,
    threads: int = 0, precision: str = "auto",
) -> Generator[tuple[AnyBatch, DenseOutput], None, None]:
    """:func:`embed_batches` of :func:`embed_dense`: ``(batch, DenseOutput)`` for every batch, in order."""
    def forward(images: np.ndarray) -> DenseOutput:
        return embed_dense(model, images, modality, device, precision=precision)

    return _run_batches(batches, forward, workers, threads)


def _run_batches(batches: Iterator[AnyBatch], forward: Callable[[np.ndarray], Output], workers: int,
                 threads: int) -> Generator[tuple[AnyBatch, Output], None, None]:
    """``(batch, forward(batch.data))`` for every batch, in order, on ``workers`` threads of ``threads`` torch
    threads each (one worker: in the caller's thread).
    """
    if workers == 1:
        for batch in batches:
            yield batch, forward(batch.data)
        return
    # the pool's worker threads, each noted as it starts: waited for at the end, so that no forward pass
    # outlives the generator (a thread not yet noted has taken no batch, and takes none once the pool is shut)
    started: list[threading.Thread] = []

    def start_worker() -> None:
        started.append(threading.current_thread())
        if threads:
            torch.set_num_threads(threads)

    pool = ThreadPoolExecutor(workers, thread_name_prefix="ofa-embed-model", initializer=start_worker)
    pending: deque[tuple[AnyBatch, Future[Output]]] = deque()
    try:
        for batch in batches:
            pending.append((batch, pool.submit(forward, batch.data)))
            if len(pending) == batches_held(workers):
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        wait_through_interrupts(lambda: pool.shutdown(wait=True), lambda: not any(t.is_alive() for t in started))
