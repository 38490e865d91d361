"""Embeddings stored as float16 or int8 (per-vector scale): written, recorded, read back as float32 by every
reader (store, index, SQL), one dtype per store."""

import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import ofa_embed
from ofa_embed import indexes
from ofa_embed.cli.main import app
from ofa_embed.errors import StoreError
from ofa_embed.sample import sample_scene
from ofa_embed.store import describe_store, read_embeddings, read_metadata, read_tiles, store_files
from ofa_embed.store.quantise import decode, encode

MODEL = "ofa_test"


def cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_int8_and_float16_round_trips():
    rng = np.random.default_rng(0)
    vectors = (rng.standard_normal((500, 192)) * rng.uniform(0.1, 20, (500, 1))).astype(np.float32)
    vectors[3] = 0
    stored, scale = encode(vectors, "int8")
    assert stored.dtype == np.int8 and scale.shape == (500,) and np.abs(stored).max() == 127
    back = decode(stored, scale)
    assert np.all(back[3] == 0)
    kept = np.arange(500) != 3
    assert cosines(back[kept], vectors[kept]).min() >= 0.9998
    # every component within half a quantisation step
    assert np.all(np.abs(back - vectors) <= scale[:, None] / 2 + 1e-6)
    half, none = encode(vectors, "float16")
    assert half.dtype == np.float16 and none is None
    np.testing.assert_allclose(decode(half, None), vectors, rtol=1e-3, atol=1e-4)
    with pytest.raises(StoreError, match="int8 embeddings without"):
        decode(stored, None)
    with pytest.raises(StoreError, match="'bfloat8' is not one of float32, float16, int8"):
        encode(vectors, "bfloat8")


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("quantised")
    for dtype in ("float32", "float16", "int8"):
        ofa_embed.extract(sample_scene(), root / dtype, model=MODEL, tile_size=32, embedding_dtype=dtype)
    return root


def test_stored_smaller_and_read_back_as_float32(stores):
    reference = read_embeddings(stores / "float32", np.arange(64))
    for dtype, component in (("float16", "halffloat"), ("int8", "int8")):
        path = store_files(stores / dtype)[0]
        schema = pq.read_schema(path)
        assert str(schema.field("embedding").type.value_type) == component
        meta = read_metadata(path)
        assert meta["store_version"] == 3 and meta["emb"]["quantization"] == dtype
        assert ("embedding_scale" in schema.names) == (dtype == "int8")
        assert ("scale" in meta["emb"]) == (dtype == "int8")
        back = read_embeddings(stores / dtype, np.arange(64))
        assert back.dtype == np.float32 and cosines(back, reference).min() >= (0.99999 if dtype == "float16" else 0.9998)
        assert describe_store(stores / dtype)[0].embedding_dtype == dtype
    assert read_metadata(store_files(stores / "float32")[0])["store_version"] == 2  # older readers still read it


def test_index_search_and_sql_read_int8_stores(stores):
    store = stores / "int8"
    indexes.build(store)
    first = ofa_embed.sql(store, "SELECT id FROM embeddings LIMIT 1").id[0]
    hits = ofa_embed.search(store, like_id=[first], k=64)
    assert len(hits) == 64
    # the index holds the decoded vectors: its similarities are the float32 cosines of the decoded rows
    frame = ofa_embed.sql(store, "SELECT id, embedding FROM embeddings")
    assert "embedding_scale" not in ofa_embed.sql(store, "SELECT * FROM embeddings LIMIT 1").columns
    by_id = dict(zip(frame.id, (np.asarray(e, np.float32) for e in frame.embedding), strict=True))
    query = by_id[first]
    expected = {i: float(v @ query / np.linalg.norm(v) / np.linalg.norm(query)) for i, v in by_id.items()}
    for tile, similarity in zip(hits.id, hits.similarity, strict=True):
        assert similarity == pytest.approx(expected[tile], abs=1e-5)
    # SQL decodes int8 as the store reader does
    ids = read_tiles(store)["id"]
    np.testing.assert_allclose(np.stack([by_id[i] for i in ids]), read_embeddings(store, np.arange(len(ids))), atol=1e-6)
    cosine = ofa_embed.sql(store, f"SELECT array_cosine_similarity(embedding, embedding) AS c FROM embeddings "
                                  f"WHERE id = '{first}'").c[0]
    assert cosine == pytest.approx(1.0, abs=1e-5)


def test_one_dtype_per_store(stores, tmp_path):
    with pytest.raises(StoreError, match=r"holds int8 embeddings, not float16 \(pass --embedding-dtype int8\)"):
        ofa_embed.extract(sample_scene(), stores / "int8", model=MODEL, tile_size=32, embedding_dtype="float16",
                          overwrite=True)
    mixed = tmp_path / "mixed"
    shutil.copytree(stores / "int8", mixed)
    shutil.copy(store_files(stores / "float16")[0], mixed / "other.parquet")
    with pytest.raises(StoreError, match="mixes embedding dtypes"):
        describe_store(mixed)


def test_cli_embedding_dtype(tmp_path):
    runner = CliRunner()
    done = runner.invoke(app, ["extract", "--sample", "--out", str(tmp_path / "s"), "--model", MODEL,
                               "--embedding-dtype", "float16"])
    assert done.exit_code == 0 and "float16 embeddings" in done.output
    bad = runner.invoke(app, ["extract", "--sample", "--out", str(tmp_path / "b"), "--model", MODEL,
                              "--embedding-dtype", "int4", "-q"])
    assert bad.exit_code == 1 and "'int4' is not one of float32, float16, int8" in bad.output
    assert not (tmp_path / "b").exists()
