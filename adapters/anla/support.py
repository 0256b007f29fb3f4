"""What a hand-written `handler` of these adapters needs and the SDK does not hand it.

The SDK calls a `handler: "module:function"` with the verified request only
(`Handler = Callable[[Incoming], etree._Element]`); it does not pass the connector `assemble` built from
the same adapter.yaml, nor the schema registry. Until it does, `OwnConnector` rebuilds the connector the
adapter.yaml beside the handler describes (the same operations, the same `${VAR:-default}` expansion), and
`checked` validates a built response against the GEL-XML language before the runtime signs it, so a
handler bug is a coded falla for the caller instead of a reply the gateway drops.

Caveat of the stopgap: the handler reads *its own* adapter.yaml (next to the module), not the file
`gel adapter run` was given, so a deployment that runs a copy elsewhere must keep the two in step.

Shared by the ANLA, MinInterior, Parques, EPS and notification adapters (it lives here only because none
of them owns an SDK module).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from lxml import etree

from adapters.sdk.config import load_adapter_config
from adapters.sdk.connectors import Connector, connector_from_config
from broker.gelxml import load_registry
from broker.gelxml.faults import FaultCode, fault
from broker.gelxml.namespaces import DOCUMENTO, qname
from broker.gelxml.registry import SchemaRegistry
from broker.settings import Settings

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


class OwnConnector:
    """The connector of the adapter.yaml at `config_file`, built once per configuration and reused.

    The file is re-read on every `get()` (cheap): when the expanded connector section changes (another
    database URL in the environment), the old connector is closed and a new one built."""

    def __init__(self, config_file: Path) -> None:
        self.config_file = config_file
        self._lock = threading.Lock()
        self._key: str | None = None
        self._connector: Connector | None = None

    def get(self) -> Connector:
        config = load_adapter_config(self.config_file)
        if config.connector is None:
            raise ValueError(f"{self.config_file}: el adaptador no declara 'connector'")
        key = json.dumps([config.entity, config.connector], sort_keys=True, default=str)
        with self._lock:
            if self._connector is None or key != self._key:
                if self._connector is not None:
                    self._connector.close()
                self._connector = connector_from_config(config.entity, config.connector, base_dir=config.base_dir)
                self._key = key
            return self._connector

    def call(self, operation: str, **params: Any) -> list[dict[str, Any]]:
        return [dict(record) for record in self.get().call(operation, params)]

    def one(self, operation: str, **params: Any) -> dict[str, Any] | None:
        records = self.call(operation, **params)
        return records[0] if records else None

    def close(self) -> None:
        with self._lock:
            if self._connector is not None:
                self._connector.close()
            self._connector, self._key = None, None


_registry_lock = threading.Lock()
_registries: dict[Path, SchemaRegistry] = {}


def _registry() -> SchemaRegistry:
    folder = Settings().schemas_dir.resolve()
    with _registry_lock:
        if folder not in _registries:
            _registries[folder] = load_registry(folder)
        return _registries[folder]


def checked(payload: etree._Element, entity: str) -> etree._Element:
    """`payload` if it is valid GEL-XML; otherwise GEL-ADAPTER-HANDLER_FAILED naming the first problem."""
    language = _registry().language
    if language.validate(payload):
        return payload
    first = language.error_log[0]  # type: ignore[index]
    raise fault(FaultCode.ADAPTER_HANDLER_FAILED, entity=entity,
                detail=f"respuesta no válida según el esquema: {first.message}")


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
