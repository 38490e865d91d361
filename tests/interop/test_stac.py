"""``ofa-embed stac``: the Collection and Items read back with pystac, ``emb:`` fields from the published list."""

from __future__ import annotations

import json

import pystac
import pytest
from typer.testing import CliRunner

import ofa_embed
from ofa_embed.cli.main import app
from ofa_embed.interop.stac import EMB_FIELDS, EMB_LINKS, EMB_SCHEMA, write_stac
from ofa_embed.store import describe_store
from tests.interop import fixtures

REQUIRED_COLLECTION = ("emb:type", "emb:dimensions", "data_type")


def _emb_keys(document: dict) -> set[str]:
    return {k for k in document if k.startswith("emb:")} | {k for k in document.get("properties", {}) if k.startswith("emb:")}


def _validate_core(out):
    """Every document against the STAC core JSON schemas pystac ships (offline: the extensions' schemas cannot be
    fetched here, so ``emb:`` names are checked against the extension's published list instead)."""
    from pystac.validation.local_validator import LocalValidator

    validator = LocalValidator()
    for path in out.rglob("*.json"):
        document = json.loads(path.read_text())
        check = validator.collection_validator if document["type"] == "Collection" else validator.item_validator
        errors = [e.message for e in check(document["stac_version"]).iter_errors(document)]
        assert not errors, (path.name, errors[:3])


def _check(out, store):
    _validate_core(out)
    collection = pystac.Collection.from_file(str(out / "collection.json"))
    raw = json.loads((out / "collection.json").read_text())
    assert EMB_SCHEMA in collection.stac_extensions
    assert all(k in raw for k in REQUIRED_COLLECTION), raw.keys()
    assert raw["emb:type"] in ("pixel", "chip") and raw["emb:dimensions"] == describe_store(store)[0].dimension
    assert _emb_keys(raw) <= set(EMB_FIELDS)
    rels = {link["rel"] for link in raw["links"]}
    assert {"emb:model", "emb:source-data"} <= rels and {r for r in rels if r.startswith("emb:")} <= set(EMB_LINKS)
    items = list(collection.get_items())
    assert len(items) == len(describe_store(store))
    for item in items:
        document = item.to_dict()
        assert _emb_keys(document) <= set(EMB_FIELDS)
        assert document["properties"]["emb:quantization"]["method"]
        assert pystac.Item.from_dict(document).to_dict() == document  # core structure round-trips
        assert item.assets["embeddings"].href.endswith(".parquet")
    return raw, items


def test_stac_of_an_imported_product(tmp_path):
    source = fixtures.write_aef(tmp_path / "aef", size=64)
    store = ofa_embed.import_embeddings([source], tmp_path / "store", "aef").store
    report = write_stac(store, tmp_path / "stac")
    raw, items = _check(tmp_path / "stac", tmp_path / "store")
    assert raw["extent"]["spatial"]["bbox"][0][0] < -75
    assert raw["license"] == "CC-BY-4.0" and raw["emb:temporal_resolution"] == "annual"
    assert items[0].properties["emb:quantization"]["method"] == "sqrt_scale"
    assert raw["emb:chip_layout"]["chip_size"] == [32, 32] and raw["gsd"] == 320.0
    assert report.collection.endswith("collection.json")


def test_stac_of_an_extracted_store_from_the_cli(tmp_path, s2_tif):
    ofa_embed.extract([s2_tif], tmp_path / "store", model="ofa_test", tile_size=128)
    result = CliRunner().invoke(app, ["stac", str(tmp_path / "store"), "--out", str(tmp_path / "stac")])
    assert result.exit_code == 0, result.output
    raw, items = _check(tmp_path / "stac", tmp_path / "store")
    assert items[0].properties["emb:quantization"] == {"method": "none", "original_dtype": "float32"}
    assert raw["emb:chip_layout"]["chip_size"] == [128, 128]


def test_an_empty_store_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["stac", str(tmp_path / "empty"), "--out", str(tmp_path / "stac")])
    assert result.exit_code == 1 and "empty" in result.output


@pytest.mark.parametrize("name", ["majortom", "clay"])
def test_stac_of_chip_products(tmp_path, name):
    source = fixtures.write_majortom(tmp_path / "mt") if name == "majortom" else fixtures.write_clay(tmp_path / "c.parquet")
    ofa_embed.import_embeddings([source], tmp_path / "store", name)
    write_stac(tmp_path / "store", tmp_path / "stac")
    raw, _ = _check(tmp_path / "stac", tmp_path / "store")
    assert raw["emb:type"] == "chip"


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_the_store_footer_says_what_the_stac_items_say(tmp_path, s2_tif, dtype):
    from ofa_embed.store import read_metadata

    ofa_embed.extract([s2_tif], tmp_path / "store", model="ofa_test", tile_size=128, embedding_dtype=dtype)
    raw, items = _check(write_stac(tmp_path / "store", tmp_path / "stac") and tmp_path / "stac", tmp_path / "store")
    footer = read_metadata(describe_store(tmp_path / "store")[0].path)["emb"]
    assert footer["version"] == "0.2.0"
    assert items[0].properties["emb:quantization"] == footer["emb:quantization"]
    assert {k: raw[k] for k in ("emb:type", "emb:dimensions", "data_type")} == {
        k: footer[k] for k in ("emb:type", "emb:dimensions", "data_type")}
    assert footer["emb:quantization"]["method"] == ("linear" if dtype == "int8" else "none")


def test_embedding_fields_get_items_of_their_own_with_projection_and_raster_fields(tmp_path, s2_tif):
    ofa_embed.extract([s2_tif], tmp_path / "store", model="ofa_test", tile_size=64, dense=True)
    write_stac(tmp_path / "store", tmp_path / "stac")
    documents = [json.loads(p.read_text()) for p in (tmp_path / "stac").rglob("*.json") if p.name != "collection.json"]
    fields = [d for d in documents if d["properties"].get("emb:type") == "pixel"]
    assert len(fields) == 1, [d["id"] for d in documents]
    field = fields[0]
    assert field["properties"]["proj:code"] == "EPSG:32633" and len(field["properties"]["proj:transform"]) >= 6
    assert field["properties"]["emb:dimensions"] == 32
    assert any(asset["href"].endswith(".tif") for asset in field["assets"].values())


def test_a_scene_without_an_acquisition_time_gets_valid_items_that_say_so(tmp_path):
    from ofa_embed.sample import sample_scene

    ofa_embed.extract([sample_scene()], tmp_path / "store", model="ofa_test", tile_size=128)
    _, items = _check(write_stac(tmp_path / "store", tmp_path / "stac") and tmp_path / "stac", tmp_path / "store")
    assert items[0].datetime is not None and "acquisition time unknown" in items[0].properties["description"]
