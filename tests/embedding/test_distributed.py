"""Extraction on a Dask LocalCluster (2 single-thread workers): the same tiles and embeddings as a local run,
scenes split into tasks, a killed worker losing nothing."""

import contextlib
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

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


def test_small_scenes_share_a_task_and_its_pipeline(tmp_path, dask_client):
    import shutil

    scenes = []
    for name in ("a", "b", "c", "d", "e"):
        scenes.append(tmp_path / f"{name}.tif")
        shutil.copy(sample_scene(), scenes[-1])
    local = ofa_embed.extract(scenes, tmp_path / "local", model=MODEL, tile_size=64)
    seen = []
    remote = ofa_embed.extract(scenes, tmp_path / "remote", model=MODEL, tile_size=64, client=dask_client,
                               on_progress=lambda *event: seen.append(event))
    assert [s.scene for s in remote.scenes] == [s.scene for s in local.scenes]
    for mine, theirs in zip(local.scenes, remote.scenes, strict=True):
        assert_same_store_file(mine.path, theirs.path)
    assert {name for name, *_ in seen} == {s.scene for s in local.scenes}


def test_scene_packing():
    from ofa_embed.embedding.distributed import SceneJob, pack_scenes

    def jobs(*tiles):
        return [SceneJob(Path(f"{i}.tif"), str(i), {}, None, None, t, None, {}) for i, t in enumerate(tiles)]

    def sizes(groups):
        return [[job.tiles for job in group] for group in groups]

    assert sizes(pack_scenes(jobs(256, 256, 256, 256), 1024, 2)) == [[256, 256], [256, 256]]
    assert sizes(pack_scenes(jobs(256, 256, 256, 256), 1024, 8)) == [[256], [256], [256], [256]]
    # at most 300 tiles a task, 4 tasks of about equal tiles
    assert sizes(pack_scenes(jobs(*[100] * 10), 300, 1)) == [[100] * 3, [100] * 2, [100] * 3, [100] * 2]
    assert sizes(pack_scenes(jobs(900, 50, 50, 900), 1024, 2)) == [[900, 50], [50, 900]]
    assert pack_scenes([], 1024, 2) == []


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_workers_get_their_allocator_back():
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_ (1.7x slower extraction); a worker's first task resets glibc."""
    script = "from ofa_embed.embedding.distributed import restore_malloc_thresholds as r; print(r())"
    for environ, expected in (({"MALLOC_TRIM_THRESHOLD_": "65536"}, "True"), ({}, "False")):
        env = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"} | environ
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        assert done.stdout.strip() == expected


def test_a_local_cluster_has_a_worker_per_core_or_one_per_gpu(monkeypatch):
    import distributed

    from ofa_embed.cluster import dask_client

    started = []

    class FakeCluster:
        def __init__(self, **kwargs):
            started.append(kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(distributed, "LocalCluster", FakeCluster)
    monkeypatch.setattr(distributed, "Client", contextlib.nullcontext)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    for gpus in (0, 2):
        with dask_client("local", gpus):
            pass
    assert [(s["n_workers"], s["threads_per_worker"]) for s in started] == [(16, 1), (2, 8)]


def test_workers_of_a_several_gpu_host_take_a_gpu_each(monkeypatch):
    import distributed
    import torch

    from ofa_embed.embedding.distributed import worker_device

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(distributed, "get_worker", lambda: type("Worker", (), {"name": 5})())
    assert worker_device("cuda") == "cuda:1"
    assert worker_device("cuda:3") == "cuda:3" and worker_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert worker_device("cuda") == "cuda"
