"""Where a store lives: a local folder, or an fsspec URL (``s3://bucket/emb``, ``gs://...``, ``memory://...``).

:func:`as_location` turns what a user gives into a :class:`pathlib.Path` (a plain path or a ``file://`` URL)
or a :class:`RemotePath` (any other protocol fsspec knows). ``RemotePath`` has the part of the pathlib
interface the store and the index use (``/``, ``name``, ``parent``, ``exists``, ``iterdir``, ``open``...), so
that code is written once for both. Writes to either go through :func:`ofa_embed.atomic.atomic_target`: a
local temporary file, then :meth:`RemotePath.upload`.

What ``upload`` does depends on the filesystem:

- object stores (S3, GCS, Azure, ... and fsspec's in-memory one) have no rename; a file is uploaded whole as
  one object, and a single PUT is atomic: readers see the old object or the new one, never part of it;
- other filesystems (SFTP, HDFS, SMB, WebDAV, ...) are written under a temporary name beside the target
  and renamed, as a local write is.

Credentials and options come from fsspec's own configuration (environment, ``~/.config/fsspec``), as for
every fsspec user; the protocol's package (``s3fs``, ``gcsfs``, ``adlfs``) must be installed.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ofa_embed.errors import StoreError

__all__ = ["AnyPath", "RemotePath", "as_location", "change_stamp", "relative_name", "remove_tree"]

# protocols whose writes are whole-object uploads with no rename (fsspec's names for them)
OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oci", "oss", "r2", "memory"})


class RemotePath:
    """A file or folder on an fsspec filesystem, with the pathlib methods the store uses.

    Attributes:
        fs: the filesystem (an ``fsspec.AbstractFileSystem``; picklable, so Dask tasks can carry it).
        path: the path on it, without the protocol (``bucket/emb/scene.parquet``).
    """

    def __init__(self, fs: Any, path: str) -> None:
        self.fs = fs
        self.path = path.rstrip("/") or "/"

    @classmethod
    def from_url(cls, url: str) -> RemotePath:
        """The location of ``url`` (``s3://bucket/emb``)."""
        from fsspec.core import url_to_fs

        try:
            fs, path = url_to_fs(url)
        except (ImportError, ValueError) as exc:  # unknown protocol, or its package is not installed
            raise StoreError(f"{url}: cannot open this location ({exc})") from None
        return cls(fs, path)

    @property
    def protocol(self) -> str:
        """The filesystem's protocol (``s3``, ``memory``...)."""
        protocol = self.fs.protocol
        return protocol if isinstance(protocol, str) else protocol[0]

    def __str__(self) -> str:
        return str(self.fs.unstrip_protocol(self.path))

    def __repr__(self) -> str:
        return f"RemotePath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __truediv__(self, part: str) -> RemotePath:
        return RemotePath(self.fs, posixpath.join(self.path, part))

    def joinpath(self, *parts: str) -> RemotePath:
        """As :meth:`pathlib.Path.joinpath`."""
        return RemotePath(self.fs, posixpath.join(self.path, *parts)) if parts else self

    @property
    def name(self) -> str:
        """The last part of the path."""
        return posixpath.basename(self.path)

    @property
    def suffix(self) -> str:
        """The name's extension, with its dot."""
        return posixpath.splitext(self.name)[1]

    @property
    def stem(self) -> str:
        """The name without its extension."""
        return posixpath.splitext(self.name)[0]

    @property
    def parent(self) -> RemotePath:
        """The folder holding this path."""
        return RemotePath(self.fs, posixpath.dirname(self.path))

    @property
    def parts(self) -> tuple[str, ...]:
        """The path parts, without the protocol."""
        return tuple(p for p in self.path.split("/") if p)

    def with_name(self, name: str) -> RemotePath:
        """This path with another last part."""
        return self.parent / name

    def resolve(self) -> RemotePath:
        """This path (a URL is absolute already)."""
        return self

    def exists(self) -> bool:
        """Whether a file or folder is here."""
        return bool(self.fs.exists(self.path))

    def is_dir(self) -> bool:
        """Whether a folder (or key prefix) is here."""
        return bool(self.fs.isdir(self.path))

    def is_file(self) -> bool:
        """Whether a file is here."""
        return bool(self.fs.isfile(self.path))

    def iterdir(self) -> Iterator[RemotePath]:
        """The folder's entries."""
        for entry in self.fs.ls(self.path, detail=False):
            yield RemotePath(self.fs, entry)

    def glob(self, pattern: str) -> Iterator[RemotePath]:
        """Entries of this folder matching ``pattern``."""
        for entry in self.fs.glob(posixpath.join(self.path, pattern)):
            yield RemotePath(self.fs, entry)

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Make the folder and its parents; a no-op where folders are only key prefixes."""
        self.fs.makedirs(self.path, exist_ok=True)

    def unlink(self, missing_ok: bool = False) -> None:
        """Remove the file."""
        try:
            self.fs.rm_file(self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rmdir(self) -> None:
        """Remove the folder, which must be empty."""
        if self.fs.ls(self.path, detail=False) if self.fs.isdir(self.path) else []:
            raise OSError(f"{self}: folder not empty")
        if self.fs.isdir(self.path):
            self.fs.rmdir(self.path)

    def open(self, mode: str = "rb") -> IO[Any]:
        """A file object of the file (``rb``, ``wb``...)."""
        return self.fs.open(self.path, mode)

    def read_bytes(self) -> bytes:
        """The file's bytes."""
        return self.fs.cat_file(self.path)

    def read_text(self) -> str:
        """The file's text (UTF-8)."""
        return self.read_bytes().decode()

    def upload(self, local: Path) -> None:
        """Put the local file ``local`` here so that a reader never sees part of it (see the module docstring)."""
        self.parent.mkdir(parents=True, exist_ok=True)
        if self.protocol in OBJECT_STORES:
            self.fs.put_file(str(local), self.path)
            return
        staged = self.with_name(f".{self.name}.{os.getpid()}.tmp")
        try:
            self.fs.put_file(str(local), staged.path)
            self.fs.mv(staged.path, self.path)
        finally:
            staged.unlink(missing_ok=True)


AnyPath = Path | RemotePath


def as_location(value: str | Path | RemotePath) -> AnyPath:
    """A local :class:`~pathlib.Path` for a plain path or a ``file://`` URL; a :class:`RemotePath` for a URL of
    any other fsspec protocol.

    Raises:
        StoreError: an unknown protocol, or one whose fsspec package is not installed.
    """
    if isinstance(value, (Path, RemotePath)):
        return value
    if value.startswith("file://"):
        return Path(value.removeprefix("file://"))
    if "://" in value:
        return RemotePath.from_url(value)
    return Path(value)


def relative_name(path: AnyPath, root: AnyPath) -> str:
    """``path`` below the folder ``root``, with ``/`` separators (``utm_zone=33N/year=2020/scene.parquet``)."""
    if isinstance(path, RemotePath) and isinstance(root, RemotePath):
        return posixpath.relpath(path.path, root.path)
    if isinstance(path, Path) and isinstance(root, Path):
        return path.relative_to(root).as_posix()
    raise ValueError(f"{path} is not below {root}")


def change_stamp(path: AnyPath) -> tuple[object, ...]:
    """What changes whenever the file at ``path`` is rewritten: modification time and size locally, the
    filesystem's unique key (an object's ETag on object stores) elsewhere.

    Raises:
        FileNotFoundError: no file there.
    """
    if isinstance(path, RemotePath):
        if not path.fs.exists(path.path):
            raise FileNotFoundError(2, "no such file", str(path))
        return (path.fs.ukey(path.path),)
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def remove_tree(folder: AnyPath) -> None:
    """Remove ``folder`` and everything below it; nothing when it does not exist."""
    if isinstance(folder, RemotePath):
        if folder.fs.exists(folder.path):
            folder.fs.rm(folder.path, recursive=True)
        return
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
