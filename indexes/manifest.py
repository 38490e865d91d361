"""The index manifest: what an index was built from, so that a stale or foreign index is refused.

``STORE/_index/manifest.json``::

    {"manifest_version": 2, "metric": "cosine", "dimension": D, "weights_hash": "...",
     "config": {"kind": "hnsw", ...}, "reason": "auto: ...", "faiss_version": "1.15.1",
     "files": [{"name": "scene.parquet", "rows": N, "fingerprint": "sha256 of the Parquet footer",
                "offset": first vector id of the file, "shard": 0}, ...],
     "shard_files": ["index.faiss"]}

Vector ids are store positions: the file's ``offset`` plus the row number inside the file. Files are only
ever appended (``--update``), so existing ids never move. A sharded index (``shard_files`` lists one
faiss file per shard) holds each store file in one shard, chosen from a hash of its name, so an update
adds a file to the same shard a rebuild would; inside a shard, vectors are numbered in manifest order.
Version 1 manifests (no ``shard``/``shard_files``) are one shard, ``index.faiss``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ofa_embed.atomic import atomic_target
from ofa_embed.errors import IndexStateError, first_line
from ofa_embed.indexes.config import METRIC, IndexConfig, config_from_dict, config_to_dict
from ofa_embed.location import AnyPath
from ofa_embed.store import StoreFile

MANIFEST_VERSION = 2
SINGLE_INDEX_FILE = "index.faiss"
INDEX_DIR = "_index"


@dataclass(frozen=True)
class FileEntry:
    """One indexed store file.

    Attributes:
        name: the Parquet file's path below the store (its name, in an unpartitioned store).
        rows: its number of rows (vectors).
        fingerprint: sha256 of its Parquet footer, to detect a changed file.
        offset: vector id (store position) of its first row.
        shard: the shard index holding it.
    """

    name: str
    rows: int
    fingerprint: str
    offset: int
    shard: int = 0


@dataclass
class Manifest:
    """What an index was built from: model, dimension, configuration and the store files it holds.

    Attributes:
        dimension: embedding dimension D.
        weights_hash: hash of the model weights that made the store's embeddings.
        config: the index configuration.
        reason: why ``config`` was chosen (from :func:`~ofa_embed.indexes.config.make_config`).
        faiss_version: the faiss version that built the index.
        files: the indexed store files, in vector-id order.
        shard_files: the faiss file of each shard, inside ``STORE/_index``.
        metric: always ``cosine``.
        manifest_version: format version of the manifest.
    """

    dimension: int
    weights_hash: str
    config: IndexConfig
    reason: str
    faiss_version: str
    files: list[FileEntry] = field(default_factory=list)
    shard_files: list[str] = field(default_factory=lambda: [SINGLE_INDEX_FILE])
    metric: str = METRIC
    manifest_version: int = MANIFEST_VERSION

    @property
    def shards(self) -> int:
        """The number of shard indexes."""
        return len(self.shard_files)

    def shard_rows(self, shard: int) -> int:
        """The number of vectors in ``shard``."""
        return sum(f.rows for f in self.files if f.shard == shard)

    def shard_positions(self, shard: int) -> np.ndarray:
        """``(n,)`` int64 ascending store positions of the vectors of ``shard``, in its own id order."""
        ranges = [np.arange(f.offset, f.offset + f.rows, dtype=np.int64) for f in self.files if f.shard == shard]
        return np.concatenate(ranges) if ranges else np.empty(0, np.int64)

    @property
    def rows(self) -> int:
        """The number of indexed vectors, over all files."""
        return sum(f.rows for f in self.files)

    def append(self, described: list[StoreFile]) -> None:
        """Add ``described`` files after the indexed ones, their ids continuing from :attr:`rows`, each to
        the shard :func:`shard_of` its name.
        """
        offset = self.rows
        for item in described:
            self.files.append(FileEntry(item.name, item.rows, item.fingerprint, offset, shard_of(item.name, self.shards)))
            offset += item.rows

    def to_json(self) -> str:
        """The manifest as indented JSON text (the format in this module's docstring)."""
        data = asdict(self)
        data["manifest_version"] = MANIFEST_VERSION  # a version-1 manifest rewritten holds version-2 fields
        data["config"] = config_to_dict(self.config)
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """The manifest in JSON ``text``, as written by :meth:`to_json`.

        Raises:
            IndexStateError: the manifest version is newer than this ofa-embed.
        """
        data: dict[str, Any] = json.loads(text)
        if int(data.get("manifest_version", 0)) > MANIFEST_VERSION:
            raise IndexStateError(f"index manifest version {data['manifest_version']} is newer than this ofa-embed")
        data["config"] = config_from_dict(data["config"])
        data["files"] = [FileEntry(**f) for f in data["files"]]
        return cls(**data)


def shard_of(name: str, shards: int) -> int:
    """The shard of the store file ``name``: a stable hash of its name (the same in every process and run)."""
    return int(hashlib.blake2b(name.encode(), digest_size=8).hexdigest(), 16) % shards if shards > 1 else 0


def index_dir(store: AnyPath) -> AnyPath:
    """The folder holding the index of ``store``: ``STORE/_index``."""
    return store / INDEX_DIR


def write_manifest(store: AnyPath, manifest: Manifest) -> None:
    """Write ``manifest`` to ``STORE/_index/manifest.json``, atomically."""
    with atomic_target(index_dir(store) / "manifest.json") as tmp:
        tmp.write_text(manifest.to_json())


def read_manifest(store: AnyPath) -> Manifest:
    """The manifest of the index of ``store``.

    Raises:
        IndexStateError: the store has no index, or its manifest is unreadable or too new.
    """
    path = index_dir(store) / "manifest.json"
    if not path.is_file():
        raise IndexStateError(f"{store}: no index (run: ofa-embed index {store})")
    try:
        return Manifest.from_json(path.read_text())
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # JSONDecodeError is a ValueError
        raise IndexStateError(
            f"{path}: unreadable index manifest ({first_line(exc)}); rebuild with: ofa-embed index {store}"
        ) from None


def check_fresh(store: AnyPath, manifest: Manifest, described: list[StoreFile], *, allow_new: bool = False) -> list[StoreFile]:
    """Compare an index manifest with the store as it is now.

    Returns:
        The store files the index does not hold yet (only when ``allow_new``).

    Raises:
        IndexStateError: a file changed or disappeared, the model or dimension differs, or (unless
            ``allow_new``) the store has files the index lacks. The message names what differs.
    """
    now = {f.name: f for f in described}
    if described and described[0].weights_hash != manifest.weights_hash:
        raise IndexStateError(
            f"{store}: index was built for model weights {manifest.weights_hash}, the store now holds "
            f"{described[0].weights_hash}; rebuild with: ofa-embed index {store}"
        )
    for entry in manifest.files:
        current = now.get(entry.name)
        if current is None:
            raise IndexStateError(f"{store}: index is stale: {entry.name} was removed; rebuild with: ofa-embed index {store}")
        if current.fingerprint != entry.fingerprint or current.rows != entry.rows:
            raise IndexStateError(
                f"{store}: index is stale: {entry.name} changed since indexing ({entry.rows} -> {current.rows} rows); "
                f"rebuild with: ofa-embed index {store}"
            )
    known = {e.name for e in manifest.files}
    new = [f for f in described if f.name not in known]
    if new and not allow_new:
        raise IndexStateError(
            f"{store}: index is stale: {len(new)} scene file(s) not indexed ({new[0].name}...); "
            f"add them with: ofa-embed index {store} --update"
        )
    return new
