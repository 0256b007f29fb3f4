"""consultarPresenciaComunidades: the Ministry's check of ethnic communities in a project's area.

1. The project's polygon (the request's `vertice` list) gives its extent; the database returns the registered
   communities whose territory extent meets it (`comunidades_en_extension`).
2. A community counts when its territory extent and the polygon actually share area (a vertex of one inside
   the other, or crossing edges: `territorios.box_meets_polygon`), not merely their extents.
3. The consulta previa is required when at least one community is present (the Ministry's certification
   of procedencia); the certification is issued once per expediente (`ST-<n>-<year>`, dated today, with its
   text attached) and a repeated query returns the one already issued with the communities found now.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

from lxml import etree

from adapters.anla.support import (
    OwnConnector,
    acto_administrativo,
    checked,
    document_digest,
    long_date,
    project_polygon,
    sub,
    today,
)
from adapters.mininterior.territorios import Box, box_meets_polygon, extent
from adapters.sdk.runtime import Incoming
from broker.gelxml.namespaces import DOCUMENTO, GEL_PREFIX, UBICACION, qname

__all__ = ["COMMUNITY_TYPES", "consultar_presencia_comunidades"]

LEGACY = OwnConnector(Path(__file__).with_name("adapter.yaml"))
CPC = GEL_PREFIX + "Interior/ConsultarPresenciaComunidades/1.0"
CERTIFICATIONS = "https://www.mininterior.gov.co/consultaprevia/certificaciones/"

# the Ministry's type codes -> (GEL code, name)
COMMUNITY_TYPES: Mapping[str, tuple[str, str]] = {
    "RI": ("INDIGENA", "Indígena"),
    "CI": ("INDIGENA", "Indígena"),
    "CC": ("NEGRA_AFROCOLOMBIANA", "Negra o afrocolombiana"),
    "RZ": ("RAIZAL", "Raizal"),
    "PQ": ("PALENQUERA", "Palenquera"),
    "KR": ("ROM", "Rom (gitano)"),
}


def _q(local: str) -> str:
    return qname(CPC, local)


def _certificate_text(cert: Mapping[str, Any], number: str, communities: list[dict[str, Any]],
                      municipalities: list[str]) -> str:
    found = "".join(f"- {c['nombre']} (pueblo {c['pueblo']})\n" for c in communities)
    verdict = ("SÍ procede la consulta previa con las comunidades étnicas registradas en el área:\n" + found
               if communities else "NO procede la consulta previa: no se registra presencia de comunidades étnicas "
                                   "en el área del proyecto.\n")
    return (f"MINISTERIO DEL INTERIOR\nDirección de la Autoridad Nacional de Consulta Previa\n"
            f"CERTIFICACIÓN {cert['num_acto']}\nBogotá D.C., {long_date(date.fromisoformat(str(cert['fecha_acto'])))}"
            f"\n\nSobre la procedencia de la consulta previa para el proyecto del expediente {number}, en los "
            f"municipios {', '.join(municipalities)}.\n\n{verdict}")


def consultar_presencia_comunidades(request: Incoming) -> etree._Element:
    entity, payload = request.header.recipient, request.payload
    assert payload is not None
    number = payload.findtext(_q("numExpediente"), "").strip()
    municipalities = [m.text or "" for m in payload.iter(qname(UBICACION, "codMunicipio"))]
    polygon = project_polygon(payload, CPC)
    area = extent(polygon)
    candidates = LEGACY.call("comunidades_en_extension", lat_min=area.lat_min, lat_max=area.lat_max,
                             lon_min=area.lon_min, lon_max=area.lon_max)
    present = [c for c in candidates if c["tipo"] in COMMUNITY_TYPES and box_meets_polygon(
        Box(float(c["lat_min"]), float(c["lat_max"]), float(c["lon_min"]), float(c["lon_max"])), polygon)]
    day = today()
    LEGACY.call("certificar", anio=day.year, expediente=number, fecha=day.isoformat(), procede=int(bool(present)))
    cert = LEGACY.one("certificacion", expediente=number)
    assert cert is not None
    if not cert.get("archivo"):
        body = _certificate_text(cert, number, present, municipalities).encode("utf-8")
        kind = "procedencia" if cert["procede_consulta"] else "no-procedencia"
        file = f"{cert['num_acto']}-{kind}-consulta-previa.txt"
        LEGACY.call("adjuntar_documento", num_certificacion=cert["num_acto"], archivo=file, tamano=len(body),
                    hash=document_digest(body), uri=CERTIFICATIONS + file, texto=body.decode("utf-8"))
        cert = LEGACY.one("certificacion", expediente=number)
        assert cert is not None

    root = etree.Element(_q("salidaConsultarPresenciaComunidades"), nsmap={"cpc": CPC, "doc": DOCUMENTO})
    sub(root, _q("presenciaComunidades"), bool(present))
    listed = sub(root, _q("comunidades"))
    for community in present:
        code, name = COMMUNITY_TYPES[str(community["tipo"])]
        node = sub(listed, _q("comunidad"))
        sub(node, _q("nombreComunidad"), community["nombre"])
        sub(node, _q("codTipoComunidad"), code)
        sub(node, _q("nomTipoComunidad"), name)
    sub(root, _q("requiereConsultaPrevia"), bool(cert["procede_consulta"]))
    acto_administrativo(root, cert, "CERTIFICADO")
    return checked(root, entity)
