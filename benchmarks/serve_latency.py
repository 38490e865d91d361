"""Latency of ``ofa-embed serve`` through its API, and the page's load time, on large synthetic stores.

    python benchmarks/serve_latency.py --rows 100000            # about 1 min
    python benchmarks/serve_latency.py --rows 1000000           # about 6 min, 3 GB of disk in a temporary folder

A store of ``--rows`` tiles of dimension ``--dim`` (192, the shipped model's) is written with
``ofa_embed.store.write_scene`` in files of 50,000 rows: each file a 250 x 200 grid of 0.01 degree tiles, files
side by side, embeddings drawn around 40 cluster centres (so that searches and probes have something to find),
dated a month apart. Then a flat index (exact search: the slowest kind ``auto`` would pick, and quick to build),
and the server on loopback. Measured through HTTP as the page does it:

- start: ``Server(store)`` (tiles read, colours fitted, index opened), and the index build before it;
- ``GET /api/tiles`` (every tile, binary) and its bytes;
- ``POST /api/search``: 3 positives and 2 negatives, k = 50, unfiltered and within a bbox of 1 % of the store,
  20 queries each (median and worst);
- ``POST /api/train``: 200 labels of two classes, the linear probe with ``ofa-embed probe``'s defaults (spatial
  blocks, 5 folds, 1,000 bootstrap replicates), then every tile predicted; and ``GET /api/predictions``;
- the page in headless Chromium (where installed): navigation to tiles drawn, and the page's own figure
  (store, tiles, labels fetched, decoded, first draw).

Prints one line per figure and a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.devtools import BROWSER, Browser  # noqa: E402
from ofa_embed.indexes import build  # noqa: E402
from ofa_embed.labelling import Server  # noqa: E402
from ofa_embed.store import TileRecords, write_scene  # noqa: E402
from tests.labelling.conftest import Client  # noqa: E402

FILE_ROWS, GRID = 50_000, (250, 200)


def write_store(store: Path, rows: int, dim: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim)).astype(np.float32)
    for f in range(int(np.ceil(rows / FILE_ROWS))):
        n = min(FILE_ROWS, rows - f * FILE_ROWS)
        r, c = np.divmod(np.arange(n), GRID[0])
        west, north = 10.0 + (f % 10) * GRID[0] * 0.01, 40.0 - (f // 10) * GRID[1] * 0.01
        lon0, lat0 = west + 0.01 * c, north - 0.01 * r
        corners = np.stack([np.stack([lon0, lat0], 1), np.stack([lon0 + 0.01, lat0], 1),
                            np.stack([lon0 + 0.01, lat0 - 0.01], 1), np.stack([lon0, lat0 - 0.01], 1)], 1)
        # neighbouring tiles share a cluster more often than not: blocks of 5 x 5 tiles
        cluster = (rng.integers(0, 40, (GRID[1] // 5 + 1, GRID[0] // 5 + 1)))[r // 5, c // 5]
        vectors = centres[cluster] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
        records = TileRecords(rows=r * 16, cols=c * 16, heights=np.full(n, 16), widths=np.full(n, 16), padded=np.zeros(n, bool),
                              valid_fraction=np.ones(n), lonlat=corners, embeddings=vectors.astype(np.float32))
        acquired = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=30 * f)
        write_scene(store, f"scene_{f:03d}", modality="sentinel2_l1c", acquired=acquired, tile_size=16, missing_bands=[],
                    records=records,
                    metadata={"model": {"weights_hash": "benchbenchbench0", "weights_source": "synthetic"}},
                    emb_metadata={"dimension": dim, "weights_hash": "benchbenchbench0"})


def timed(call, repeats: int = 1) -> tuple[list[float], object]:
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - start)
    return seconds, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=192)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    out: dict[str, object] = {"rows": args.rows, "dim": args.dim}
    with tempfile.TemporaryDirectory(prefix="ofa-serve-bench-") as tmp:
        store = Path(tmp) / "store"
        (seconds,), _ = timed(lambda: write_store(store, args.rows, args.dim))
        print(f"store written: {args.rows:,} rows in {seconds:.1f} s")
        (out["index_build_s"],), _ = timed(lambda: build(store, kind="flat"))
        print(f"flat index built in {out['index_build_s']:.1f} s")
        (out["start_s"],), server = timed(lambda: Server(store, port=0))
        info = server.start()  # type: ignore[attr-defined]
        print(f"server start (tiles, colours, index): {out['start_s']:.1f} s")
        client = Client(info.url)
        (tiles_s,), tiles = timed(lambda: client.get("/api/tiles"))
        out["tiles_s"], out["tiles_mib"] = tiles_s, len(tiles) / 2**20  # type: ignore[arg-type]
        print(f"GET /api/tiles: {tiles_s * 1000:.0f} ms, {out['tiles_mib']:.1f} MiB")
        rng = np.random.default_rng(1)
        ids = client.get("/api/tiles?format=json&bbox=10,39.9,10.5,40")["tiles"]
        ids = [t["id"] for t in ids]
        store_info = client.get("/api/store")
        w, s, e, n = store_info["bbox"]

        def search(bbox: list[float] | None) -> float:
            pick = rng.choice(len(ids), 5, replace=False)
            body = {"like_ids": [ids[i] for i in pick[:3]], "unlike_ids": [ids[i] for i in pick[3:]], "k": 50}
            if bbox:
                body["bbox"] = bbox
            start = time.perf_counter()
            hits = client.post("/api/search", body)["hits"]
            assert hits
            return time.perf_counter() - start

        for name, bbox in (("search", None), ("search_bbox_1pct", [w, s, w + (e - w) / 10, s + (n - s) / 10])):
            runs = [search(bbox) for _ in range(args.queries)]
            out[name] = {"p50_ms": 1000 * statistics.median(runs), "max_ms": 1000 * max(runs)}
            print(f"POST /api/search ({name}): p50 {out[name]['p50_ms']:.1f} ms, max {out[name]['max_ms']:.1f} ms")  # type: ignore[index]
        labelled = client.get("/api/tiles?format=json&bbox=10,38.0,12.5,40")["tiles"]
        chosen = rng.choice(len(labelled), 200, replace=False)
        hits = client.post("/api/search", {"like_ids": [labelled[chosen[0]]["id"]], "k": 100})["hits"]
        positives = {h["id"] for h in hits}
        labels = [{"id": labelled[i]["id"], "class": "target", "positive": labelled[i]["id"] in positives} for i in chosen]
        labels += [{"id": h["id"], "class": "target", "positive": True} for h in hits[:100]]
        client.post("/api/labels", {"labels": labels})
        (train_s,), report = timed(lambda: client.post("/api/train", {}))
        out["train_s"], out["train_labels"] = train_s, report["labels"]["tiles"]  # type: ignore[index]
        out["train_split"] = report["split"]["description"]  # type: ignore[index]
        print(f"POST /api/train ({report['labels']['tiles']} labels, {report['split']['description']}): {train_s:.1f} s, "  # type: ignore[index]
              f"accuracy {report['evaluation']['metrics']['accuracy']['value']:.3f}")  # type: ignore[index]
        (pred_s,), predictions = timed(lambda: client.get(f"/api/predictions?handle={report['predictions']}"))  # type: ignore[index]
        out["predictions_s"], out["predictions_mib"] = pred_s, len(predictions) / 2**20  # type: ignore[arg-type]
        print(f"GET /api/predictions: {pred_s * 1000:.0f} ms, {out['predictions_mib']:.1f} MiB")
        if BROWSER and not args.no_browser:
            with Browser(1280, 800) as browser:
                start = time.perf_counter()
                browser.navigate(info.url)
                browser.wait_for("document.body.dataset.ready === '1'", timeout=600)
                out["page_load_s"] = time.perf_counter() - start
                out["page_own_ms"] = float(browser.evaluate("document.body.dataset.loadMs"))
            print(f"page in Chromium: ready after {out['page_load_s']:.1f} s (the page's own figure {out['page_own_ms']:.0f} ms)")
        server.stop()  # type: ignore[attr-defined]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
