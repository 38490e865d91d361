"""Tiles across the antimeridian: footprints cut in two, a bbox in RFC 7946 order, filters and SQL that find
them where they are and nowhere else (UTM zone 60 south near Fiji, Antarctic polar stereographic)."""

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine

import ofa_embed
from ofa_embed import indexes
from ofa_embed.sensors import get_modality
from ofa_embed.store import read_parquet
from ofa_embed.store.footprints import footprints_lonlat, wrap_longitude
from tests.helpers import s2_values

FAST = {"model": "ofa_test", "tile_size": 64}


def write_scene(path, crs, left, top, res, width=384, height=128):
    data = s2_values(height, width)
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 13, "dtype": "uint16", "crs": crs,
               "transform": Affine(res, 0, left, 0, -res, top)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = get_modality("sentinel2_l1c").band_names
    return path


SCENES = {  # crs, left, top, pixel size, whether a tile runs across (else tile edges lie on it)
    # zone 60 south: longitude 180 lies about 319 km east of the central meridian (177 E) at 17 S
    "utm60s": ("EPSG:32760", 800_000.0, 8_120_000.0, 100.0, True),
    # Antarctic polar stereographic: longitude 180 is the negative y axis
    "polar": ("EPSG:3031", -16_000.0, -1_500_000.0, 100.0, True),
    # tile edges on the antimeridian itself: corners at +180 that belong to the tiles east of it (-180)
    "polar-edge": ("EPSG:3031", -19_200.0, -1_500_000.0, 100.0, False),
}


@pytest.mark.parametrize("where", SCENES)
def test_tiles_across_the_antimeridian_are_cut_there_and_found_only_there(tmp_path, where):
    crs, left, top, res, across_expected = SCENES[where]
    scene = write_scene(tmp_path / f"S2A_MSIL1C_20200101T000000_{where}.tif", crs, left, top, res)
    store = tmp_path / "store"
    ofa_embed.extract(scene, store, **FAST)
    table = read_parquet(next(store.glob("*.parquet")), ["geometry", "xmin", "ymin", "xmax", "ymax"])
    shapes = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    xmin, xmax = table.column("xmin").to_numpy(), table.column("xmax").to_numpy()
    crossing = xmin > xmax
    assert (0 < crossing.sum() < len(shapes)) if across_expected else not crossing.any()
    for shape, across in zip(shapes, crossing, strict=True):
        # every footprint is as wide as a tile (well under a degree here), never a band round the globe
        parts = shape.geoms if across else [shape]
        assert shape.geom_type == ("MultiPolygon" if across else "Polygon")
        assert sum(p.bounds[2] - p.bounds[0] for p in parts) < 1.0
        assert all(-180 <= p.bounds[0] and p.bounds[2] <= 180 for p in parts)
    # the Gulf of Guinea holds none of them: DuckDB on the geometry, and the search filters on the bbox
    guinea = "POLYGON((-5 -5, 5 -5, 5 5, -5 5, -5 -5))"
    found = ofa_embed.sql(store, f"SELECT count(*) AS n FROM embeddings WHERE ST_Intersects(geometry, "
                                 f"ST_GeomFromText('{guinea}'))")
    assert found.n[0] == 0
    indexes.build(store)
    lat = float(np.mean(table.column("ymin").to_numpy()))
    first = ofa_embed.sql(store, "SELECT id FROM embeddings LIMIT 1").id[0]
    assert len(ofa_embed.search(store, like_id=first, k=50, bbox=(-5, -5, 5, 5))) == 0
    # a bbox across the antimeridian, and one on either side of it, find the tiles that cross
    across = ofa_embed.search(store, like_id=first, k=500, bbox=(179.99, lat - 1, -179.99, lat + 1))
    east = ofa_embed.search(store, like_id=first, k=500, bbox=(-180, lat - 1, -179.999, lat + 1))
    west = ofa_embed.search(store, like_id=first, k=500, bbox=(179.999, lat - 1, 180, lat + 1))
    east_ids = set(ofa_embed.sql(store, "SELECT id FROM embeddings WHERE xmin > xmax OR xmin = -180").id)
    west_ids = set(ofa_embed.sql(store, "SELECT id FROM embeddings WHERE xmin > xmax OR xmax = 180").id)
    assert east_ids and west_ids
    assert east_ids | west_ids <= set(across.id) and east_ids <= set(east.id) and west_ids <= set(west.id)
    ids = east_ids
    on_side = ofa_embed.sql(store, "SELECT count(*) AS n FROM embeddings WHERE ST_Intersects(geometry, "
                                   f"ST_GeomFromText('POLYGON((-180 {lat - 1}, -179.999 {lat - 1}, -179.999 {lat + 1}, "
                                   f"-180 {lat + 1}, -180 {lat - 1}))'))")
    assert on_side.n[0] >= len(ids)


def test_longitudes_past_180_wrap_and_a_tile_round_a_pole_is_a_cap():
    assert wrap_longitude(np.array([181.0, -181.0, 180.0, -180.0, 540.0])).tolist() == [-179.0, 179.0, 180.0, -180.0,
                                                                                         180.0]
    corners = np.array([
        [[181, 1], [181, 0], [182, 0], [182, 1]],  # an EPSG:4326 scene past 180: plain tile at -179..-178
        [[0, -85], [90, -85], [180, -85], [-90, -85]],  # round the south pole
    ], float)
    shapes = footprints_lonlat(corners)
    assert shapes.geometry[0].bounds == (-179.0, 0.0, -178.0, 1.0) and not shapes.crossing.any()
    assert shapes.geometry[1].bounds == (-180.0, -90.0, 180.0, -85.0)



def test_the_map_draws_a_cut_tile_whole_across_180():
    from ofa_embed.mapview.layers import corners_of

    cut = shapely.MultiPolygon([shapely.box(179.9, -17.1, 180, -17), shapely.box(-180, -17.1, -179.95, -17)])
    corners = corners_of(np.array([shapely.box(10, 0, 11, 1), cut], dtype=object))
    np.testing.assert_allclose(corners[1].min(0), [179.9, -17.1])
    np.testing.assert_allclose(corners[1].max(0), [180.05, -17.0])
