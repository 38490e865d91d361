"""The labels and classes of a ``serve`` session, kept in ``STORE/_labels/labels.json``.

Layout (JSON, one file, rewritten whole on every change)::

    {"version": 1,                          # the file layout
     "revision": 17,                        # bumped by every change; the page refetches when it moves
     "classes": [{"name": "forest", "color": "#1f77b4"}, ...],
     "labels": [{"id": "98a38c2838a682d8", "class": "forest", "positive": true,
                 "time": "2026-12-06T01:02:03+00:00"}, ...]}

One label per tile: labelling a tile again replaces its label. A positive label says the tile is of its class;
a negative one says it is not (training reads it as :data:`NEGATIVE_CLASS`).

Why one JSON file rewritten whole: every change is written to a temporary file beside it, flushed to disk
(``fsync``) and renamed over it, so the file on disk is always one complete state, old or new; a reply that
acknowledges a change is sent only after the rename, so a killed server loses no acknowledged label. Writes are
serialised by a lock held across read-modify-write, so two tabs posting at once cannot lose each other's
labels. ``_labels`` is not a folder :func:`~ofa_embed.store.store_files` lists (not ``key=value``), so nothing
here is ever read as a store file. An append-only log would write less per change; a labelling session holds
thousands of labels, not millions, and a whole file is what a user can read, copy and version.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ofa_embed.atomic import atomic_target
from ofa_embed.errors import ConfigError, StoreError

__all__ = ["LABELS_DIR", "LABELS_FILE", "NEGATIVE_CLASS", "LabelBook", "LabelChange"]

LABELS_DIR = "_labels"
LABELS_FILE = "labels.json"
LAYOUT_VERSION = 1
NEGATIVE_CLASS = "background"  # what a negative label trains as; no user class may take the name
MAX_CLASS_NAME = 64
# tab10, the map's class palette: a new class takes the first colour no class has
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


@dataclass(frozen=True)
class LabelChange:
    """One label to set or remove: tile ``id``, its ``klass`` (class name), ``positive``; ``delete`` removes the
    tile's label (class and sign are then ignored).
    """

    id: str
    klass: str = ""
    positive: bool = True
    delete: bool = False


def check_class_name(name: object) -> str:
    """A class name, stripped; refused when empty, too long, not text, or the reserved negative class.

    Raises:
        ConfigError: what is wrong with the name.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"class name {name!r}: give a non-empty string")
    name = name.strip()
    if len(name) > MAX_CLASS_NAME:
        raise ConfigError(f"class name {name[:20]!r}...: at most {MAX_CLASS_NAME} characters")
    if name == NEGATIVE_CLASS:
        raise ConfigError(f"class name {NEGATIVE_CLASS!r} is reserved: negative labels train as it")
    return name


class LabelBook:
    """Labels and classes of one store, loaded from and saved to ``STORE/_labels/labels.json``.

    Every public method that changes something writes the file before it returns (see the module docstring).
    """

    def __init__(self, store: Path) -> None:
        """Load the book of ``store`` (empty when it has none yet).

        Raises:
            StoreError: the file exists but is not a labels file of this layout.
        """
        self.path = Path(store) / LABELS_DIR / LABELS_FILE
        self.lock = threading.Lock()
        self.revision = 0
        self.classes: dict[str, str] = {}  # name -> colour, in creation order
        self.labels: dict[str, dict[str, Any]] = {}  # tile id -> {"class", "positive", "time"}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if int(data.get("version", 0)) > LAYOUT_VERSION:
                raise StoreError(f"{self.path}: labels file version {data['version']} is newer than this ofa-embed reads")
            self.revision = int(data.get("revision", 0))
            self.classes = {c["name"]: c.get("color") or self._next_colour() for c in data.get("classes", [])}
            self.labels = {entry["id"]: {"class": entry["class"], "positive": bool(entry["positive"]),
                                         "time": entry.get("time")} for entry in data.get("labels", [])}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreError(f"{self.path}: not a readable labels file ({exc}); move it away to start afresh") from None

    def snapshot(self) -> dict[str, Any]:
        """The book as the file holds it (``revision``, ``classes``, ``labels``), a copy."""
        with self.lock:
            return self._document()

    def _document(self) -> dict[str, Any]:
        return {
            "version": LAYOUT_VERSION, "revision": self.revision,
            "classes": [{"name": name, "color": colour} for name, colour in self.classes.items()],
            "labels": [{"id": i, **entry} for i, entry in self.labels.items()],
        }

    def _next_colour(self) -> str:
        used = set(self.classes.values())
        return next((c for c in PALETTE if c not in used), PALETTE[len(self.classes) % len(PALETTE)])

    def _save(self) -> None:
        """Write the whole book: a temporary file, flushed to disk, renamed over the old one."""
        self.revision += 1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self._document(), indent=1, ensure_ascii=False)
        with atomic_target(self.path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        try:  # the rename itself lasts across a power cut once the folder is flushed too (POSIX)
            folder = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        except OSError:
            pass

    def add_class(self, name: str, color: str | None = None) -> str:
        """Create class ``name`` (no change when it exists); returns the checked name.

        Raises:
            ConfigError: a bad name.
        """
        name = check_class_name(name)
        with self.lock:
            if name not in self.classes:
                self.classes[name] = color or self._next_colour()
                self._save()
        return name

    def rename_class(self, old: str, new: str) -> int:
        """Rename class ``old`` to ``new`` (merging into ``new`` when it exists) and relabel its labels;
        returns how many labels moved.

        Raises:
            ConfigError: ``old`` is not a class, or ``new`` is a bad name.
        """
        new = check_class_name(new)
        with self.lock:
            if old not in self.classes:
                raise ConfigError(f"no class {old!r} to rename (classes: {', '.join(self.classes) or 'none'})")
            colour = self.classes.pop(old)
            self.classes.setdefault(new, colour)
            moved = 0
            for entry in self.labels.values():
                if entry["class"] == old:
                    entry["class"], moved = new, moved + 1
            self._save()
        return moved

    def apply(self, changes: Iterable[LabelChange]) -> int:
        """Set or remove labels, all in one write; a label's class is created when new. Returns the revision.

        Args:
            changes: the labels to set or remove, in order (a later change of the same tile wins).

        Raises:
            ConfigError: a bad class name; nothing is written then.
        """
        changes = list(changes)
        for change in changes:
            if not change.delete:
                check_class_name(change.klass)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self.lock:
            for change in changes:
                if change.delete:
                    self.labels.pop(change.id, None)
                    continue
                klass = change.klass.strip()
                if klass not in self.classes:
                    self.classes[klass] = self._next_colour()
                self.labels.pop(change.id, None)  # a relabelled tile moves to the end: the order is the order of labelling
                self.labels[change.id] = {"class": klass, "positive": bool(change.positive), "time": now}
            if changes:
                self._save()
            return self.revision

    def training_targets(self) -> dict[str, str]:
        """Tile id -> training target: the class of a positive label, :data:`NEGATIVE_CLASS` for a negative one."""
        with self.lock:
            return {i: entry["class"] if entry["positive"] else NEGATIVE_CLASS for i, entry in self.labels.items()}
