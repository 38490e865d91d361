"""Tile footprints in longitude/latitude: polygons, and their bbox covering, right across the antimeridian.

A tile whose corners straddle longitude ±180 (UTM zone 60 or 1 near Fiji, polar stereographic grids) is
cut at the antimeridian into a two-part ``MultiPolygon``, as RFC 7946 (section 3.1.9) asks of GeoJSON, so
that ``ST_Intersects`` and every GIS see it where it is instead of as a band 360° wide around the globe.
Its bbox follows RFC 7946 section 5.2: ``xmin`` is its western edge and ``xmax`` its eastern one, so
``xmin > xmax`` for a tile that crosses (GeoParquet's bbox column metadata follows RFC 7946 too). A tile
that contains a pole becomes the cap from its lowest (or highest) latitude to the pole, all longitudes.
Longitudes are normalised to -180..180 first (a scene in EPSG:4326 running past 180°).
"""

from __future__ import annotations

import numpy as np
import shapely

__all__ = ["EDGE_TOLERANCE", "Footprints", "crosses_antimeridian", "footprints_lonlat", "wrap_longitude"]

# degrees: a corner this close past ±180 lies on the antimeridian (projection round-off), not across it
EDGE_TOLERANCE = 1e-9


def wrap_longitude(lon: np.ndarray) -> np.ndarray:
    """Longitudes in -180..180 (180 stays 180)."""
    lon = np.asarray(lon, np.float64)
    wrapped = (lon + 180.0) % 360.0 - 180.0
    return np.where(np.abs(lon) <= 180.0, lon, np.where((wrapped == -180.0) & (lon > 0), 180.0, wrapped))


def crosses_antimeridian(xmin: np.ndarray, xmax: np.ndarray) -> np.ndarray:
    """Which bboxes (RFC 7946 order) run across the antimeridian: their west edge lies east of their east edge."""
    return np.asarray(xmin) > np.asarray(xmax)


class Footprints:
    """Footprint polygons and bbox of ``N`` tiles.

    Attributes:
        geometry: ``(N,)`` shapely Polygons, or MultiPolygons for tiles cut at the antimeridian.
        xmin, ymin, xmax, ymax: ``(N,)`` float64 bbox in degrees, RFC 7946 order (``xmin > xmax`` across
            the antimeridian).
        centre_lon, centre_lat: ``(N,)`` float64 centre of each bbox (longitude in -180..180).
    """

    def __init__(self, geometry: np.ndarray, bounds: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> None:
        self.geometry = geometry
        self.xmin, self.ymin, self.xmax, self.ymax = bounds
        width = np.where(crosses_antimeridian(self.xmin, self.xmax), self.xmax + 360.0 - self.xmin,
                         self.xmax - self.xmin)
        self.centre_lon = wrap_longitude(self.xmin + width / 2)
        self.centre_lat = (self.ymin + self.ymax) / 2

    @property
    def crossing(self) -> np.ndarray:
        """``(N,)`` bool: tiles cut at the antimeridian."""
        return crosses_antimeridian(self.xmin, self.xmax)


def footprints_lonlat(corners: np.ndarray) -> Footprints:
    """Footprints of tiles given by their corners.

    Args:
        corners: ``(N, 4, 2)`` longitude/latitude of each tile's corners, counter-clockwise (in degrees; any
            longitude range).

    Returns:
        The tiles' :class:`Footprints`.
    """
    lon = wrap_longitude(corners[..., 0])
    lat = np.asarray(corners[..., 1], np.float64)
    # each edge's longitude step the short way round; their sum is ±360 around a pole, 0 otherwise
    steps = np.diff(np.concatenate([lon, lon[:, :1]], axis=1), axis=1)
    steps = (steps + 180.0) % 360.0 - 180.0
    polar = np.abs(steps.sum(axis=1)) > 180.0
    unwrapped = lon[:, :1] + np.concatenate([np.zeros((len(lon), 1)), np.cumsum(steps[:, :-1], axis=1)], axis=1)
    west, east = unwrapped.min(axis=1), unwrapped.max(axis=1)
    # shift each tile so that its west edge lies in -180..180; it crosses where its east edge passes 180
    west = np.where(np.abs(west + 180.0) < EDGE_TOLERANCE, -180.0, west)
    shift = wrap_longitude(west) - west
    west, east, unwrapped = west + shift, east + shift, np.where(shift[:, None] == 0, unwrapped, unwrapped + shift[:, None])
    # a tile with an edge on the antimeridian has corners at exactly ±180 on its own side; rounding may put them
    # a hair past it
    crossing = (east > 180.0 + EDGE_TOLERANCE) & ~polar
    unwrapped = np.where(crossing[:, None], unwrapped, np.clip(unwrapped, -180.0, 180.0))
    west, east = np.clip(west, -180.0, 180.0), np.where(crossing, east, np.clip(east, -180.0, 180.0))
    rings = np.stack([unwrapped, lat], -1)
    geometry = shapely.polygons(np.concatenate([rings, rings[:, :1]], axis=1))
    xmin, xmax = west.copy(), east.copy()
    ymin, ymax = lat.min(axis=1), lat.max(axis=1)
    for i in np.flatnonzero(crossing):
        ring = shapely.Polygon(np.column_stack([unwrapped[i], lat[i]]))
        west_part = shapely.clip_by_rect(ring, -180.0, -90.0, 180.0, 90.0)
        east_part = shapely.transform(shapely.clip_by_rect(ring, 180.0, -90.0, 540.0, 90.0), lambda xy: xy - [360.0, 0.0])
        geometry[i] = shapely.orient_polygons(shapely.MultiPolygon([west_part, east_part]))
        xmax[i] = east[i] - 360.0
    for i in np.flatnonzero(polar):
        north = lat[i].mean() > 0
        ymin[i], ymax[i] = (lat[i].min(), 90.0) if north else (-90.0, lat[i].max())
        geometry[i] = shapely.box(-180.0, ymin[i], 180.0, ymax[i])
        xmin[i], xmax[i] = -180.0, 180.0
    return Footprints(geometry, (xmin, ymin, xmax, ymax))
