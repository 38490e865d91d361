"""Progress reports: the one callback type every long-running library function takes as ``on_progress``.

The library never draws progress itself (the CLI turns these calls into Rich bars); it calls
``on_progress(name, done, total)`` as work completes, ``name`` naming what is counted (a scene, ``"chips"``,
``"indexing"``), ``done`` and ``total`` counting its units (tiles, chips, vectors).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ProgressCallback"]

ProgressCallback = Callable[[str, int, int], None]
"""``(name, done, total)``, called after each unit of work; ``done`` only grows, up to ``total``."""
