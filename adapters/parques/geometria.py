"""Overlap of a project's polygon with a protected area's outline, in hectares.

The outline (RUNAP's simplified boundary, convex) clips the project polygon (any simple polygon) with the
Sutherland–Hodgman algorithm; the area of the clipped polygon is measured with the shoelace formula on a
local equirectangular projection around the polygon's mean latitude (metres per degree: 110 574 north–south,
111 320 × cos(latitude) east–west). For areas of a few thousand hectares the error is well under 1 %.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["Point", "area_hectares", "clip", "is_convex", "overlap_hectares"]

Point = tuple[float, float]
"""(latitud, longitud) in WGS84 degrees."""

_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON = 111_320.0


def _cross(o: Point, a: Point, b: Point) -> float:
    """z of (a − o) × (b − o) with x = longitude, y = latitude."""
    return (a[1] - o[1]) * (b[0] - o[0]) - (a[0] - o[0]) * (b[1] - o[1])


def _signed_area_degrees(polygon: Sequence[Point]) -> float:
    return sum(p[1] * q[0] - q[1] * p[0] for p, q in zip(polygon, [*polygon[1:], polygon[0]], strict=True)) / 2


def is_convex(polygon: Sequence[Point]) -> bool:
    signs = {_cross(polygon[i - 2], polygon[i - 1], polygon[i]) > 0 for i in range(len(polygon))
             if _cross(polygon[i - 2], polygon[i - 1], polygon[i]) != 0}
    return len(signs) <= 1


def _intersection(p: Point, q: Point, a: Point, b: Point) -> Point:
    """Where segment p–q meets the line a–b (the caller knows they cross)."""
    d1, d2 = _cross(a, b, p), _cross(a, b, q)
    t = d1 / (d1 - d2)
    return (p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1]))


def clip(subject: Sequence[Point], outline: Sequence[Point]) -> list[Point]:
    """The part of `subject` inside the convex `outline` (Sutherland–Hodgman); empty when they do not meet."""
    orientation = 1.0 if _signed_area_degrees(outline) > 0 else -1.0
    result = list(subject)
    for a, b in zip(outline, [*outline[1:], outline[0]], strict=True):
        if not result:
            break
        points, result = result, []
        for p, q in zip([points[-1], *points[:-1]], points, strict=True):
            p_in, q_in = _cross(a, b, p) * orientation >= 0, _cross(a, b, q) * orientation >= 0
            if q_in:
                if not p_in:
                    result.append(_intersection(p, q, a, b))
                result.append(q)
            elif p_in:
                result.append(_intersection(p, q, a, b))
    return result


def area_hectares(polygon: Sequence[Point]) -> float:
    """The area of a polygon in hectares (0 for fewer than three points)."""
    if len(polygon) < 3:
        return 0.0
    mean_lat = math.radians(sum(p[0] for p in polygon) / len(polygon))
    x_scale, y_scale = _M_PER_DEG_LON * math.cos(mean_lat), _M_PER_DEG_LAT
    projected = [(p[1] * x_scale, p[0] * y_scale) for p in polygon]
    twice = sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(projected, [*projected[1:], projected[0]],
                                                                  strict=True))
    return abs(twice) / 2 / 10_000


def overlap_hectares(project: Sequence[Point], outline: Sequence[Point]) -> float:
    return area_hectares(clip(project, outline))
