"""Connecting to a Dask cluster: one client policy for every command that can run on one (extract, index)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ofa_embed.errors import ConfigError, first_line

__all__ = ["dask_client"]


@contextmanager
def dask_client(client: Any) -> Iterator[Any]:
    """A ``distributed.Client`` for ``client``: itself; for ``"local"`` a LocalCluster of one single-thread worker
    process per core (closed afterwards); for an address (``tcp://host:8786``) a connection to that
    scheduler (closed afterwards).

    Raises:
        ConfigError: the scheduler cannot be reached.
    """
    if not isinstance(client, str):
        yield client
        return
    from distributed import Client, LocalCluster

    if client == "local":
        with LocalCluster(n_workers=os.cpu_count() or 1, threads_per_worker=1, processes=True,
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
