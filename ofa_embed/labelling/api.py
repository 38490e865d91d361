"""The JSON API of ``ofa-embed serve`` (tornado request handlers); the page uses nothing else.

Every error is a 4xx (or 500) with one JSON line ``{"error": "..."}``, never a traceback: 400 for a bad request
(malformed JSON, unknown id, bad bbox, too few labels), 404 for an unknown path, handle or missing quicklook,
413 for a body over :data:`MAX_BODY`. Binary answers (``application/octet-stream``) are one container::

    b"OFA1"  uint32 header length (little-endian)  header JSON (padded to 4 bytes)  arrays

where the header lists ``arrays: [{"name", "dtype", "shape", "offset", "bytes"}]`` (offsets from the first byte
after the header, each a multiple of 8, so a browser maps every one as a typed array without a copy) and
whatever else the endpoint says (``count``, ``origin``, ``classes``...). dtypes are numpy's little-endian names
(``<f4``, ``<u4``, ``<u2``, ``|u1``).
"""

from __future__ import annotations

import json
import logging
import struct
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files as package_files
from pathlib import Path
from typing import Any

import numpy as np
import tornado.web
from tornado.ioloop import IOLoop

from ofa_embed.errors import OFAEmbedError, QueryError, first_line
from ofa_embed.labelling.export import export_labels, export_predictions
from ofa_embed.labelling.labelbook import LabelBook, LabelChange
from ofa_embed.labelling.quicklook import QuicklookMissing, Quicklooks
from ofa_embed.labelling.session import StoreSession

__all__ = ["MAX_BODY", "MAX_JSON_TILES", "ServeState", "binary_container", "routes"]

logger = logging.getLogger(__name__)
MAX_BODY = 16 * 2**20
MAX_JSON_TILES = 100_000  # beyond this many tiles, ask for the binary form


def binary_container(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """The binary answer (module docstring): ``header`` plus ``arrays`` laid out 8-byte aligned."""
    parts, offset, listed = [], 0, []
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        data = array.tobytes()
        listed.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape), "offset": offset,
                       "bytes": len(data)})
        pad = (-len(data)) % 8
        parts.append(data + b"\0" * pad)
        offset += len(data) + pad
    text = json.dumps({**header, "arrays": listed}, separators=(",", ":")).encode()
    text += b" " * ((-(len(text) + 8)) % 8)
    return b"OFA1" + struct.pack("<I", len(text)) + text + b"".join(parts)


class ServeState:
    """What the handlers share: the session, the label book, quicklooks, a thread pool, progress of long work."""

    def __init__(self, session: StoreSession, book: LabelBook, quicklooks: Quicklooks) -> None:
        self.session, self.book, self.quicklooks = session, book, quicklooks
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ofa-serve")
        self.progress: dict[str, dict[str, Any]] = {}
        self.missing = quicklooks.missing()

    def reporter(self, task: str) -> Any:
        """A progress callback recording ``task``'s steps for ``GET /api/progress``."""
        started = time.time()
        self.progress[task] = {"task": task, "step": "starting", "done": 0, "total": 0, "started": started, "busy": True}

        def update(step: str, done: int, total: int) -> None:
            self.progress[task] = {"task": task, "step": step, "done": done, "total": total, "started": started, "busy": True}

        return update

    def finished(self, task: str) -> None:
        """Mark ``task`` done."""
        entry = self.progress.get(task)
        if entry is not None:
            self.progress[task] = {**entry, "busy": False, "seconds": round(time.time() - entry["started"], 3)}


class Handler(tornado.web.RequestHandler):
    """Base handler: JSON in, JSON out, one-line errors."""

    state: ServeState

    def initialize(self, state: ServeState) -> None:
        self.state = state

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    def body(self) -> dict[str, Any]:
        """The request body as a JSON object.

        Raises:
            HTTPError: 400 when it is not one.
        """
        try:
            data = json.loads(self.request.body or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise tornado.web.HTTPError(400, reason=f"body is not JSON ({first_line(exc)})") from None
        if not isinstance(data, dict):
            raise tornado.web.HTTPError(400, reason="body must be a JSON object")
        return data

    def send(self, data: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, separators=(",", ":"), default=str, allow_nan=False))

    def send_binary(self, data: bytes) -> None:
        self.set_header("Content-Type", "application/octet-stream")
        self.finish(data)

    def bbox_argument(self) -> tuple[float, float, float, float] | None:
        text = self.get_argument("bbox", None)
        if not text:
            return None
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            raise QueryError(f"bbox {text[:60]!r}: give MINLON,MINLAT,MAXLON,MAXLAT") from None
        if len(values) != 4:
            raise QueryError(f"bbox {text[:60]!r}: give 4 numbers MINLON,MINLAT,MAXLON,MAXLAT")
        return values

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, QuicklookMissing):
            status_code, message = 404, str(exc)
        elif isinstance(exc, OFAEmbedError):
            status_code, message = 400, str(exc)
        elif isinstance(exc, tornado.web.HTTPError):
            message = exc.reason or self._reason
            if exc.status_code == 413 or "Content-Length too long" in str(exc.log_message or ""):
                message = f"request body over {MAX_BODY // 2**20} MiB"
        elif status_code >= 500:
            message = f"internal error ({type(exc).__name__ if exc else 'unknown'}): see the server's log"
        else:
            message = self._reason
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json")
        self.clear_header("Content-Disposition")
        self.finish(json.dumps({"error": " ".join(str(message).split())[:500]}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, OFAEmbedError | tornado.web.HTTPError):
            logger.info("%s %s: %s", self.request.method, self.request.uri, first_line(value))
        else:
            super().log_exception(typ, value, tb)

    async def run(self, task: str | None, work: Any, *args: Any) -> Any:
        """``work(*args)`` on the pool, so the server keeps answering (progress, labels) meanwhile."""
        try:
            return await IOLoop.current().run_in_executor(self.state.pool, work, *args)
        finally:
            if task:
                self.state.finished(task)


class PageHandler(Handler):
    """``GET /``: the page."""

    def get(self) -> None:
        page = package_files("ofa_embed.labelling").joinpath("page.html").read_text(encoding="utf-8")
        title = f"{self.state.session.store.name}: {self.state.session.count:,} tiles"
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(page.replace("__TITLE__", title.replace("&", "&amp;").replace("<", "&lt;")))


class StoreHandler(Handler):
    """``GET /api/store``: count, modality, model, bbox, date range, index kind, scenes missing from their path."""

    def get(self) -> None:
        self.send({**self.state.session.describe(), "scenes_missing": self.state.missing})


class TilesHandler(Handler):
    """``GET /api/tiles?bbox=&format=binary|json``: footprints and colours."""

    def get(self) -> None:
        session = self.state.session
        positions = session.in_bbox(self.bbox_argument())
        header = {"count": int(len(positions)), "total": session.count, "origin": [float(v) for v in session.origin],
                  "scenes": session.scene_names}
        if self.get_argument("format", "binary") == "json":
            if len(positions) > MAX_JSON_TILES:
                raise QueryError(f"{len(positions):,} tiles: over {MAX_JSON_TILES:,}, ask for format=binary or a smaller bbox")
            b = session.lonlat_bounds
            self.send({**header, "tiles": [{
                "id": session.ids[p], "position": int(p), "scene": session.scene_names[session.scene_codes[p]],
                "bounds": [round(float(v), 7) for v in b[p]], "color": "#" + bytes(session.colors[p]).hex(),
            } for p in positions]})
            return
        every = len(positions) == session.count
        self.send_binary(binary_container(header, {
            "position": positions.astype("<u4"),
            "corners": session.corners if every else session.corners[positions],
            "colors": session.colors if every else session.colors[positions],
            "ids": session.id_bytes if every else session.id_bytes[positions],
            "scene": session.scene_codes.astype("<u4")[positions],
            "days": session.days[positions],
        }))


class SearchHandler(Handler):
    """``POST /api/search``: Rocchio search of like/unlike ids within filters."""

    async def post(self) -> None:
        request = self.body()
        self.state.reporter("search")
        self.send(await self.run("search", self.state.session.search, request))


class LabelsHandler(Handler):
    """``GET /api/labels``; ``POST /api/labels`` with ``{"labels": [{"id", "class", "positive", "delete"}]}``."""

    def get(self) -> None:
        snapshot = self.state.book.snapshot()
        ids = [label["id"] for label in snapshot["labels"]]
        positions = self.state.session.positions_of(ids) if ids else np.empty(0, int)
        for label, position in zip(snapshot["labels"], positions, strict=True):
            label["position"] = int(position)
        self.send(snapshot)

    def post(self) -> None:
        entries = self.body().get("labels")
        if not isinstance(entries, list):
            raise QueryError('give {"labels": [{"id": ..., "class": ..., "positive": true}, ...]}')
        changes = []
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                raise QueryError(f"label {str(entry)[:80]}: give an object with a tile 'id'")
            if not isinstance(entry.get("positive", True), bool) or not isinstance(entry.get("delete", False), bool):
                raise QueryError(f"label {entry['id']!r}: 'positive' and 'delete' are true or false")
            changes.append(LabelChange(entry["id"], entry.get("class", ""), entry.get("positive", True),
                                       entry.get("delete", False)))
        self.state.session.positions_of([c.id for c in changes])
        # on the loop's one thread, after the rename: the reply acknowledges a label that is on disk
        revision = self.state.book.apply(changes)
        self.send({"revision": revision, "applied": len(changes), "count": len(self.state.book.labels)})


class ClassesHandler(Handler):
    """``POST /api/classes`` with ``{"create": NAME}`` or ``{"rename": {"from": OLD, "to": NEW}}``."""

    def post(self) -> None:
        body = self.body()
        if "create" in body:
            name = self.state.book.add_class(body["create"])
            self.send({"created": name, "revision": self.state.book.revision})
        elif isinstance(body.get("rename"), dict) and {"from", "to"} <= body["rename"].keys():
            moved = self.state.book.rename_class(body["rename"]["from"], body["rename"]["to"])
            self.send({"renamed": moved, "revision": self.state.book.revision})
        else:
            raise QueryError('give {"create": NAME} or {"rename": {"from": OLD, "to": NEW}}')


class TrainHandler(Handler):
    """``POST /api/train`` with ``{"method": "probe"|"knn", "folds", "split", "k", "bootstrap"}``."""

    async def post(self) -> None:
        request = self.body()
        targets = self.state.book.training_targets()
        progress = self.state.reporter("train")
        prediction = await self.run("train", self.state.session.train, targets, request, progress)
        self.send({**prediction.report, "predictions": prediction.handle})


class PredictionsHandler(Handler):
    """``GET /api/predictions?handle=&bbox=&format=binary|json``: class codes and probabilities per tile."""

    def get(self) -> None:
        session = self.state.session
        prediction = session.prediction(self.get_argument("handle", None))
        positions = session.in_bbox(self.bbox_argument())
        header = {"handle": prediction.handle, "classes": prediction.classes, "count": int(len(positions))}
        if self.get_argument("format", "binary") == "json":
            if len(positions) > MAX_JSON_TILES:
                raise QueryError(f"{len(positions):,} tiles: over {MAX_JSON_TILES:,}, ask for format=binary or a smaller bbox")
            self.send({**header, "predictions": [{
                "id": session.ids[p], "position": int(p), "prediction": prediction.classes[prediction.codes[p]],
                "probability": round(float(prediction.probability[p]), 5),
                "probabilities": {c: round(float(v), 5)
                                  for c, v in zip(prediction.classes, prediction.probabilities[p], strict=True)},
            } for p in positions]})
            return
        self.send_binary(binary_container(header, {
            "position": positions.astype("<u4"), "codes": prediction.codes[positions].astype("<u2"),
            "probability": prediction.probability[positions].astype("<f4")}))


class ProgressHandler(Handler):
    """``GET /api/progress``: the steps of running (and last finished) long work."""

    def get(self) -> None:
        self.send({"tasks": list(self.state.progress.values())})


class QuicklookHandler(Handler):
    """``GET /api/quicklook/ID.png``: the tile's pixels (404 with the reason when its scene is gone)."""

    async def get(self, tile_id: str) -> None:
        position = int(self.state.session.positions_of([tile_id])[0])
        data = await self.run(None, self.state.quicklooks.png, position, tile_id)
        self.set_header("Content-Type", "image/png")
        self.set_header("Cache-Control", "max-age=3600")
        self.finish(data)


class ExportHandler(Handler):
    """``GET /api/export/labels|predictions?format=parquet|geojson[&handle=]``: a file to download."""

    async def get(self, what: str) -> None:
        fmt = self.get_argument("format", "parquet")
        if fmt not in ("parquet", "geojson"):
            raise QueryError(f"format {fmt!r}: choose parquet or geojson")
        name = f"{self.state.session.store.name}-{what}.{fmt}"
        with tempfile.TemporaryDirectory(prefix="ofa-serve-") as tmp:
            out = Path(tmp) / name
            if what == "labels":
                await self.run(None, export_labels, self.state.session, self.state.book.snapshot(), out)
            else:
                prediction = self.state.session.prediction(self.get_argument("handle", None))
                self.state.reporter("export")
                await self.run("export", export_predictions, self.state.session, prediction, self.state.book.snapshot(), out)
            data = out.read_bytes()
        self.set_header("Content-Type", "application/geo+json" if fmt == "geojson" else "application/vnd.apache.parquet")
        self.set_header("Content-Disposition", f'attachment; filename="{name}"')
        self.finish(data)


class NoIcon(Handler):
    """``GET /favicon.ico``: none (a browser asks for it; a 404 would fill the log)."""

    def get(self) -> None:
        self.set_status(204)
        self.finish()


class NotFound(Handler):
    """Any other path: 404 in the API's form."""

    def prepare(self) -> None:
        raise tornado.web.HTTPError(404, reason=f"no such endpoint {self.request.method} {self.request.path}")


def routes(state: ServeState) -> list[Any]:
    """The URL table of the app."""
    pairs: list[tuple[str, type[Handler]]] = [
        (r"/", PageHandler), (r"/api/store", StoreHandler), (r"/api/tiles", TilesHandler), (r"/api/search", SearchHandler),
        (r"/api/labels", LabelsHandler), (r"/api/classes", ClassesHandler), (r"/api/train", TrainHandler),
        (r"/api/predictions", PredictionsHandler), (r"/api/progress", ProgressHandler),
        (r"/api/quicklook/([0-9a-f]{16})\.png", QuicklookHandler), (r"/api/export/(labels|predictions)", ExportHandler),
        (r"/favicon.ico", NoIcon),
    ]
    return [(pattern, handler, {"state": state}) for pattern, handler in pairs]
