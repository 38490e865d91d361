"""Fixtures shared by every test module (helpers they use live in :mod:`tests.helpers`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ofa_embed.embedding.forward import CPU_BF16_ENV
from ofa_embed.sensors import get_modality
from tests.helpers import s2_values, write_raster


@pytest.fixture(autouse=True, scope="session")
def emulated_bf16_policy():
    """``precision="auto"`` means float32 in every test, whatever the CPU: tests that compare numbers get the
    same numbers on CPUs with native bf16 (where ``auto`` is bf16 for users) and without. Set in the
    environment, so that subprocesses and Dask workers follow it. The bf16 path has tests of its own that
    force ``precision="bf16"``, and the policy itself is tested by setting the variable.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CPU_BF16_ENV, "0")
        yield


@pytest.fixture(autouse=True, scope="session")
def weights_cache(tmp_path_factory):
    """Converted weights go to a temporary cache, never the user's ``~/.cache/ofa-embed``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OFA_EMBED_CACHE", str(tmp_path_factory.mktemp("weights-cache")))
        yield


@pytest.fixture
def s2_tif(tmp_path: Path) -> Path:
    """A 13-band Sentinel-2 L1C GeoTIFF, 300 x 260 px (odd size: edge tiles), band descriptions set."""
    return write_raster(
        tmp_path / "S2A_MSIL1C_20200518T101031_test.tif", s2_values(260, 300),
        descriptions=get_modality("sentinel2_l1c").band_names,
    )


@pytest.fixture
def s2_band_folder(tmp_path: Path) -> Path:
    """Band-per-file Sentinel-2 folder: 10 m bands 256 x 256 px, 20 m bands 128 x 128, 60 m bands 43 x 43."""
    folder = tmp_path / "T33TWM_20200518T101031"
    folder.mkdir()
    full = s2_values(258, 258)
    for i, band in enumerate(get_modality("sentinel2_l1c").bands):
        step = int(band.gsd_m // 10)
        values = full[i : i + 1, : 256 : step, : 256 : step] if step > 1 else full[i : i + 1, :256, :256]
        write_raster(folder / f"T33TWM_20200518T101031_{band.name}.tif", np.ascontiguousarray(values), res=band.gsd_m)
    write_raster(folder / "T33TWM_20200518T101031_TCI.tif", np.zeros((3, 256, 256), np.uint8))
    return folder


@pytest.fixture(scope="session")
def dask_client():
    """A LocalCluster of 2 single-thread worker processes, as `extract --dask local` starts on 2 cores."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield client
