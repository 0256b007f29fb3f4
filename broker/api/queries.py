"""Read functions over the platform's stores, with the visibility rules of each role in one place.

The API routes and the HTML dashboard both call these; nothing here knows about HTTP.
"""

from __future__ import annotations

import datetime as dt
import hmac
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from functools import cached_property, lru_cache
from typing import Any

from sqlalchemy import Select, func, or_, select

from broker.api.auth import Principal
from broker.api.models import (
    ActividadEntidad,
    CadenaDetalle,
    CadenaResumen,
    Conexion,
    EventoCadena,
    LlamadaPaso,
    MensajeDetalle,
    PaginaMensajes,
    RegistroLog,
    Salto,
    Salud,
    SaludServicio,
    Tarea,
)
from broker.api.queues import queue_depths
from broker.gateway.records import operational_records as ops
from broker.orchestrator.definition import ChainDefinition, definition_from_text
from broker.orchestrator.store import InstanceRow, OrchestratorStore, TaskRow
from broker.security.entities import EntityRegistry, load_entities
from broker.security.message_log import LogRecord, MessageLog
from broker.settings import Settings
from broker.storage import create_tables, iso, open_engine
from broker.transport.topology import DELIVERER_KIND, INGRESS_QUEUES, entity_queue, ingress_queues

__all__ = [
    "Stores",
    "can_read_body",
    "chain_detail",
    "chain_list",
    "health",
    "message_detail",
    "message_page",
    "open_tasks",
    "participants",
    "visible_instance",
]

SUCCESS = ("entregado", "reenviado")
FAILURE = ("rechazado", "sin_respuesta")
ENTITY_EVENT_FIELDS = frozenset({
    "titulo", "tipo", "servicio", "entidad", "idMensaje", "intento", "campos", "tarde", "codigo",
    "reintentable", "espera_s", "estado", "resultado", "siguiente", "hacia", "pasos",
})


class Stores:
    """The platform's stores, opened on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def log(self) -> MessageLog:
        return MessageLog(self.settings.database_url)

    @cached_property
    def operational(self) -> Any:
        engine = open_engine(self.settings.database_url)
        create_tables(ops.metadata, engine)
        return engine

    @cached_property
    def orchestrator(self) -> OrchestratorStore:
        return OrchestratorStore(open_engine(self.settings.orchestrator_database_url))

    @cached_property
    def entities(self) -> EntityRegistry:
        return load_entities(self.settings.entities_file)

    def entity_name(self, entity_id: str) -> str:
        entity = self.entities.get(entity_id)
        return entity.name if entity is not None else entity_id

    def definition(self, row: InstanceRow) -> ChainDefinition | None:
        text = self.orchestrator.definition_text(row.digest)
        return _parsed(text) if text else None

    def close(self) -> None:
        for name in ("operational", "orchestrator"):
            opened = self.__dict__.get(name)
            if opened is not None:
                (opened.engine if name == "orchestrator" else opened).dispose()


@lru_cache(maxsize=64)
def _parsed(text: str) -> ChainDefinition | None:
    try:
        return definition_from_text(text)
    except Exception:
        return None


# -- chains -------------------------------------------------------------------------------------------------
def participants(stores: Stores, row: InstanceRow, history: Iterable[Mapping[str, Any]] | None = None) -> set[str]:
    """Every entity that took part in an instance: who started it, who holds it, who was called or tasked."""
    events = history if history is not None else stores.orchestrator.history(row.id)
    found = {row.started_by or "", *row.holders}
    found.update(str(e["entidad"]) for e in events if e.get("entidad"))
    found.update(t.entity for t in stores.orchestrator.tasks(instance=row.id, status=None))
    found.discard("")
    return found


def visible_instance(stores: Stores, principal: Principal, key: str) -> InstanceRow | None:
    row = stores.orchestrator.get(key)
    if row is None:
        return None
    if principal.is_operator or principal.entity in participants(stores, row):
        return row
    return None


def _summary(stores: Stores, row: InstanceRow) -> dict[str, Any]:
    definition = stores.definition(row)
    return {
        "id": row.id, "radicado": row.radicado, "cadena": row.chain, "version": row.version,
        "titulo": definition.title if definition is not None else row.chain, "estado": row.status,
        "resultado": row.outcome, "vencida": row.late, "responsables": list(row.holders),
        "fecha_limite": row.due_at, "iniciada": row.started_at, "actualizada": row.updated_at,
        "terminada": row.ended_at,
    }


def chain_list(stores: Stores, principal: Principal, *, chain: str | None = None, status: str | None = None,
               holder: str | None = None, late: bool | None = None, limit: int = 100) -> list[CadenaResumen]:
    batch = limit if principal.is_operator else max(limit * 10, 1000)
    rows = stores.orchestrator.search(chain=chain, status=status, late=late, holder=holder, limit=batch)
    if holder:
        rows = [r for r in rows if holder in r.holders]
    if not principal.is_operator:
        rows = [r for r in rows if principal.entity in participants(stores, r)]
    return [CadenaResumen(**_summary(stores, r)) for r in rows[:limit]]


def _calls(history: list[dict[str, Any]]) -> list[LlamadaPaso]:
    calls: list[dict[str, Any]] = []
    open_by_step: dict[str, dict[str, Any]] = {}
    for event in history:
        kind, step = event["kind"], event.get("step")
        if kind in ("solicitud_enviada", "compensacion_enviada") and step:
            call = {"paso": step, "servicio": event.get("servicio"), "entidad": event.get("entidad"),
                    "id_mensaje_solicitud": event.get("idMensaje"), "id_mensaje_respuesta": None,
                    "enviada": event["at"], "respondida": None, "duracion_ms": None, "resultado": "pendiente"}
            calls.append(call)
            open_by_step[step] = call
        elif kind in ("respuesta_recibida", "falla") and step in open_by_step:
            call = open_by_step.pop(step)
            call["respondida"] = event["at"]
            call["resultado"] = "respondida" if kind == "respuesta_recibida" else "falla"
            call["id_mensaje_respuesta"] = event.get("idMensaje")
            sent, answered = dt.datetime.fromisoformat(call["enviada"]), dt.datetime.fromisoformat(event["at"])
            call["duracion_ms"] = round((answered - sent).total_seconds() * 1000, 3)
    return [LlamadaPaso(**c) for c in calls]


def _event(event: Mapping[str, Any], operator: bool) -> EventoCadena:
    detail = {k: v for k, v in event.items() if k not in ("at", "kind", "step")}
    if not operator:
        detail = {k: v for k, v in detail.items() if k in ENTITY_EVENT_FIELDS}
    return EventoCadena(fecha=event["at"], tipo=event["kind"], paso=event.get("step"), detalle=detail)


def chain_detail(stores: Stores, principal: Principal, key: str) -> CadenaDetalle | None:
    row = visible_instance(stores, principal, key)
    if row is None:
        return None
    history = stores.orchestrator.history(row.id)
    operator = principal.is_operator
    return CadenaDetalle(
        **_summary(stores, row),
        resumen=row.summary if operator else None,
        contexto=dict(row.state.get("context", {})) if operator else None,
        historia=[_event(e, operator) for e in history],
        llamadas=_calls(history),
    )


def _task(task: TaskRow) -> Tarea:
    return Tarea(id=task.id, instancia=task.instance, paso=task.step, titulo=task.title, entidad=task.entity,
                 campos=list(task.fields), estado=task.status, creada=task.created_at, vence=task.due_at)


def open_tasks(stores: Stores, principal: Principal, *, entity: str | None = None) -> list[Tarea]:
    if not principal.is_operator:
        if entity and entity != principal.entity:
            return []
        entity = principal.entity
    return [_task(t) for t in stores.orchestrator.tasks(entity=entity)]


# -- messages -----------------------------------------------------------------------------------------------
def _hop(row: Any) -> Salto:
    return Salto(id_mensaje=row.message_id, salto=row.hop, remitente=row.sender, destinatario=row.recipient,
                 servicio=row.service, recibido=row.received_at, completado=row.completed_at,
                 duracion_ms=row.duration_ms, tamano_bytes=row.size_bytes, resultado=row.outcome,
                 codigo_falla=row.fault_code, intento=row.attempt)


def _party(entity: str) -> Any:
    return or_(ops.c.sender == entity, ops.c.recipient == entity)


def message_page(stores: Stores, principal: Principal, *, message_id: str | None = None, entity: str | None = None,
                 service: str | None = None, since: dt.datetime | None = None, until: dt.datetime | None = None,
                 outcome: str | None = None, offset: int = 0, limit: int = 50) -> PaginaMensajes:
    conditions: list[Any] = []
    if not principal.is_operator:
        conditions.append(_party(principal.entity or ""))
    if message_id:
        conditions.append(ops.c.message_id == message_id)
    if entity:
        conditions.append(_party(entity))
    if service:
        conditions.append(ops.c.service == service)
    if since:
        conditions.append(ops.c.completed_at >= iso(since))
    if until:
        conditions.append(ops.c.completed_at <= iso(until))
    if outcome:
        conditions.append(ops.c.outcome == outcome)
    query: Select[Any] = select(ops).where(*conditions).order_by(ops.c.id.desc()).offset(offset).limit(limit)
    with stores.operational.connect() as connection:
        total = int(connection.execute(select(func.count()).select_from(ops).where(*conditions)).scalar_one())
        rows = connection.execute(query).all()
    return PaginaMensajes(total=total, desplazamiento=offset, limite=limit, mensajes=[_hop(r) for r in rows])


def can_read_body(principal: Principal, records: Iterable[LogRecord]) -> bool:
    """Bodies are for the operator and for the sender or recipient of that very message."""
    if principal.is_operator:
        return True
    return any(principal.entity in (r.sender, r.recipient) for r in records)


def _log_entry(record: LogRecord) -> RegistroLog:
    return RegistroLog(numero=record.seq, fecha=iso(record.recorded_at), remitente=record.sender,
                       destinatario=record.recipient, servicio=record.service, tipo_mensaje=record.message_type,
                       resultado=record.outcome, codigo_falla=record.fault_code,
                       resumen_sha256=record.message_sha256, tamano_bytes=len(record.message))


def message_detail(stores: Stores, principal: Principal, message_id: str) -> MensajeDetalle | None:
    records = stores.log.find(message_id)
    with stores.operational.connect() as connection:
        hops = connection.execute(select(ops).where(ops.c.message_id == message_id).order_by(ops.c.id)).all()
    if not records and not hops:
        return None
    instance = stores.orchestrator.instance_of_message(message_id)
    if not principal.is_operator:
        party = can_read_body(principal, records) or any(principal.entity in (h.sender, h.recipient) for h in hops)
        in_case = instance is not None and visible_instance(stores, principal, instance) is not None
        if not (party or in_case):
            return None
    readable = can_read_body(principal, records)
    body = _preferred(records).message.decode("utf-8", errors="replace") if readable and records else None
    return MensajeDetalle(id_mensaje=message_id, id_cadena=instance, registros=[_log_entry(r) for r in records],
                          saltos=[_hop(h) for h in hops], cuerpo_visible=body is not None, cuerpo=body)


def _preferred(records: list[LogRecord]) -> LogRecord:
    accepted = [r for r in records if r.outcome == "aceptado"]
    return (accepted or records)[-1]


# -- health -------------------------------------------------------------------------------------------------
def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def health(stores: Stores, principal: Principal, *, window: dt.timedelta,
           now: dt.datetime | None = None) -> Salud:
    until = now or dt.datetime.now(dt.UTC)
    start = until - window
    scope = [] if principal.is_operator else [_party(principal.entity or "")]
    with stores.operational.connect() as connection:
        rows = connection.execute(select(ops.c.service, ops.c.outcome, ops.c.completed_at, ops.c.duration_ms)
                                  .where(ops.c.completed_at >= iso(start), ops.c.completed_at <= iso(until), *scope)
                                  ).all()
        activity: dict[str, str] = {}
        for column in (ops.c.sender, ops.c.recipient):
            for entity, last in connection.execute(select(column, func.max(ops.c.completed_at))
                                                   .where(*scope).group_by(column)).all():
                activity[entity] = max(activity.get(entity, ""), last)
    by_service: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_service[row.service].append(row)
    services = []
    for service, items in sorted(by_service.items()):
        durations = [float(i.duration_ms) for i in items if i.outcome in SUCCESS]
        successes = [i.completed_at for i in items if i.outcome in SUCCESS]
        failures = [i.completed_at for i in items if i.outcome in FAILURE]
        services.append(SaludServicio(
            servicio=service, ultimo_exito=max(successes, default=None), ultima_falla=max(failures, default=None),
            conteos=dict(Counter(i.outcome for i in items)), duracion_p50_ms=_percentile(durations, 0.5),
            duracion_p95_ms=_percentile(durations, 0.95), duracion_max_ms=max(durations, default=None)))
    if not principal.is_operator:
        activity = {k: v for k, v in activity.items() if k == principal.entity}
    visible = [e for e in stores.entities if principal.is_operator or e.id == principal.entity]
    entities = [ActividadEntidad(entidad=e.id, nombre=e.name, ultima_actividad=activity.get(e.id)) for e in visible]
    depths = queue_depths(stores.settings, stores.entities)
    by_queue = {d.queue: d for d in depths or []}
    ingress = [by_queue[name] for name in ingress_queues(stores.entities) if name in by_queue]
    connections = []
    for e in visible:
        if e.kind == DELIVERER_KIND:
            if ingress:
                connections.append(Conexion(
                    entidad=e.id, nombre=e.name, cola=INGRESS_QUEUES, en_linea=any(d.consumers for d in ingress),
                    consumidores=max(d.consumers for d in ingress), mensajes_en_cola=sum(d.ready for d in ingress)))
        elif (depth := by_queue.get(entity_queue(e.id))) is not None:
            connections.append(Conexion(entidad=e.id, nombre=e.name, cola=depth.queue, en_linea=depth.consumers > 0,
                                        consumidores=depth.consumers, mensajes_en_cola=depth.ready))
    return Salud(desde=iso(start), hasta=iso(until), servicios=services, entidades=entities,
                 colas_leidas=depths is not None, conexiones=connections)


def constant_time_equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.strip().encode("utf-8"), expected.strip().encode("utf-8"))
