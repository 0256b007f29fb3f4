"""The oferente's event callback: each eventoAsignarSubsidio becomes a row of a CSV file in `salida/` for the
sales system (which matches the radicado with the buyer's reservation and waits for the payment).

The mapping engine does not read event payloads, so the few fields are read here; the amount is written as
the sales team's spreadsheet shows pesos (`39.000.000,00`) and the date as dd/mm/yyyy.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from lxml import etree

from adapters.oferente import legacy
from adapters.sdk.mapping import COLOMBIA
from adapters.sdk.runtime import Incoming
from broker.gelxml import MessageType
from broker.gelxml.namespaces import DOCUMENTO, FINANCIERO, qname

__all__ = ["registrar_asignacion"]

SERVICE = "asignarSubsidio"


def _pesos(text: str | None) -> str:
    if not text:
        return ""
    return f"{Decimal(text):,.2f}".translate(str.maketrans(",.", ".,"))


def registrar_asignacion(incoming: Incoming) -> None:
    """`on_message` callback: writes an assignment decision for the sales system; other messages are ignored.
    A failure to write (the folder is not there) raises, so the event is not acknowledged and comes again."""
    if incoming.header.message_type is not MessageType.EVENT or incoming.header.service.code != SERVICE:
        return
    event = incoming.payload
    assert event is not None
    namespace = etree.QName(event).namespace
    acto = event.find(qname(DOCUMENTO, "actoAdministrativo"))
    issued = acto.findtext(qname(DOCUMENTO, "fechaActo")) if acto is not None else None
    row = {
        "radicado": event.findtext(qname(namespace, "radicado")),
        "asignado": "SI" if event.findtext(qname(namespace, "asignado")) in ("true", "1") else "NO",
        "valor": _pesos(event.findtext(qname(FINANCIERO, "valorPesos"))),
        "resolucion": acto.findtext(qname(DOCUMENTO, "numActo")) if acto is not None else "",
        "fecha_resolucion": f"{date.fromisoformat(issued):%d/%m/%Y}" if issued else "",
        "recibido": f"{datetime.now(COLOMBIA):%d/%m/%Y %H:%M:%S}",
    }
    legacy.connector().call("subsidios_asignados", {"registros": [row], "archivo": f"asignacion_{row['radicado']}"})
