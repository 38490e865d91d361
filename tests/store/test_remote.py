"""Stores at fsspec URLs: extraction (local and on a Dask cluster), reading, the index, search and SQL through
fsspec's in-memory filesystem, which, like an object store, has no folders of its own and takes whole-object
writes; the staged rename of filesystems that have one; writes that fail leave nothing."""

import glob
import os
import tempfile
import uuid

import fsspec
import numpy as np
import pytest
from fsspec.implementations.local import LocalFileSystem
from typer.testing import CliRunner

import ofa_embed
from ofa_embed import indexes
from ofa_embed.atomic import atomic_target
from ofa_embed.cli.main import app
from ofa_embed.errors import StoreError
from ofa_embed.location import RemotePath, as_location
from ofa_embed.sample import sample_scene
from ofa_embed.store import describe_store, read_embeddings, read_tiles, store_files
from ofa_embed.store.claim import CLAIM_FILE

MODEL = "ofa_test"


@pytest.fixture
def memory_store():
    """A fresh ``memory://`` store URL, removed afterwards (the in-memory filesystem is process-wide)."""
    name = f"ofa-test-{uuid.uuid4().hex[:8]}"
    yield f"memory://{name}"
    fs = fsspec.filesystem("memory")
    if fs.exists(f"/{name}"):
        fs.rm(f"/{name}", recursive=True)


def test_locations():
    assert as_location("plain/folder") == as_location("plain/folder")
    assert str(as_location("file:///tmp/x")) == "/tmp/x" and not isinstance(as_location("file:///tmp/x"), RemotePath)
    remote = as_location("memory://bucket/emb")
    assert isinstance(remote, RemotePath) and str(remote / "a.parquet") == "memory:///bucket/emb/a.parquet"
    assert (remote / "a.parquet").stem == "a" and (remote / "a.parquet").parent == remote
    with pytest.raises(StoreError, match="nosuchprotocol://x: cannot open"):
        as_location("nosuchprotocol://x")


def test_a_memory_store_works_as_a_local_one(tmp_path, memory_store):
    local = ofa_embed.extract(sample_scene(), tmp_path / "local", model=MODEL, tile_size=32)
    remote = ofa_embed.extract(sample_scene(), memory_store, model=MODEL, tile_size=32)
    assert str(remote.scenes[0].path) == f"memory:///{memory_store.removeprefix('memory://')}/{sample_scene().stem}.parquet"
    assert [f.name for f in describe_store(memory_store)] == [f.name for f in describe_store(tmp_path / "local")]
    mine, theirs = read_tiles(tmp_path / "local"), read_tiles(memory_store)
    assert list(theirs["id"]) == list(mine["id"]) and remote.tiles == local.tiles
    positions = np.arange(len(mine))
    np.testing.assert_allclose(read_embeddings(memory_store, positions), read_embeddings(tmp_path / "local", positions),
                               atol=1e-5)
    assert all(s.skipped_existing for s in ofa_embed.extract(sample_scene(), memory_store, model=MODEL,
                                                             tile_size=32).scenes)
    # the index lives in the store, as locally; search and SQL read through the store's filesystem
    indexes.build(memory_store)
    indexes.build(tmp_path / "local")
    query = str(mine["id"].iloc[5])
    hits, expected = (ofa_embed.search(s, like_id=[query], k=5) for s in (memory_store, tmp_path / "local"))
    assert list(hits["id"]) == list(expected["id"])
    counted = ofa_embed.sql(memory_store, "SELECT count(*) AS n, count(DISTINCT id) AS ids FROM embeddings")
    assert counted.iloc[0].tolist() == [len(mine), len(mine)]
    fs = fsspec.filesystem("memory")
    assert not [p for p in fs.find(memory_store.removeprefix("memory://")) if os.path.basename(p).startswith(".")]


def test_a_failed_remote_write_leaves_nothing(memory_store):
    target = as_location(memory_store) / "scene.parquet"
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), ".ofa-embed-*")))
    with pytest.raises(RuntimeError), atomic_target(target) as tmp:
        tmp.write_bytes(b"half a file")
        raise RuntimeError("killed mid-write")
    assert not target.exists()
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), ".ofa-embed-*"))) == before  # no local temporary left
    with atomic_target(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and store_files(memory_store) == [target]


def test_filesystems_with_a_rename_stage_then_move(tmp_path, monkeypatch):
    local = tmp_path / "payload"
    local.write_bytes(b"payload")
    fs = LocalFileSystem()
    target = RemotePath(fs, str(tmp_path / "out" / "file.bin"))
    moves = []
    real_mv = fs.mv
    monkeypatch.setattr(fs, "mv", lambda src, dst, **kw: (moves.append((src, dst)), real_mv(src, dst, **kw)))
    target.upload(local)
    assert target.read_bytes() == b"payload"
    assert moves and moves[0][0].endswith(f".file.bin.{os.getpid()}.tmp") and moves[0][1] == target.path
    assert os.listdir(tmp_path / "out") == ["file.bin"]

    def broken_mv(src, dst, **kw):
        raise OSError("connection lost")

    monkeypatch.setattr(fs, "mv", broken_mv)
    other = RemotePath(fs, str(tmp_path / "out" / "other.bin"))
    with pytest.raises(StoreError, match="other.bin: cannot write"), atomic_target(other) as tmp:
        tmp.write_bytes(b"x")
    assert os.listdir(tmp_path / "out") == ["file.bin"]  # neither the target nor its staged copy


@pytest.mark.slow
def test_a_cluster_writes_a_remote_store(tmp_path, memory_store):
    """Workers write parts and store files to the URL (threads of this process share the memory filesystem,
    as processes on a cluster share a bucket)."""
    from distributed import Client, LocalCluster

    local = ofa_embed.extract(sample_scene(), tmp_path / "local", model=MODEL, tile_size=32)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        remote = ofa_embed.extract(sample_scene(), memory_store, model=MODEL, tile_size=32, client=client,
                                   tiles_per_task=5)
    assert isinstance(remote.scenes[0].path, RemotePath) and remote.tiles == local.tiles
    mine, theirs = read_tiles(tmp_path / "local"), read_tiles(memory_store)
    assert list(theirs["id"]) == list(mine["id"])
    a = read_embeddings(memory_store, np.arange(len(mine)))
    b = read_embeddings(tmp_path / "local", np.arange(len(mine)))
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= 0.9999
    fs = fsspec.filesystem("memory")
    written = sorted(os.path.basename(p) for p in fs.find(memory_store.removeprefix("memory://")))
    assert written == sorted([CLAIM_FILE, f"{sample_scene().stem}.parquet"])  # the scene file and the store's record


def test_cli_takes_store_urls(memory_store):
    runner = CliRunner()
    extracted = runner.invoke(app, ["extract", "--sample", "--out", memory_store, "--model", MODEL, "-q"])
    assert extracted.exit_code == 0, extracted.output
    counted = runner.invoke(app, ["sql", memory_store, "SELECT count(*) AS n FROM embeddings", "--format", "csv"])
    assert counted.exit_code == 0 and counted.output.split() == ["n", "16"]
    bad = runner.invoke(app, ["extract", "--sample", "--out", "nosuchprotocol://bucket/emb", "--model", MODEL, "-q"])
    assert bad.exit_code == 1 and "nosuchprotocol://bucket/emb: cannot open this location" in bad.output


def test_duckdb_reads_a_remote_store_on_one_thread(memory_store):
    import duckdb

    from ofa_embed.store.duck import connect

    # several DuckDB threads calling the Python filesystem while a query binds under the GIL deadlock
    remote = connect(store=as_location(memory_store))
    local = connect()
    assert remote.execute("SELECT current_setting('threads')").fetchone()[0] == 1
    default = duckdb.connect().execute("SELECT current_setting('threads')").fetchone()[0]
    assert local.execute("SELECT current_setting('threads')").fetchone()[0] == default
