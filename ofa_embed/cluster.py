"""Connecting to a Dask cluster: one client policy for every command that can run on one (extract, index)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ofa_embed.errors import ConfigError, first_line

__all__ = ["dask_client"]


@contextmanager
def dask_client(client: Any, gpus: int = 0) -> Iterator[Any]:
    """A ``distributed.Client`` for ``client``: itself; for ``"local"`` a LocalCluster (closed afterwards) of one
    single-thread worker process per core, or, for a run on ``gpus`` GPUs, one worker process per GPU with the
    cores shared among its threads (a worker per core would hold a copy of the model in GPU memory each, all
    on the first GPU); for an address (``tcp://host:8786``) a connection to that scheduler (closed afterwards).

    Raises:
        ConfigError: the scheduler cannot be reached.
    """
    if not isinstance(client, str):
        yield client
        return
    from distributed import Client, LocalCluster

    if client == "local":
        cores = os.cpu_count() or 1
        workers, threads = (gpus, max(1, cores // gpus)) if gpus > 0 else (cores, 1)
        with LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as local:
            yield local
        return
    try:
        connected = Client(client, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"--dask {client}: cannot reach the scheduler ({first_line(exc)}); start one with "
                          "`dask scheduler` and workers with `dask worker ADDRESS`") from None
    with connected:
        yield connected
