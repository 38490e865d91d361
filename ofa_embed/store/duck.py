"""DuckDB connections with the spatial extension loaded offline from its registry wheel.

``INSTALL spatial`` downloads from the extension repository at run time, which fails offline; the
``duckdb-extension-spatial`` wheel (pinned to duckdb's version) ships the binary, loaded here by path.
Auto-install and auto-load are switched off so that no query ever reaches the network except through a
remote store's own fsspec filesystem, registered with DuckDB (so ``httpfs`` is never needed).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from ofa_embed.errors import OFAEmbedError
from ofa_embed.location import AnyPath, RemotePath

__all__ = ["connect", "spatial_extension_path"]


def spatial_extension_path() -> Path:
    """Path of the spatial extension binary matching the installed duckdb.

    Raises:
        OFAEmbedError: the wheel is missing or built for another duckdb version.
    """
    try:
        import duckdb_extension_spatial
    except ImportError:
        raise OFAEmbedError("duckdb spatial extension wheel missing: pip install duckdb-extension-spatial") from None
    path = Path(duckdb_extension_spatial.__file__).parent / "extensions" / f"v{duckdb.__version__}" / "spatial.duckdb_extension"
    if not path.is_file():
        raise OFAEmbedError(
            f"{path}: no spatial extension for duckdb {duckdb.__version__}; install "
            f"duckdb-extension-spatial=={duckdb.__version__}"
        )
    return path


def connect(database: str = ":memory:", *, store: AnyPath | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with spatial loaded and extension auto-install/auto-load disabled; the fsspec
    filesystem of ``store`` registered when it is remote, so its files are read by their URLs.
    """
    con = duckdb.connect(
        database, config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )
    con.execute(f"LOAD '{spatial_extension_path()}'")
    if isinstance(store, RemotePath):
        con.register_filesystem(store.fs)
        # DuckDB (1.5.5) binds a query holding the GIL while its worker threads call this Python filesystem,
        # which needs the GIL: the main thread spins for ever (3 of 8 runs of test_cli_takes_store_urls
        # hung). On one thread the filesystem is called by the thread that holds the GIL.
        con.execute("SET threads = 1")
    return con
