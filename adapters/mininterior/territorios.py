"""Plane geometry for the territory check: does a territory's extent (a latitude/longitude box) meet the
project's polygon? Coordinates are WGS84 degrees; at the size of a project the plane approximation is
exact enough for a yes/no answer (no distances are measured)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Box", "Point", "box_meets_polygon", "extent", "point_in_polygon"]

Point = tuple[float, float]
"""(latitud, longitud)."""


@dataclass(frozen=True, slots=True)
class Box:
    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float

    def contains(self, point: Point) -> bool:
        lat, lon = point
        return self.lat_min <= lat <= self.lat_max and self.lon_min <= lon <= self.lon_max

    def corners(self) -> tuple[Point, Point, Point, Point]:
        return ((self.lat_min, self.lon_min), (self.lat_min, self.lon_max), (self.lat_max, self.lon_max),
                (self.lat_max, self.lon_min))


def extent(polygon: Sequence[Point]) -> Box:
    lats, lons = [p[0] for p in polygon], [p[1] for p in polygon]
    return Box(min(lats), max(lats), min(lons), max(lons))


def point_in_polygon(point: Point, polygon: Sequence[Point]) -> bool:
    """Ray casting (even-odd rule); a point on the boundary may fall either way."""
    lat, lon = point
    inside = False
    for (lat1, lon1), (lat2, lon2) in zip(polygon, [*polygon[1:], polygon[0]], strict=True):
        if (lat1 > lat) != (lat2 > lat):
            crossing = lon1 + (lat - lat1) * (lon2 - lon1) / (lat2 - lat1)
            if lon < crossing:
                inside = not inside
    return inside


def _orientation(a: Point, b: Point, c: Point) -> float:
    return (b[1] - a[1]) * (c[0] - a[0]) - (b[0] - a[0]) * (c[1] - a[1])


def _segments_cross(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    d1, d2 = _orientation(q1, q2, p1), _orientation(q1, q2, p2)
    d3, d4 = _orientation(p1, p2, q1), _orientation(p1, p2, q2)
    return ((d1 > 0) != (d2 > 0)) and ((d3 > 0) != (d4 > 0)) and 0 not in (d1, d2, d3, d4)


def box_meets_polygon(box: Box, polygon: Sequence[Point]) -> bool:
    """True when the box and the polygon share any area: a vertex of one inside the other, or crossing edges."""
    if any(box.contains(p) for p in polygon):
        return True
    corners = box.corners()
    if any(point_in_polygon(c, polygon) for c in corners):
        return True
    edges = list(zip(polygon, [*polygon[1:], polygon[0]], strict=True))
    box_edges = list(zip(corners, [*corners[1:], corners[0]], strict=True))
    return any(_segments_cross(a, b, c, d) for a, b in edges for c, d in box_edges)
