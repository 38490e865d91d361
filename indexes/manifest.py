"""The index manifest: what an index was built from, so that a stale or foreign index is refused.

``STORE/_index/manifest.json``::

    {"manifest_version": 1, "metric": "cosine", "dimension": D, "weights_hash": "...",
     "config": {"kind": "hnsw", ...}, "reason": "auto: ...", "faiss_version": "1.15.1",
     "files": [{"name": "scene.parquet", "rows": N, "fingerprint": "sha256 of the Parquet footer",
                "offset": first vector id of the file}, ...]}

Vector ids are positions: the file's ``offset`` plus the row number inside the file. Files are only
ever appended (``--update``), so existing ids never move.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ofa_embed.atomic import atomic_target
from ofa_embed.errors import IndexStateError, first_line
from ofa_embed.indexes.config import METRIC, IndexConfig, config_from_dict, config_to_dict
from ofa_embed.store import StoreFile

MANIFEST_VERSION = 1
INDEX_DIR = "_index"


@dataclass(frozen=True)
class FileEntry:
    """One indexed store file.

    Attributes:
        name: the Parquet file's name inside the store.
        rows: its number of rows (vectors).
        fingerprint: sha256 of its Parquet footer, to detect a changed file.
        offset: vector id (store position) of its first row.
    """

    name: str
    rows: int
    fingerprint: str
    offset: int


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
        metric: always ``cosine``.
        manifest_version: format version of the manifest.
    """

    dimension: int
    weights_hash: str
    config: IndexConfig
    reason: str
    faiss_version: str
    files: list[FileEntry] = field(default_factory=list)
    metric: str = METRIC
    manifest_version: int = MANIFEST_VERSION

    @property
    def rows(self) -> int:
        """The number of indexed vectors, over all files."""
        return sum(f.rows for f in self.files)

    def append(self, described: list[StoreFile]) -> None:
        """Add ``described`` files after the indexed ones, their ids continuing from :attr:`rows`."""
        offset = self.rows
        for item in described:
            self.files.append(FileEntry(item.path.name, item.rows, item.fingerprint, offset))
            offset += item.rows

    def to_json(self) -> str:
        """The manifest as indented JSON text (the format in this module's docstring)."""
        data = asdict(self)
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


def index_dir(store: Path) -> Path:
    """The folder holding the index of ``store``: ``STORE/_index``."""
    return store / INDEX_DIR


def write_manifest(store: Path, manifest: Manifest) -> None:
    """Write ``manifest`` to ``STORE/_index/manifest.json``, atomically."""
    with atomic_target(index_dir(store) / "manifest.json") as tmp:
        tmp.write_text(manifest.to_json())


def read_manifest(store: Path) -> Manifest:
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


def check_fresh(store: Path, manifest: Manifest, described: list[StoreFile], *, allow_new: bool = False) -> list[StoreFile]:
    """Compare an index manifest with the store as it is now.

    Returns:
        The store files the index does not hold yet (only when ``allow_new``).

    Raises:
        IndexStateError: a file changed or disappeared, the model or dimension differs, or (unless
            ``allow_new``) the store has files the index lacks. The message names what differs.
    """
    now = {f.path.name: f for f in described}
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
    new = [f for f in described if f.path.name not in known]
    if new and not allow_new:
        raise IndexStateError(
            f"{store}: index is stale: {len(new)} scene file(s) not indexed ({new[0].path.name}...); "
            f"add them with: ofa-embed index {store} --update"
        )
    return new
