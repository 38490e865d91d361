"""Sharded indexes: N shard indexes built separately (on Dask or here), searched together, merged exactly."""

import json

import numpy as np
import pytest

from ofa_embed import indexes
from ofa_embed.indexes.filters import SearchFilter
from ofa_embed.indexes.manifest import index_dir, read_manifest, shard_of
from ofa_embed.indexes.store_index import merge_top_k
from tests.helpers import write_vector_store
from tests.indexes.test_store_index import SCENES, queries_near

MORE = [(f"s{i:02d}", 150, 40.0 + 2 * i, f"202{i % 4}-05-01T10:00:00+00:00", "sentinel2_l2a") for i in range(9)]


def search_all(store, queries, k, search_filter=None):
    opened = indexes.open(store)
    return opened.search_vectors(queries, k, search_filter)


def test_sharded_search_equals_one_flat_index(tmp_path):
    store = tmp_path / "store"
    vectors = write_vector_store(store, SCENES + MORE)
    queries = queries_near(vectors, 25)
    indexes.build(store, "flat")
    flat = {f: search_all(store, queries, 50, f) for f in (None, SearchFilter(bbox=(15.0, -1.0, 45.0, 1.0)),
                                                          SearchFilter(modality="sentinel2_l2a"), SearchFilter(scene="b_2021"))}
    report = indexes.build(store, "flat", shards=4)
    assert report.rows == len(vectors) and "4 shards" in report.reason
    manifest = read_manifest(store)
    assert manifest.shards == 4 and len({e.shard for e in manifest.files}) > 1
    assert sorted(p.name for p in index_dir(store).glob("*.faiss")) == sorted(manifest.shard_files)
    for search_filter, (similarities, positions) in flat.items():
        sharded_similarities, sharded_positions = search_all(store, queries, 50, search_filter)
        np.testing.assert_array_equal(sharded_positions, positions)
        np.testing.assert_allclose(sharded_similarities, similarities, rtol=1e-6)
    hits = indexes.open(store).search(queries[0], k=5)
    assert list(hits["rank"]) == [1, 2, 3, 4, 5]


def test_update_adds_new_files_to_their_shard(tmp_path):
    store = tmp_path / "store"
    write_vector_store(store, SCENES + MORE[:4])
    indexes.build(store, "flat", shards=3)
    before = read_manifest(store).shard_files
    vectors = write_vector_store(store, SCENES + MORE)  # the same files again plus five more
    update = indexes.update(store)
    manifest = read_manifest(store)
    assert update.added == 5 * 150 and manifest.rows == len(vectors)
    grown = {e.shard for e in manifest.files if e.name in {f"{n}.parquet" for n, *_ in MORE[4:]}}
    assert all(e.shard == shard_of(e.name, 3) for e in manifest.files)
    assert [name != old for name, old in zip(manifest.shard_files, before, strict=True)] == [i in grown for i in range(3)]
    queries = queries_near(vectors, 10)
    sharded = search_all(store, queries, 20)
    indexes.build(store, "flat")
    np.testing.assert_array_equal(search_all(store, queries, 20)[1], sharded[1])


def test_merge_top_k_orders_by_similarity_then_position():
    sims = [np.array([[0.9, 0.5, -np.inf]]), np.array([[0.9, 0.7, 0.1]])]
    ids = [np.array([[7, 3, -1]]), np.array([[2, 5, 9]])]
    merged_sims, merged_ids = merge_top_k(sims, ids, 4)
    assert merged_ids.tolist() == [[2, 7, 5, 3]] and merged_sims[0, 0] == np.float32(0.9)
    _, padded = merge_top_k([np.array([[0.3]])], [np.array([[4]])], 3)
    assert padded.tolist() == [[4, -1, -1]]


@pytest.mark.slow
def test_shards_build_on_a_local_dask_cluster(tmp_path, dask_client):
    store = tmp_path / "store"
    vectors = write_vector_store(store, SCENES + MORE)
    queries = queries_near(vectors, 10)
    indexes.build(store, "flat")
    expected = search_all(store, queries, 30)
    indexes.build(store, "hnsw", shards=3, client=dask_client)
    manifest = json.loads((index_dir(store) / "manifest.json").read_text())
    assert manifest["config"]["kind"] == "hnsw" and len(manifest["shard_files"]) == 3
    found = search_all(store, queries, 30)
    recall = np.mean([len(set(a) & set(b)) / 30 for a, b in zip(found[1], expected[1], strict=True)])
    assert recall > 0.95


def test_an_infinite_bbox_allows_every_row_of_its_latitudes(tmp_path):
    store = tmp_path / "store"
    vectors = write_vector_store(store, SCENES + MORE)
    indexes.build(store, "flat", shards=2)
    opened = indexes.open(store)
    everything = opened.allowed(SearchFilter(bbox=(-np.inf, -1.0, np.inf, 1.0)))
    assert len(everything) == len(vectors)
    assert len(opened.allowed(SearchFilter(bbox=(-np.inf, 5.0, np.inf, 6.0)))) == 0
    # rewriting a manifest (an update) writes the current manifest version
    write_vector_store(store, SCENES + MORE + [("z_new", 10, 90.0, None, "sentinel2_l2a")])
    indexes.update(store)
    assert json.loads((index_dir(store) / "manifest.json").read_text())["manifest_version"] == 2
