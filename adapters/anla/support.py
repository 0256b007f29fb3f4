"""Payload-building helpers shared by the ANLA, MinInterior, Parques, EPS and notification handlers.

`OwnConnector` and `checked` come from `adapters.sdk.package` (re-exported here for those handlers): the
connector of the adapter.yaml beside the handler, and the validity check of a built answer.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from lxml import etree

from adapters.sdk.package import OwnConnector, checked
from broker.gelxml.namespaces import DOCUMENTO, qname

__all__ = [
    "COLOMBIA",
    "OwnConnector",
    "acto_administrativo",
    "checked",
    "child",
    "document_digest",
    "long_date",
    "month_name",
    "project_polygon",
    "sub",
    "text_of",
    "today",
]

COLOMBIA = timezone(timedelta(hours=-5), "COT")
_MONTHS = ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
           "noviembre", "diciembre")


def child(parent: etree._Element, *steps: str) -> etree._Element | None:
    """The element at `steps` (Clark names) under `parent`, or None."""
    node: etree._Element | None = parent
    for step in steps:
        if node is None:
            return None
        node = node.find(step)
    return node


def text_of(parent: etree._Element, *steps: str) -> str | None:
    """The stripped text at `steps`, or None when absent or empty."""
    node = child(parent, *steps)
    value = (node.text or "").strip() if node is not None else ""
    return value or None


def sub(parent: etree._Element, tag: str, value: object | None = None, **attributes: str) -> etree._Element:
    """A child element with text `value` (booleans as xs:boolean, dates ISO) and attributes."""
    node = etree.SubElement(parent, tag, attributes)
    if value is not None:
        if isinstance(value, bool):
            node.text = "true" if value else "false"
        elif isinstance(value, date | datetime):
            node.text = value.isoformat()
        else:
            node.text = str(value)
    return node


def today() -> date:
    """Today in Colombia (the legacy systems' calendar)."""
    return datetime.now(COLOMBIA).date()


def long_date(day: date) -> str:
    """`26 de noviembre de 2026`."""
    return f"{day.day} de {_MONTHS[day.month - 1]} de {day.year}"


def month_name(day: date) -> str:
    return _MONTHS[day.month - 1]


def document_digest(content: bytes) -> str:
    """Base64 SHA-256 of a document, as doc:hashDocumento carries it."""
    return base64.b64encode(hashlib.sha256(content).digest()).decode("ascii")


def acto_administrativo(parent: etree._Element, row: Mapping[str, Any], kind: str) -> etree._Element:
    """`doc:actoAdministrativo` from a legacy act record with the columns num_acto, nom_tipo_acto, fecha_acto
    and, when the act has its document, archivo, formato, tamano_bytes, uri and hash_sha256."""

    def doc(local: str) -> str:
        return qname(DOCUMENTO, local)

    act = sub(parent, doc("actoAdministrativo"))
    sub(act, doc("codTipoActo"), kind)
    sub(act, doc("nomTipoActo"), row["nom_tipo_acto"])
    sub(act, doc("numActo"), row["num_acto"])
    sub(act, doc("fechaActo"), row["fecha_acto"])
    if row.get("archivo"):
        attached = sub(act, doc("documentoAdjunto"))
        sub(attached, doc("codTipoDocumentoAdjunto"), "ACTO_ADMINISTRATIVO")
        signed = row.get("formato") == "application/pdf"
        name = "Acto administrativo firmado" if signed else "Texto del acto administrativo"
        sub(attached, doc("nomTipoDocumentoAdjunto"), name)
        sub(attached, doc("nomArchivo"), row["archivo"])
        sub(attached, doc("formatoArchivo"), row["formato"])
        sub(attached, doc("tamanoBytes"), row["tamano_bytes"])
        sub(attached, doc("uriDocumento"), row["uri"])
        sub(attached, doc("hashDocumento"), row["hash_sha256"], algoritmo="sha256")
        sub(attached, doc("fechaDocumento"), row["fecha_acto"])
    return act


def project_polygon(payload: etree._Element, namespace: str) -> list[tuple[float, float]]:
    """The `areaProyecto/poligono/vertice` list of a request as (latitud, longitud) points."""
    vertices = payload.findall(f"{{{namespace}}}areaProyecto/{{{namespace}}}poligono/{{{namespace}}}vertice")
    return [(float(Decimal(v.findtext(f"{{{namespace}}}latitud", ""))),
             float(Decimal(v.findtext(f"{{{namespace}}}longitud", "")))) for v in vertices]
