"""``ofa-embed serve``'s JSON API against a server on loopback: store, tiles, search, labels, training, exports,
quicklooks, and bad requests answered with one line."""

from __future__ import annotations

import io
import json
import urllib.error

import geopandas as gpd
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import ofa_embed
from ofa_embed.cli.main import app
from ofa_embed.labelling import Server, open_warning
from ofa_embed.labelling.labelbook import LABELS_DIR, LABELS_FILE
from ofa_embed.store import read_embeddings, read_tiles, store_files
from tests.labelling.conftest import Client, unpack


def test_store_and_tiles(vector_store, served):
    client = served(vector_store)
    store = client.get("/api/store")
    assert store["count"] == 600 and store["modalities"] == ["landsat_oli", "sentinel2_l1c"] and store["modality"] is None
    assert store["model"]["weights_hash"] == "feedfacefeedface" and store["model"]["dimension"] == 16
    assert store["bbox"] == pytest.approx([10.0, 0.0, 16.0, 0.01]) and store["index"] == "flat"
    assert store["start"].startswith("2024-05-01") and store["end"].startswith("2024-07-01")
    header, arrays = unpack(client.get("/api/tiles"))
    tiles = read_tiles(vector_store)
    assert header["count"] == 600 and arrays["corners"].shape == (600, 4, 2) and arrays["colors"].shape == (600, 3)
    assert [bytes(b).hex() for b in arrays["ids"]] == tiles["id"].tolist()
    assert (arrays["position"] == np.arange(600)).all()
    assert [header["scenes"][c] for c in arrays["scene"]] == tiles["scene"].tolist()
    # a bbox: only the tiles meeting it, in binary and JSON alike
    header, arrays = unpack(client.get("/api/tiles?bbox=12.0,-1,12.5,1"))
    listed = client.get("/api/tiles?format=json&bbox=12.0,-1,12.5,1")["tiles"]
    assert 50 <= header["count"] == len(listed) <= 52
    assert [t["position"] for t in listed] == arrays["position"].tolist()
    assert all(t["scene"] == "scene_b" for t in listed)


def test_search_is_the_library_search(vector_store, served):
    client = served(vector_store)
    ids = read_tiles(vector_store)["id"].tolist()
    like, unlike = [ids[3], ids[250]], [ids[500]]
    hits = client.post("/api/search", {"like_ids": like, "unlike_ids": unlike, "k": 20})["hits"]
    expected = ofa_embed.search(vector_store, like_id=like, unlike_id=unlike, k=20)
    assert [h["id"] for h in hits] == expected["id"].tolist()
    np.testing.assert_allclose([h["similarity"] for h in hits], expected["similarity"], atol=1e-5)
    assert [h["rank"] for h in hits] == list(range(1, 21))
    # filters: the view's bbox, a date range, a modality
    boxed = client.post("/api/search", {"like_ids": like, "k": 50, "bbox": [12.0, -1, 13.0, 1]})["hits"]
    assert boxed and all(h["scene"] == "scene_b" for h in boxed)
    dated = client.post("/api/search", {"like_ids": like, "k": 50, "start": "2024-06-15", "end": "2024-12-31"})["hits"]
    assert dated and all(h["scene"] == "scene_c" for h in dated)
    landsat = client.post("/api/search", {"like_ids": like, "k": 5, "modality": "landsat_oli"})["hits"]
    assert all(h["scene"] == "scene_c" for h in landsat)
    fresh = client.post("/api/search", {"like_ids": like, "unlike_ids": unlike, "k": 5, "exclude_labelled": True})["hits"]
    assert not {h["id"] for h in fresh} & {*like, *unlike} and len(fresh) == 5


def test_labels_classes_and_a_restart(vector_store, served):
    client = served(vector_store)
    ids = read_tiles(vector_store)["id"].tolist()
    assert client.get("/api/labels") == {"version": 1, "revision": 0, "classes": [], "labels": []}
    assert client.post("/api/classes", {"create": "forest"})["created"] == "forest"
    answer = client.post("/api/labels", {"labels": [{"id": ids[0], "class": "forest", "positive": True},
                                                    {"id": ids[1], "class": "forest", "positive": False},
                                                    {"id": ids[2], "class": "water"}]})
    assert answer == {"revision": 2, "applied": 3, "count": 3}
    client.post("/api/labels", {"labels": [{"id": ids[2], "delete": True}, {"id": ids[1], "class": "water"}]})
    client.post("/api/classes", {"rename": {"from": "forest", "to": "woodland"}})
    book = client.get("/api/labels")
    assert [c["name"] for c in book["classes"]] == ["water", "woodland"]
    assert [(entry["id"], entry["class"], entry["positive"], entry["position"]) for entry in book["labels"]] == [
        (ids[0], "woodland", True, 0), (ids[1], "water", True, 1)]
    on_disk = json.loads((vector_store / LABELS_DIR / LABELS_FILE).read_text())
    assert on_disk["revision"] == book["revision"] and len(on_disk["labels"]) == 2
    assert len(store_files(vector_store)) == 3  # the labels folder is never a store file
    again = Client(Server(vector_store, port=0).start().url)  # a second server: what a restart sees
    assert again.get("/api/labels") == {k: v for k, v in client.get("/api/labels").items()}


def test_train_predict_and_export(vector_store, served, tmp_path):
    client = served(vector_store)
    tiles = read_tiles(vector_store)
    embeddings = read_embeddings(vector_store, np.arange(600))
    kind = np.where(embeddings[:, 0] > np.median(embeddings[:, 0]), "high", "low")
    chosen = np.arange(0, 600, 4)
    labels = [{"id": tiles.id[i], "class": "high", "positive": bool(kind[i] == "high")} for i in chosen]
    client.post("/api/labels", {"labels": labels})
    report = client.post("/api/train", {"bootstrap": 50})
    assert report["split"]["kind"] == "spatial-block" and report["labels"]["tiles"] == len(chosen)
    assert report["classes"] == ["background", "high"] and report["method"] == "linear probe"
    assert report["evaluation"]["metrics"]["accuracy"]["value"] > 0.8
    header, arrays = unpack(client.get(f"/api/predictions?handle={report['predictions']}"))
    assert header["classes"] == ["background", "high"] and len(arrays["codes"]) == 600
    predicted = np.asarray(header["classes"])[arrays["codes"]]
    assert (predicted == np.where(kind == "high", "high", "background")).mean() > 0.8
    assert ((arrays["probability"] >= 0.5) & (arrays["probability"] <= 1)).all()
    listed = client.get("/api/predictions?format=json&bbox=10,-1,10.045,1")["predictions"]
    assert len(listed) == 5 and set(listed[0]["probabilities"]) == {"background", "high"}
    knn = client.post("/api/train", {"method": "knn", "k": 5, "bootstrap": 20, "split": "random"})
    assert knn["method"].startswith("kNN") and knn["predictions"] == "p2"
    # exports: labels in the format probe --labels reads, predictions as GeoParquet
    status, data, kind_header = client.request("GET", "/api/export/labels?format=parquet")
    assert status == 200 and "parquet" in kind_header
    (tmp_path / "labels.parquet").write_bytes(data)
    exported = gpd.read_parquet(tmp_path / "labels.parquet")
    assert len(exported) == len(chosen) and set(exported.columns) >= {"id", "class", "label_class", "positive", "geometry"}
    again = ofa_embed.probe(vector_store, tmp_path / "labels.parquet", "class", n_boot=10)
    assert len(again.labels.tiles) == len(chosen)
    geojson = client.request("GET", "/api/export/labels?format=geojson")[1]
    assert len(geojson["features"]) == len(chosen)
    status, data, _ = client.request("GET", "/api/export/predictions?format=parquet&handle=p1")
    (tmp_path / "predictions.parquet").write_bytes(data)
    frame = gpd.read_parquet(tmp_path / "predictions.parquet")
    assert len(frame) == 600 and {"prediction", "probability", "prob_high", "label"} <= set(frame.columns)
    assert frame.loc[frame["label"].notna()].shape[0] == len(chosen)


def test_quicklooks_and_a_scene_moved_away(sample_store, built_stores, served):
    client = served(sample_store)
    tiles = read_tiles(sample_store)
    status, data, kind = client.request("GET", f"/api/quicklook/{tiles.id[0]}.png")
    image = Image.open(io.BytesIO(data))
    assert status == 200 and kind == "image/png" and image.size == (128, 128) and image.mode == "RGBA"
    pixels = np.asarray(image)
    assert pixels[..., 3].min() == 255 and pixels[..., :3].std() > 5  # the tile's pixels, not a flat colour
    assert (sample_store / "_quicklooks" / f"{tiles.id[0]}.png").exists()
    assert client.get("/api/store")["scenes_missing"] == []
    scene = built_stores["scene"]
    moved = scene.with_name("moved.tif")
    scene.rename(moved)
    try:
        other = served(sample_store)
        missing = other.get("/api/store")["scenes_missing"]
        assert [m["scene"] for m in missing] == ["scene"] and missing[0]["path"] == str(scene)
        status, error, _ = other.request("GET", f"/api/quicklook/{tiles.id[1]}.png")
        assert status == 404 and "not at its recorded path" in error["error"]
        assert other.request("GET", f"/api/quicklook/{tiles.id[0]}.png")[0] == 200  # cached on disk before
    finally:
        moved.rename(scene)


BAD = [
    ("POST", "/api/search", b"{not json", "not JSON"),
    ("POST", "/api/search", b"[1, 2]", "JSON object"),
    ("POST", "/api/search", {"like_ids": []}, "like_ids is empty"),
    ("POST", "/api/search", {"like_ids": ["0123456789abcdef"]}, "no such tile"),
    ("POST", "/api/search", {"like_ids": ["xyz"]}, "not a tile id"),
    ("POST", "/api/search", {"like_ids": "ID", "k": 5}, "must be lists"),
    ("POST", "/api/search", {"like_ids": ["ID0"], "k": 0}, "k 0"),
    ("POST", "/api/search", {"like_ids": ["ID0"], "bbox": [10, 95, 11, 96]}, "latitude outside"),
    ("POST", "/api/search", {"like_ids": ["ID0"], "bbox": [1, 2]}, "bbox"),
    ("POST", "/api/search", {"like_ids": ["ID0"], "start": "yesterday"}, "ISO 8601"),
    ("POST", "/api/search", {"like_ids": ["ID0"], "start": "2025-01-01", "end": "2024-01-01"}, "not before end"),
    ("POST", "/api/search", {"like_ids": ["ID0"], "modality": "rgb"}, "the store holds"),
    ("POST", "/api/search", {"like_ids": ["ID0"], "unlike_ids": ["ID0"]}, "cancel"),
    ("POST", "/api/labels", {"labels": "x"}, '{"labels"'),
    ("POST", "/api/labels", {"labels": [{"class": "a"}]}, "tile 'id'"),
    ("POST", "/api/labels", {"labels": [{"id": "ID0", "class": ""}]}, "non-empty"),
    ("POST", "/api/labels", {"labels": [{"id": "ID0", "class": "background"}]}, "reserved"),
    ("POST", "/api/labels", {"labels": [{"id": "ID0", "class": "a", "positive": "yes"}]}, "true or false"),
    ("POST", "/api/classes", {"rename": {"from": "nothing", "to": "b"}}, "no class 'nothing'"),
    ("POST", "/api/classes", {"delete": "a"}, "create"),
    ("POST", "/api/train", {}, "no labels yet"),
    ("GET", "/api/predictions", None, "nothing trained yet"),
    ("GET", "/api/tiles?bbox=1,2,3", None, "4 numbers"),
    ("GET", "/api/export/labels?format=shp", None, "parquet or geojson"),
    ("GET", "/api/quicklook/0123456789abcdef.png", None, "no such tile"),
    ("GET", "/api/nothing", None, "no such endpoint"),
    ("DELETE", "/api/labels", None, "Method Not Allowed"),
]


def test_bad_requests_get_one_line(vector_store, served):
    client = served(vector_store)
    first = read_tiles(vector_store)["id"][0]
    for method, path, body, message in BAD:
        if isinstance(body, dict):
            body = json.loads(json.dumps(body).replace("ID0", first))
        raw = body if isinstance(body, bytes) else None
        status, data, kind = client.request(method, path, None if raw is not None else body, raw=raw)
        assert 400 <= status < 500, (method, path, status, data)
        assert "json" in kind and set(data) == {"error"}, (path, data)
        assert message in data["error"] and "\n" not in data["error"] and "Traceback" not in data["error"], (path, data)
    # one label for training: two classes are needed
    client.post("/api/labels", {"labels": [{"id": first, "class": "a"}]})
    status, data, _ = client.request("POST", "/api/train", {})
    assert status == 400 and "two classes" in data["error"]
    status, data, _ = client.request("POST", "/api/train", {"method": "svm"})
    assert status == 400 and "choose one of probe, knn" in data["error"]
    try:  # a body over 16 MiB: tornado closes the connection before reading it (no 413 is sent)
        status = client.request("POST", "/api/labels", raw=b"{" + b" " * (17 * 2**20) + b"}")[0]
    except urllib.error.URLError:
        status = 413
    assert status == 413 and client.get("/api/labels")["revision"] == 1  # and the server goes on


def test_hosts_and_the_cli(tmp_path):
    assert open_warning("127.0.0.1") is None and open_warning("localhost") is None and open_warning("::1") is None
    assert "anyone" in open_warning("0.0.0.0") and "anyone" in open_warning("192.168.1.5")
    result = CliRunner().invoke(app, ["serve", str(tmp_path / "nowhere"), "--port", "0"])
    assert result.exit_code == 1 and "no such store" in result.output
    result = CliRunner().invoke(app, ["serve", str(tmp_path / "nowhere"), "--host", "0.0.0.0", "--port", "0"])
    assert "anyone who can reach this machine" in " ".join(result.output.split())
