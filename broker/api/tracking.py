"""Citizen tracking: a trámite in plain Spanish, found only with its radicado and the holder's document."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from broker.api.models import HechoTramite, Seguimiento
from broker.api.queries import Stores, constant_time_equal
from broker.orchestrator.store import InstanceRow, OrchestratorStore

__all__ = ["find_case", "track"]

COLOMBIA = ZoneInfo("America/Bogota")
STATES = {
    "en_curso": "En trámite",
    "compensando": "En revisión por un inconveniente",
    "completada": "Finalizado",
    "fallida": "Finalizado sin poder completarse",
}


def _local(text: str | None) -> str | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text).astimezone(COLOMBIA).strftime("%Y-%m-%d %H:%M")


def _fact(stores: Stores, event: Mapping[str, Any]) -> str | None:
    kind = event["kind"]
    entity = stores.entity_name(str(event.get("entidad", ""))) if event.get("entidad") else "una entidad"
    if kind == "paso_iniciado" and event.get("titulo"):
        return f"Comenzó la etapa «{event['titulo']}»."
    if kind == "solicitud_enviada":
        return f"La plataforma pidió información a {entity}."
    if kind == "respuesta_recibida":
        return f"{entity} respondió."
    if kind == "reintento_programado":
        return f"{entity} no pudo responder; la plataforma lo intentará de nuevo."
    if kind == "tarea_abierta":
        return "Un funcionario debe revisar su solicitud."
    if kind == "cadena_terminada":
        return "El trámite terminó."
    return None


def _document(value: object) -> str:
    """A document number as people write it: with or without dots, spaces and dashes."""
    return "".join(ch for ch in str(value or "") if ch not in ". -").upper()


def find_case(store: OrchestratorStore, radicado: str, document: str) -> InstanceRow | None:
    """The one place that decides whether a citizen may see a case: its radicado (never its internal id) and
    the document of its holder, compared in constant time. None whether the radicado is unknown or the document
    does not match, so neither can be probed."""
    wanted = radicado.strip().upper()
    row = store.get(wanted) if wanted else None
    expected = _document(row.state.get("context", {}).get("numDocumento")) if row is not None else ""
    matches = constant_time_equal(_document(document), expected or "0" * 12)
    return row if row is not None and row.radicado == wanted and expected and matches else None


def track(stores: Stores, radicado: str, document: str) -> Seguimiento | None:
    """The trámite, or None both when the radicado is unknown and when the document does not match it."""
    row = find_case(stores.orchestrator, radicado, document)
    if row is None:
        return None
    definition = stores.definition(row)
    facts = []
    for event in stores.orchestrator.history(row.id):
        text = _fact(stores, event)
        if text is not None:
            facts.append(HechoTramite(fecha=_local(event["at"]) or "", texto=text))
    return Seguimiento(
        radicado=row.radicado, tramite=definition.title if definition is not None else row.chain,
        estado=STATES.get(row.status, row.status), entidades_a_cargo=[stores.entity_name(h) for h in row.holders],
        fecha_limite=_local(row.due_at), hechos=facts)
