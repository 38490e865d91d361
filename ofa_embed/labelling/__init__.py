"""``ofa-embed serve STORE``: a labelling loop in one local web page — find by example, label, train, see predictions.

The server (:mod:`.server`, tornado) loads the store's tiles once (:mod:`.session`), opens its faiss index
(building it when missing or stale), keeps labels in ``STORE/_labels/labels.json`` (:mod:`.labelbook`: written
atomically on every change, acknowledged only once on disk) and serves one self-contained page (``page.html``,
grown from the ``ofa-embed map`` page) over the tiles' own imagery (:mod:`.quicklook`).

JSON API (what the page uses; scripts and notebooks may use it too). Errors are 4xx with ``{"error": "one line"}``;
binary answers use the container of :mod:`.api`::

    GET  /api/store                      {"count", "modality", "modalities", "model": {"name", "weights_hash",
                                          "dimension", ...}, "bbox": [w, s, e, n], "start", "end", "index",
                                          "scenes_missing": [{"scene", "path"}], ...}
    GET  /api/tiles?bbox=W,S,E,N         binary: position <u4 (N), corners <f4 (N, 4, 2) Web Mercator metres
                                          relative to header "origin", colors |u1 (N, 3), ids |u1 (N, 8),
                                          scene <u4 (N) into header "scenes", days <f4 (N) since 1970 (NaN: no date)
    GET  /api/tiles?format=json&bbox=..  {"tiles": [{"id", "position", "scene", "bounds", "color"}]} (<= 100,000)
    POST /api/search                     {"like_ids": [...], "unlike_ids": [...], "k": 50, "bbox": [w, s, e, n],
                                          "start": "2024-05-01", "end": ..., "modality": ..., "exclude_labelled": false}
                                          -> {"hits": [{"rank", "id", "position", "similarity", "scene", "datetime",
                                          "lon", "lat"}], "seconds", "index"}
    GET  /api/labels                     {"revision", "classes": [{"name", "color"}], "labels": [{"id", "class",
                                          "positive", "time", "position"}]}
    POST /api/labels                     {"labels": [{"id", "class", "positive": true}, {"id", "delete": true}]}
                                          -> {"revision", "applied", "count"}; one label per tile, the last wins
    POST /api/classes                    {"create": NAME} or {"rename": {"from": OLD, "to": NEW}}
    POST /api/train                      {"method": "probe"|"knn", "split": "spatial-block"|"random", "folds": 5,
                                          "k": 10, "bootstrap": 1000} -> {"predictions": HANDLE, "classes",
                                          "evaluation": {"metrics", "per_class", ...}, "split", "labels", ...}
    GET  /api/predictions?handle=&bbox=  binary: position <u4, codes <u2 into header "classes", probability <f4;
                                          format=json for {"predictions": [{"id", "prediction", "probability",
                                          "probabilities"}]}
    GET  /api/progress                   {"tasks": [{"task", "step", "done", "total", "busy"}]}
    GET  /api/quicklook/ID.png           the tile's pixels (404 with the reason when its scene moved)
    GET  /api/export/labels?format=parquet|geojson        what ``probe --labels`` reads (:mod:`.export`)
    GET  /api/export/predictions?format=parquet|geojson&handle=

Training reads a positive label as its class and a negative one as ``background`` (a class name reserved for
that), with ``ofa-embed probe``'s protocol: spatially blocked cross-validation by default, out-of-fold metrics
with bootstrapped intervals, the probe refitted on every label, then every tile predicted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ofa_embed.labelling.server import DEFAULT_HOST, DEFAULT_PORT, ServeInfo, Server, is_loopback, open_warning
from ofa_embed.location import AnyPath
from ofa_embed.progress import ProgressCallback

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "ServeInfo", "Server", "is_loopback", "open_warning", "serve"]

logger = logging.getLogger(__name__)


def serve(
    store: str | AnyPath,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    build_index: bool = True,
    ready: Callable[[ServeInfo], None] | None = None,
    on_progress: ProgressCallback | None = None,
) -> None:
    """Serve the labelling page of ``store`` at ``http://host:port/`` until interrupted (blocking).

    Args:
        store: a local store folder (from ``ofa-embed extract``).
        host: the address to listen on; loopback by default. Any other logs a warning (:func:`open_warning`):
            anyone on that network can read the store and write labels.
        port: the port (0: any free one; ``ready`` is told which).
        build_index: build the store's faiss index when it has none or a stale one (else refuse).
        ready: called with the :class:`ServeInfo` once the server listens.
        on_progress: ``(step, done, total)`` while the index is built.

    Raises:
        StoreError: missing, empty or remote store, an unreadable labels file.
        IndexStateError: no usable index and ``build_index`` False.
        OSError: the port is taken.
    """
    warning = open_warning(host)
    if warning:
        logger.warning(warning)
    Server(store, host, port, build_index=build_index, on_progress=on_progress).run(ready)
