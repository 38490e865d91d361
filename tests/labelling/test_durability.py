"""Labels survive: several clients writing at once, and the server SIGKILLed in the middle of writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from ofa_embed.labelling.labelbook import LABELS_DIR, LABELS_FILE, LabelBook
from ofa_embed.store import read_tiles
from tests.labelling.conftest import Client


def test_clients_writing_at_once(vector_store, served):
    client = served(vector_store)
    ids = read_tiles(vector_store)["id"].tolist()
    writers, rounds = 8, 20
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            own = Client(client.url)
            for r in range(rounds):
                # each writer its own tiles, and every writer also relabels a shared tile
                own.post("/api/labels", {"labels": [{"id": ids[w * rounds + r], "class": f"c{w % 3}", "positive": r % 2 == 0},
                                                    {"id": ids[599], "class": "shared", "positive": True}]})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    on_disk = json.loads((vector_store / LABELS_DIR / LABELS_FILE).read_text())
    assert on_disk["revision"] == writers * rounds
    labels = {entry["id"]: entry for entry in on_disk["labels"]}
    assert len(labels) == writers * rounds + 1
    for w in range(writers):
        for r in range(rounds):
            entry = labels[ids[w * rounds + r]]
            assert (entry["class"], entry["positive"]) == (f"c{w % 3}", r % 2 == 0)
    assert {c["name"] for c in on_disk["classes"]} == {"c0", "c1", "c2", "shared"}
    assert client.get("/api/labels")["labels"] == [{**e, "position": ids.index(e["id"])} for e in on_disk["labels"]]
    assert not [p for p in (vector_store / LABELS_DIR).iterdir() if p.name != LABELS_FILE]  # no temporary file left


def _start(store) -> tuple[subprocess.Popen, str]:
    code = ("import sys; from ofa_embed.labelling import serve\n"
            "serve(sys.argv[1], port=0, ready=lambda info: print(info.url, flush=True))")
    process = subprocess.Popen([sys.executable, "-c", code, str(store)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), url
    return process, url


def _write(url: str, ids: list[str], w: int, klass: str, stop: threading.Event, acknowledged: dict) -> None:
    """Writer ``w`` labels its own 200 tiles, each once: what is on disk is exactly what was acknowledged."""
    client = Client(url)
    for n in range(0, 200, 2):
        if stop.is_set():
            return
        batch = [{"id": ids[w * 200 + n + j], "class": klass, "positive": (n + j + w) % 2 == 0} for j in range(2)]
        try:
            client.post("/api/labels", {"labels": batch})
        except Exception:  # noqa: BLE001 - the server died under this request: it was never acknowledged
            return
        acknowledged.update({b["id"]: (b["class"], b["positive"]) for b in batch})


@pytest.mark.slow
def test_a_killed_server_keeps_every_acknowledged_label(vector_store):
    ids = read_tiles(vector_store)["id"].tolist()
    for round_ in range(3):
        process, url = _start(vector_store)
        acknowledged: dict[str, tuple[str, bool]] = {}
        stop = threading.Event()

        writers = [threading.Thread(target=_write, args=(url, ids, w, f"r{round_}", stop, acknowledged)) for w in range(3)]
        for thread in writers:
            thread.start()
        time.sleep(0.3 + 0.2 * round_)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        stop.set()
        for thread in writers:
            thread.join()
        assert 10 < len(acknowledged) < 600, len(acknowledged)  # killed in the middle of the writes
        book = LabelBook(vector_store)  # the file parses: never half-written
        kept = {tile: (book.labels[tile]["class"], book.labels[tile]["positive"]) for tile in acknowledged if tile in book.labels}
        assert kept == acknowledged
        restarted, url = _start(vector_store)
        try:
            served = {e["id"] for e in Client(url).get("/api/labels")["labels"]}
            assert set(acknowledged) <= served
        finally:
            restarted.kill()
            restarted.wait()
