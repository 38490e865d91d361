"""A store file's footer is read once: its metadata, row count and fingerprint from one read of its end."""

import hashlib

import pytest

from ofa_embed.errors import StoreError
from ofa_embed.store import describe_store, reading
from tests.helpers import write_vector_store


@pytest.mark.parametrize("read_at_once", [reading.FOOTER_READ, 16], ids=["whole footer", "footer read again"])
def test_describe_store_fingerprints_the_footer_it_reads_the_metadata_from(tmp_path, monkeypatch, read_at_once):
    monkeypatch.setattr(reading, "FOOTER_READ", read_at_once)
    write_vector_store(tmp_path / "store", [("a", 5, 0.0, None, "sentinel2_l1c")])
    (described,) = describe_store(tmp_path / "store")
    data = described.path.read_bytes()
    length = int.from_bytes(data[-8:-4], "little")
    assert described.fingerprint == hashlib.sha256(data[-(length + 8):]).hexdigest()
    assert (described.rows, described.weights_hash, described.dimension) == (5, "feedfacefeedface", 32)


def test_a_file_with_no_parquet_footer_is_refused_naming_it(tmp_path):
    store = tmp_path / "store"
    write_vector_store(store, [("a", 5, 0.0, None, "sentinel2_l1c")])
    whole = (store / "a.parquet").read_bytes()
    for name, data in (("b.parquet", b"not a Parquet file"), ("c.parquet", whole[: len(whole) // 2])):
        (store / name).write_bytes(data)
        with pytest.raises(StoreError, match=rf"{name.replace('.', '[.]')}: not a readable Parquet file"):
            describe_store(store)
        (store / name).unlink()
