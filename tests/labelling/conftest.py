"""Stores and a client for the ``serve`` tests: the bundled sample (real imagery, 16 tiles) and a synthetic vector
store (600 tiles in three dated scenes, two clusters of embeddings), each indexed once and copied per test.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ofa_embed
from ofa_embed.indexes import build
from ofa_embed.labelling import Server
from ofa_embed.sample import sample_scene
from tests.helpers import write_vector_store

SCENES = [("scene_a", 200, 10.0, "2024-05-01", "sentinel2_l1c"), ("scene_b", 200, 12.0, "2024-06-01", "sentinel2_l1c"),
          ("scene_c", 200, 14.0, "2024-07-01", "landsat_oli")]


@pytest.fixture(scope="session")
def built_stores(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve-stores")
    scene = root / "scene.tif"
    shutil.copy(sample_scene(), scene)  # its own copy: one test moves it away
    ofa_embed.extract(scene, root / "sample", model="ofa_test")
    build(root / "sample")
    write_vector_store(root / "vectors", SCENES, dim=16)
    build(root / "vectors")
    return {"sample": root / "sample", "vectors": root / "vectors", "scene": scene}


@pytest.fixture
def sample_store(built_stores, tmp_path) -> Path:
    return Path(shutil.copytree(built_stores["sample"], tmp_path / "sample"))


@pytest.fixture
def vector_store(built_stores, tmp_path) -> Path:
    return Path(shutil.copytree(built_stores["vectors"], tmp_path / "vectors"))


class Client:
    """The API over HTTP, as a script would use it."""

    def __init__(self, url: str) -> None:
        self.url = url

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any, str]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.url + path.lstrip("/"), data=data, method=method,
                                         headers={"Content-Type": "application/json"} if data is not None else {})
        try:
            with urllib.request.urlopen(request, timeout=120) as answer:
                status, kind, payload = answer.status, answer.headers.get("Content-Type", ""), answer.read()
        except urllib.error.HTTPError as error:
            status, kind, payload = error.code, error.headers.get("Content-Type", ""), error.read()
        return status, json.loads(payload) if "json" in kind else payload, kind

    def get(self, path: str) -> Any:
        status, data, _ = self.request("GET", path)
        assert status == 200, data
        return data

    def post(self, path: str, body: Any) -> Any:
        status, data, _ = self.request("POST", path, body)
        assert status == 200, data
        return data


def unpack(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The API's binary container: header and arrays."""
    assert data[:4] == b"OFA1"
    length = int.from_bytes(data[4:8], "little")
    header = json.loads(data[8:8 + length])
    start = 8 + length
    arrays = {a["name"]: np.frombuffer(data, a["dtype"], int(np.prod(a["shape"])), start + a["offset"]).reshape(a["shape"])
              for a in header["arrays"]}
    return header, arrays


@pytest.fixture
def served():
    """Start servers on free loopback ports; all stopped after the test."""
    started: list[Server] = []

    def start(store: Path) -> Client:
        server = Server(store, port=0)
        started.append(server)
        return Client(server.start().url)

    yield start
    for server in started:
        server.stop()
