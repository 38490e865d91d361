"""Which embeddings a store holds, fixed by its first writer: ``STORE/_store.json``.

A store holds the embeddings of one set of weights, in one dimension and one stored dtype, so that every
vector in it compares with every other. Checking its files before writing is not enough when two runs start
on a new store at once: both see no file, both write. So the first writer claims the store before it writes
anything: it creates ``_store.json`` with its weights hash, dimension and dtype, atomically and only if absent
(a hard link of a complete temporary file, which fails where the name exists). Every later writer reads the
record and is refused, before it writes, when its embeddings are other ones. A claim that wrote no file is
given back when its run fails or is interrupted; a killed run's claim stays (the message of the writer it
refuses says how to remove it).

A store written before the record existed is claimed by its next writer for what its files hold, once they are
checked to agree with it. A remote store (fsspec) has no atomic create-if-absent in general: its record is
written after a check, which narrows the race to the moments between, and says so here.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from ofa_embed.errors import StoreError
from ofa_embed.location import AnyPath, RemotePath, as_location
from ofa_embed.store.geoparquet import store_files
from ofa_embed.store.reading import describe_store

__all__ = ["CLAIM_FILE", "CLAIM_VERSION", "StoreIdentity", "claimed_store", "read_claim"]

CLAIM_FILE = "_store.json"
CLAIM_VERSION = 1


@dataclass(frozen=True)
class StoreIdentity:
    """What makes a store's vectors comparable: the weights that made them, their dimension and stored dtype.

    Attributes:
        weights_hash: content hash of the weights (as every store file records it).
        dimension: embedding dimension.
        embedding_dtype: how vectors are stored (float32, float16, int8).
        model: the model's name, for messages.
        readout: how the model's tokens became the vectors (its pooling, in words); "" where unknown (a
            record of an older ofa-embed, or a store file's own metadata), which matches any.
    """

    weights_hash: str
    dimension: int
    embedding_dtype: str
    model: str = ""
    readout: str = ""

    def differs_from(self, other: StoreIdentity) -> str | None:
        """How ``other`` differs from this identity in what matters, or None."""
        if other.weights_hash != self.weights_hash:
            return f"weights {self.weights_hash} ({self.model or 'its model'}), not {other.weights_hash}"
        if other.dimension != self.dimension:
            return f"{self.dimension}-dimensional embeddings, not {other.dimension}"
        if self.readout and other.readout and other.readout != self.readout:
            # the weights hash covers the weights only: the same weights read out another way are other vectors
            return f"embeddings read out as {self.readout!r}, not {other.readout!r}"
        if other.embedding_dtype != self.embedding_dtype:
            return (f"{self.embedding_dtype} embeddings, not {other.embedding_dtype} (pass --embedding-dtype "
                    f"{self.embedding_dtype})")
        return None


def read_claim(store: str | AnyPath) -> StoreIdentity | None:
    """The identity ``store``'s record fixes, or None when it has none.

    Raises:
        StoreError: the record is unreadable.
    """
    path = as_location(store) / CLAIM_FILE
    if not path.exists():
        return None
    try:
        with path.open("rb") as handle:
            record = json.loads(handle.read())
        return StoreIdentity(str(record["weights_hash"]), int(record["dimension"]), str(record["embedding_dtype"]),
                             str(record.get("model", "")), str(record.get("readout", "")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{path}: unreadable store record ({exc}); it names the weights the store holds: restore "
                         "it, or remove it if the store holds no file") from None


@contextmanager
def claimed_store(store: str | AnyPath, identity: StoreIdentity) -> Iterator[None]:
    """Hold ``store`` for embeddings of ``identity`` while the block writes to it.

    Raises:
        StoreError: the store holds, or its record fixes, other embeddings; nothing is written then.
    """
    root = as_location(store)
    ours = _claim(root, identity)
    try:
        yield
    except BaseException:
        if ours is not None and not store_files(root):
            _give_back(root, ours)
        raise


def _claim(root: AnyPath, identity: StoreIdentity) -> str | None:
    """Check ``identity`` against the store; claim it where unclaimed. The claim's nonce where this call made
    the record, else None.
    """
    for _ in range(3):
        held = read_claim(root)
        if held is not None:
            _refuse_other(root, held, identity, f"its record {CLAIM_FILE}")
            return None
        if store_files(root):
            first = describe_store(root)[0]  # refuses a store whose files already mix models or dtypes
            found = StoreIdentity(first.weights_hash, first.dimension, first.embedding_dtype)
            _refuse_other(root, found, identity, first.name)
        nonce = uuid.uuid4().hex
        if _create(root, identity, nonce):
            return nonce
    raise StoreError(f"{root / CLAIM_FILE}: the store record changed while it was read three times; try again")


def _refuse_other(root: AnyPath, held: StoreIdentity, identity: StoreIdentity, where: str) -> None:
    difference = held.differs_from(identity)
    if difference:
        empty = "" if store_files(root) else (
            f" (it holds no file yet: another run is writing it, or a killed run left {CLAIM_FILE}; remove that file "
            "if no run is)")
        raise StoreError(f"{root}: holds {difference}, as {where} says{empty}; write these embeddings to another "
                         "store (--out)")


def _create(root: AnyPath, identity: StoreIdentity, nonce: str) -> bool:
    """Write the record where none exists; False where another writer's appeared first."""
    record: dict[str, Any] = {
        "claim_version": CLAIM_VERSION, **asdict(identity),
        "claimed": datetime.now(UTC).isoformat(timespec="seconds"),
        "claimed_by": f"{socket.gethostname()}:{os.getpid()}", "nonce": nonce,
    }
    data = json.dumps(record, indent=1).encode()
    if isinstance(root, RemotePath):
        remote = root / CLAIM_FILE
        root.mkdir(parents=True, exist_ok=True)
        if remote.exists():
            return False
        with remote.open("wb") as handle:
            handle.write(data)
        return True
    root.mkdir(parents=True, exist_ok=True)
    target = root / CLAIM_FILE
    temporary = root / f".{CLAIM_FILE}.{nonce}.tmp"
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, target)  # atomic, and fails where the record exists: the first writer wins
        return True
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)


def _give_back(root: AnyPath, nonce: str) -> None:
    """Remove the record this run made, if it is still that one (the run wrote no file)."""
    target = root / CLAIM_FILE
    try:
        with target.open("rb") as handle:
            if json.loads(handle.read()).get("nonce") != nonce:
                return
        target.unlink()
    except (OSError, ValueError):
        return
