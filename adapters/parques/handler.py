"""consultarAreasProtegidas: the overlap of a project's polygon with the protected areas of the RUNAP.

The database narrows the areas to those whose outline extent meets the project's extent; each candidate's
outline then clips the project polygon (`geometria.overlap_hectares`) and the areas with a positive overlap
(to the 4 decimals the answer carries) are reported with the overlapping surface in hectares.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from itertools import groupby
from pathlib import Path

from lxml import etree

from adapters.anla.support import OwnConnector, checked, project_polygon, sub
from adapters.parques.geometria import Point, overlap_hectares
from adapters.sdk.runtime import Incoming
from broker.gelxml.namespaces import GEL_PREFIX, qname

__all__ = ["CATEGORIES", "consultar_areas_protegidas"]

LEGACY = OwnConnector(Path(__file__).with_name("adapter.yaml"))
CAP = GEL_PREFIX + "Ambiental/ConsultarAreasProtegidas/1.0"

# RUNAP category codes -> (GEL code, name)
CATEGORIES: Mapping[str, tuple[str, str]] = {
    "PNN": ("PARQUE_NACIONAL_NATURAL", "Parque Nacional Natural"),
    "RFP": ("RESERVA_FORESTAL_PROTECTORA", "Reserva Forestal Protectora"),
    "DMI": ("DISTRITO_MANEJO_INTEGRADO", "Distrito de Manejo Integrado"),
    "PNR": ("PARQUE_NATURAL_REGIONAL", "Parque Natural Regional"),
}
_FOUR_PLACES = Decimal("0.0001")


def _q(local: str) -> str:
    return qname(CAP, local)


def consultar_areas_protegidas(request: Incoming) -> etree._Element:
    entity, payload = request.header.recipient, request.payload
    assert payload is not None
    polygon = project_polygon(payload, CAP)
    lats, lons = [p[0] for p in polygon], [p[1] for p in polygon]
    rows = LEGACY.call("areas_en_extension", lat_min=min(lats), lat_max=max(lats), lon_min=min(lons),
                       lon_max=max(lons))
    overlaps: list[tuple[dict[str, object], Decimal]] = []
    for _code, group in groupby(rows, key=lambda row: row["cod_runap"]):
        vertices = list(group)
        outline: list[Point] = [(float(v["latitud"]), float(v["longitud"])) for v in vertices]
        hectares = Decimal(repr(overlap_hectares(polygon, outline))).quantize(_FOUR_PLACES, rounding=ROUND_HALF_UP)
        if hectares > 0 and vertices[0]["categoria"] in CATEGORIES:
            overlaps.append((vertices[0], hectares))

    root = etree.Element(_q("salidaConsultarAreasProtegidas"), nsmap={"cap": CAP})
    sub(root, _q("traslapa"), bool(overlaps))
    listed = sub(root, _q("areasProtegidas"))
    for found, hectares in overlaps:
        code, name = CATEGORIES[str(found["categoria"])]
        node = sub(listed, _q("areaProtegida"))
        sub(node, _q("codRunap"), found["cod_runap"])
        sub(node, _q("nombreArea"), found["nombre"])
        sub(node, _q("codCategoriaArea"), code)
        sub(node, _q("nomCategoriaArea"), name)
        sub(node, _q("areaTraslapadaHectareas"), f"{hectares:f}")
    return checked(root, entity)
