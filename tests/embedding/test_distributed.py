"""Extraction on a Dask LocalCluster (2 single-thread workers): the same tiles and embeddings as a local run,
scenes split into tasks, a killed worker losing nothing."""

import os
import signal

import geopandas as gpd
import numpy as np
import pytest

import ofa_embed
from ofa_embed.sample import sample_scene

pytestmark = pytest.mark.slow
MODEL = "ofa_test"


def embeddings_by_id(path):
    frame = gpd.read_parquet(path)
    return list(frame["id"]), dict(zip(frame["id"], np.stack(frame["embedding"]), strict=True))


def assert_same_store_file(local, remote):
    local_ids, local_vectors = embeddings_by_id(local)
    remote_ids, remote_vectors = embeddings_by_id(remote)
    assert remote_ids == local_ids  # same tiles, same order (the same writer sorts them)
    for tile, vector in local_vectors.items():
        other = remote_vectors[tile]
        assert vector @ other / np.linalg.norm(vector) / np.linalg.norm(other) >= 0.9999


def test_cluster_run_equals_local_run(tmp_path, s2_tif, dask_client):
    scenes = [sample_scene(), s2_tif]
    local = ofa_embed.extract(scenes, tmp_path / "local", model=MODEL, tile_size=64)
    seen = []
    remote = ofa_embed.extract(scenes, tmp_path / "remote", model=MODEL, tile_size=64, client=dask_client,
                               tiles_per_task=7, on_progress=lambda *event: seen.append(event))
    assert [(s.scene, s.tiles, s.skipped_tiles) for s in remote.scenes] == [
        (s.scene, s.tiles, s.skipped_tiles) for s in local.scenes]
    for mine, theirs in zip(local.scenes, remote.scenes, strict=True):
        assert_same_store_file(mine.path, theirs.path)
    totals = {name: total for name, _, total in seen}
    assert {name: max(done for n, done, _ in seen if n == name) for name in totals} == totals
    assert not (tmp_path / "remote" / ".parts").exists()
    whole = ofa_embed.extract(scenes, tmp_path / "whole", model=MODEL, tile_size=64, client=dask_client)  # a task a scene
    for mine, theirs in zip(local.scenes, whole.scenes, strict=True):
        assert_same_store_file(mine.path, theirs.path)
    again = ofa_embed.extract(scenes, tmp_path / "remote", model=MODEL, tile_size=64, client=dask_client)
    assert all(s.skipped_existing for s in again.scenes)


def test_a_killed_worker_loses_nothing(tmp_path, dask_client):
    local = ofa_embed.extract(sample_scene(), tmp_path / "local", model=MODEL, tile_size=32)
    killed = []

    def kill_a_busy_worker(name, done, total):
        if killed:
            return
        busy = [address for address, keys in dask_client.processing().items() if keys]
        pids = dask_client.run(os.getpid)
        target = busy[0] if busy else next(iter(pids))
        os.kill(pids[target], signal.SIGKILL)  # the nanny starts a new worker; its tasks run again
        killed.append(target)

    remote = ofa_embed.extract(sample_scene(), tmp_path / "remote", model=MODEL, tile_size=32, client=dask_client,
                               tiles_per_task=4, on_progress=kill_a_busy_worker)
    assert killed and remote.scenes[0].tiles == local.scenes[0].tiles
    assert_same_store_file(local.scenes[0].path, remote.scenes[0].path)
    dask_client.wait_for_workers(2, timeout=60)


def test_overwrite_on_a_cluster_into_a_relative_store_keeps_the_file(tmp_path, dask_client, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = ofa_embed.extract(sample_scene(), "store", model=MODEL, tile_size=64, client=dask_client)
    again = ofa_embed.extract(sample_scene(), "store", model=MODEL, tile_size=64, client=dask_client, overwrite=True)
    assert again.scenes[0].tiles == first.scenes[0].tiles and (tmp_path / "store" / "s2_l1c_sample.parquet").is_file()
