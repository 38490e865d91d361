from datetime import UTC, datetime

import numpy as np
import pytest

from ofa_embed import indexes
from ofa_embed.errors import IndexStateError, QueryError, StoreError
from ofa_embed.indexes.config import make_config
from ofa_embed.indexes.filters import SearchFilter
from ofa_embed.indexes.vectors import l2_normalise
from tests.helpers import write_vector_store

SCENES = [
    ("a_2020", 600, 10.0, "2020-06-01T10:00:00+00:00", "sentinel2_l1c"),
    ("b_2021", 600, 20.0, "2021-06-01T10:00:00+00:00", "sentinel2_l1c"),
    ("c_landsat", 600, 30.0, None, "landsat_oli"),
]


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "store"
    write_vector_store(path, SCENES)
    return path


def exact(vectors, queries, k, allowed=None):
    """Brute-force cosine top-k positions (restricted to ``allowed`` when given)."""
    base = l2_normalise(vectors)
    scores = l2_normalise(queries) @ base.T
    if allowed is not None:
        mask = np.full(len(base), -np.inf)
        mask[allowed] = 0
        scores = scores + mask
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def queries_near(vectors, n, seed=1):
    rng = np.random.default_rng(seed)
    return vectors[rng.integers(0, len(vectors), n)] + 0.2 * rng.normal(size=(n, vectors.shape[1]))


def test_auto_picks_by_store_size_and_says_why():
    assert make_config("auto", 5_000, 192)[0].kind == "flat"
    config, reason = make_config("auto", 500_000, 192)
    assert config.kind == "hnsw" and "500,000" in reason
    config, _ = make_config("auto", 5_000_000, 192)
    assert config.kind == "ivfpq" and 192 % config.m == 0
    with pytest.raises(ValueError, match="no parameter 'nprobe'"):
        make_config("hnsw", 10, 192, nprobe=4)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_self_retrieval_for_every_kind(tmp_path, kind):
    vectors = write_vector_store(tmp_path / "s", SCENES)
    indexes.build(tmp_path / "s", kind, **({"nlist": 16, "m": 8, "nprobe": 16, "refine_factor": 16} if kind == "ivfpq" else {}))
    index = indexes.open(tmp_path / "s")
    similarities, positions = index.search_vectors(vectors[:50], k=1)
    assert (positions[:, 0] == np.arange(50)).mean() >= 0.98
    assert similarities[:, 0].min() >= 0.99 if kind != "ivfpq" else np.median(similarities[:, 0]) >= 0.99


def test_filtered_flat_search_equals_exact_search_on_allowed_rows(store):
    vectors = write_vector_store(store, SCENES)
    indexes.build(store, "flat")
    index = indexes.open(store)
    flt = SearchFilter(bbox=(20.5, -1.0, 32.0, 1.0), start=datetime(2021, 1, 1, tzinfo=UTC))
    allowed = index.allowed(flt)
    # b_2021 spans lon 20.00-26.00: tiles from 20.5 on intersect; c_landsat has no datetime
    assert 500 <= len(allowed) <= 560
    queries = queries_near(vectors, 20)
    _, positions = index.search_vectors(queries, k=10, search_filter=flt)
    assert np.array_equal(positions, exact(vectors, queries, 10, allowed))
    frame = index.search(queries[0], k=10, search_filter=flt)
    assert (frame.scene == "b_2021").all() and (frame.geometry.bounds.maxx >= 20.5).all()
    assert frame["rank"].tolist() == list(range(1, 11)) and frame.similarity.is_monotonic_decreasing


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_filtered_approximate_indexes_rank_small_allowed_sets_exactly(store, kind):
    vectors = write_vector_store(store, SCENES)
    indexes.build(store, kind, **({"nlist": 16, "m": 8} if kind == "ivfpq" else {}))
    index = indexes.open(store)
    flt = SearchFilter(modality="landsat_oli")
    allowed = index.allowed(flt)
    queries = queries_near(vectors, 20)
    _, positions = index.search_vectors(queries, k=10, search_filter=flt)
    assert set(positions[positions >= 0].tolist()) <= set(allowed.tolist())
    # a selective filter is ranked exactly, whatever the index kind
    assert np.array_equal(positions, exact(vectors, queries, 10, allowed))
    frame = index.search(vectors[1500], k=5, search_filter=SearchFilter(scene="c_landsat"))
    assert set(frame.modality) == {"landsat_oli"}


def test_filter_matching_nothing_returns_no_rows_and_an_unknown_scene_is_an_error(store):
    indexes.build(store)
    index = indexes.open(store)
    later = SearchFilter(start=datetime(2100, 1, 1, tzinfo=UTC))
    assert len(index.search(np.ones(32), k=5, search_filter=later)) == 0
    with pytest.raises(QueryError, match="scene 'nope': no tile of the store is of that scene"):
        index.search(np.ones(32), k=5, search_filter=SearchFilter(scene="nope"))


def test_ivfpq_recall_at_10_against_exact(tmp_path):
    scenes = [(f"s{i}", 4000, 10.0 * i, None, "sentinel2_l1c") for i in range(5)]
    vectors = write_vector_store(tmp_path / "big", scenes, seed=3)
    report = indexes.build(tmp_path / "big", "ivfpq", nlist=64, m=16, nprobe=16)
    assert report.rows == 20_000 and report.config.refine
    queries = queries_near(vectors, 100, seed=4)
    _, positions = indexes.open(tmp_path / "big").search_vectors(queries, k=10)
    truth = exact(vectors, queries, 10)
    recall = np.mean([len(set(p) & set(t)) / 10 for p, t in zip(positions, truth, strict=True)])
    assert recall >= 0.9


def test_new_scene_makes_the_index_stale_until_update(store):
    write_vector_store(store, SCENES)
    indexes.build(store, "hnsw")
    before = indexes.open(store)
    assert indexes.open(store) is before  # unchanged store and index: the loaded index is reused
    write_vector_store(store, [("d_new", 100, 40.0, None, "sentinel2_l1c")], seed=9)
    with pytest.raises(IndexStateError, match="1 scene file.*not indexed.*--update"):
        indexes.open(store)
    report = indexes.update(store)
    assert report.added == 100 and report.rows == 1900
    after = indexes.open(store)
    assert after is not before and after.index.ntotal == 1900
    frame = after.search(np.ones(32), k=3, search_filter=SearchFilter(scene="d_new"))
    assert set(frame.scene) == {"d_new"}


def test_changed_or_removed_file_refuses_the_index(store):
    write_vector_store(store, SCENES)
    indexes.build(store)
    write_vector_store(store, [SCENES[0]], seed=5)  # the same scene re-extracted
    with pytest.raises(IndexStateError, match="a_2020.parquet changed since indexing"):
        indexes.open(store)
    with pytest.raises(IndexStateError, match="changed"):
        indexes.update(store)
    indexes.build(store)
    (store / "b_2021.parquet").unlink()
    with pytest.raises(IndexStateError, match="b_2021.parquet was removed"):
        indexes.open(store)


def test_other_model_is_refused(store):
    write_vector_store(store, SCENES)
    indexes.build(store)
    for name, *_ in SCENES:
        (store / f"{name}.parquet").unlink()
    write_vector_store(store, SCENES, weights_hash="0123456789abcdef")
    with pytest.raises(IndexStateError, match="built for model weights feedfacefeedface.*0123456789abcdef"):
        indexes.open(store)


def test_mixed_models_and_missing_stores_are_refused(tmp_path):
    write_vector_store(tmp_path / "mix", SCENES[:1])
    write_vector_store(tmp_path / "mix", SCENES[1:2], weights_hash="0123456789abcdef")
    with pytest.raises(StoreError, match="mixes embeddings of different models"):
        indexes.build(tmp_path / "mix")
    with pytest.raises(StoreError, match="no such store"):
        indexes.build(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="store is empty"):
        indexes.open(tmp_path / "empty")
    write_vector_store(tmp_path / "unindexed", SCENES[:1])
    with pytest.raises(IndexStateError, match="no index"):
        indexes.open(tmp_path / "unindexed")


def test_large_allowed_sets_go_through_the_faiss_selector(store, monkeypatch):
    from ofa_embed.indexes import store_index

    vectors = write_vector_store(store, SCENES)
    indexes.build(store, "hnsw")
    monkeypatch.setattr(store_index, "EXACT_SUBSET_MAX_ROWS", 0)
    index = indexes.open(store)
    flt = SearchFilter(modality="sentinel2_l1c")
    _, positions = index.search_vectors(queries_near(vectors, 10), k=10, search_filter=flt)
    assert (positions >= 0).all() and set(positions.ravel().tolist()) <= set(index.allowed(flt).tolist())


def test_single_queries_run_on_one_thread_and_restore_the_setting(monkeypatch):
    import faiss

    from ofa_embed.indexes import faiss_index
    from ofa_embed.indexes.config import FlatConfig

    index = faiss_index.create(FlatConfig(), 8)
    index.add(np.eye(8, dtype=np.float32))
    seen = []
    real_search = index.search
    monkeypatch.setattr(index, "search", lambda *a, **kw: (seen.append(faiss.omp_get_max_threads()), real_search(*a, **kw))[1])
    faiss.omp_set_num_threads(2)
    faiss_index.search(index, FlatConfig(), np.eye(8, dtype=np.float32)[:1], 3)
    faiss_index.search(index, FlatConfig(), np.tile(np.eye(8, dtype=np.float32), (2, 1)), 3)
    assert seen == [1, 2] and faiss.omp_get_max_threads() == 2


def test_missing_results_are_padded_with_minus_one_and_minus_infinity():
    from ofa_embed.indexes import faiss_index
    from ofa_embed.indexes.config import FlatConfig

    index = faiss_index.create(FlatConfig(), 4)
    index.add(np.eye(4, dtype=np.float32)[:3])
    similarities, positions = faiss_index.search(index, FlatConfig(), np.eye(4, dtype=np.float32)[:1], 5)
    assert positions[0].tolist()[3:] == [-1, -1] and np.isneginf(similarities[0, 3:]).all()
    assert similarities[0, 0] == pytest.approx(1.0)


@pytest.mark.parametrize("content", ["{not json", '{"manifest_version": 1}', "[]"])
def test_corrupt_manifest_is_a_one_line_index_error(store, content):
    indexes.build(store)
    (store / "_index" / "manifest.json").write_text(content)
    with pytest.raises(IndexStateError, match=r"manifest.json: unreadable index manifest .*rebuild with: ofa-embed index"):
        indexes.open(store)


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_high_k_search_with_and_without_filters(tmp_path, kind):
    store = tmp_path / "store"
    vectors = write_vector_store(store, SCENES + [("d_more", 1200, 40.0, None, "sentinel2_l2a")])
    queries = queries_near(vectors, 3)
    indexes.build(store, kind, **({"nlist": 64, "m": 8} if kind == "ivfpq" else {}))
    opened = indexes.open(store)
    k = 2500
    similarities, positions = opened.search_vectors(queries, k)
    truth = exact(vectors, queries, k)
    recall = np.mean([len(set(p) & set(t)) / k for p, t in zip(positions, truth, strict=True)])
    assert recall > 0.9 and (positions >= 0).all()
    assert (np.diff(similarities, axis=1) <= 1e-6).all()  # best first
    # a filter admitting fewer rows than k: every one of them, exactly, then padding
    allowed = opened.allowed(SearchFilter(modality="sentinel2_l1c"))
    similarities, positions = opened.search_vectors(queries, k, SearchFilter(modality="sentinel2_l1c"))
    assert all(set(p[p >= 0]) == set(allowed) for p in positions) and (positions[:, len(allowed):] == -1).all()
    assert np.isinf(similarities[:, len(allowed):]).all()
    hits = opened.search(queries[0], k=k)
    assert len(hits) == k and hits["id"].is_unique


def test_store_order_positions_map_to_index_ids_after_an_update(tmp_path):
    from ofa_embed.store import describe_store, read_embeddings, read_tiles

    store = tmp_path / "store"
    write_vector_store(store, SCENES)
    indexes.build(store, "flat")
    write_vector_store(store, SCENES + [("0_sorts_first", 50, 50.0, None, "sentinel2_l2a")])
    indexes.update(store)
    opened, files = indexes.open(store), describe_store(store)
    positions = read_tiles(store, files=files)["position"].to_numpy()
    ids = opened.index_positions(positions, files)
    assert not np.array_equal(ids, positions)  # the new file is first by name, last in the index
    stored = l2_normalise(read_embeddings(store, positions, files=files))
    np.testing.assert_allclose(opened.index.reconstruct_batch(ids), stored, atol=1e-6)


def test_a_filters_exact_vectors_are_kept_for_its_next_queries(store):
    vectors = write_vector_store(store, SCENES)
    indexes.build(store, "hnsw")
    opened = indexes.open(store)
    queries = queries_near(vectors, 4)
    first, second = SearchFilter(modality="landsat_oli"), SearchFilter(scene="a_2020")
    once = SearchFilter(bbox=(-180.0, -90.0, 180.0, 90.0), scene="a_2020")
    # a filter searched once is ranked in place; from its second search on, its vectors are kept
    for search_filter in (first, second, first, once, second, first):
        allowed = opened.allowed(search_filter)
        _, positions = opened.search_vectors(queries, 10, search_filter)
        np.testing.assert_array_equal(positions, exact(vectors, queries, 10, allowed))
    assert opened.kept_filters == {first, second}
    fresh = SearchFilter(bbox=(-180.0, -90.0, 180.0, 90.0), modality="landsat_oli")
    _, single = opened.search_vectors(queries[:1], 10, fresh)
    np.testing.assert_array_equal(single, exact(vectors, queries[:1], 10, opened.allowed(fresh)))
