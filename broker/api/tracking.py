"""Citizen tracking: a trámite in plain Spanish, found only with its radicado and the holder's document.

`citizen_view` is the one presentation of a case to its citizen: the JSON API (/api/seguimiento) returns it
and the tracking page (/seguimiento) renders it. It says what a citizen may know about their own case and
nothing else: no internal ids, no case data, no entity ids (only their names).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from broker.api.models import HechoTramite, Seguimiento
from broker.api.queries import Stores, constant_time_equal
from broker.orchestrator.definition import ChainDefinition
from broker.orchestrator.store import InstanceRow, OrchestratorStore

__all__ = ["RUNNING", "STATES", "citizen_view", "find_case", "legal_deadline", "track"]

COLOMBIA = ZoneInfo("America/Bogota")
RUNNING = ("en_curso", "compensando")
STATES = {
    "en_curso": "En trámite",
    "compensando": "En revisión por un inconveniente",
    "completada": "Finalizado",
    "fallida": "Finalizado sin poder completarse",
}
FAILED_DETAIL = "El trámite no pudo completarse. Comuníquese con la entidad donde lo radicó."


def _moment(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _local(moment: dt.datetime | None) -> str | None:
    """ISO-8601 in Colombian time, to the minute: `2026-03-05T14:30-05:00`."""
    return moment.astimezone(COLOMBIA).isoformat(timespec="minutes") if moment is not None else None


def legal_deadline(row: InstanceRow, definition: ChainDefinition | None) -> dt.datetime | None:
    """The chain's legal response time counted from the day the case was filed."""
    started = _moment(row.started_at)
    if definition is None or definition.deadline is None or started is None:
        return None
    return definition.deadline.after(started)


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


def _result(row: InstanceRow) -> str | None:
    if row.status == "completada":
        return row.summary or (row.outcome or "").replace("_", " ").capitalize() or None
    if row.status == "fallida":
        return FAILED_DETAIL
    return None


def citizen_view(stores: Stores, row: InstanceRow, now: dt.datetime | None = None) -> Seguimiento:
    """What the citizen may read about their own case, and nothing else."""
    definition = stores.definition(row)
    index = definition.index if definition is not None else {}
    running = row.status in RUNNING
    deadline = legal_deadline(row, definition)
    facts = [HechoTramite(fecha=_local(_moment(event["at"])) or "", texto=text)
             for event in stores.orchestrator.history(row.id) if (text := _fact(stores, event)) is not None]
    return Seguimiento(
        radicado=row.radicado, tramite=definition.title if definition is not None else row.chain,
        estado=STATES.get(row.status, row.status), terminado=not running, resultado=_result(row),
        radicado_el=_local(_moment(row.started_at)) or "", terminado_el=_local(_moment(row.ended_at)),
        fecha_limite=_local(deadline),
        vencido=running and deadline is not None and deadline <= (now or dt.datetime.now(dt.UTC)),
        entidades_a_cargo=[stores.entity_name(h) for h in row.holders] if running else [],
        etapas=[index[s].title for s in row.steps if s in index] if running else [],
        hechos=facts)


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
    return citizen_view(stores, row) if row is not None else None
