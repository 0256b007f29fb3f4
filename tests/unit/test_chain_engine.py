"""The chain engine through the orchestrator runtime, without a bus: a dispatcher that keeps what would be
sent, a clock the test moves, and a SQLite store. Every behaviour the definitions promise, step kind by
step kind."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker.gelxml import GelFault, SchemaRegistry
from broker.gelxml.envelope import ServiceRef, payload_of
from broker.gelxml.faults import FaultCode, falla
from broker.gelxml.parsing import parse_untrusted
from broker.orchestrator.definition import ChainDefinition, definition_from_text
from broker.orchestrator.engine import Engine, Send
from broker.orchestrator.runtime import Orchestrator
from broker.orchestrator.store import OrchestratorStore
from broker.orchestrator.testing import ManualClock, RecordingDispatcher
from broker.storage import open_engine
from tests.conftest import SAMPLES

REGISTRADURIA = "CO/GOB/899999040"
SISBEN = "CO/GOB/899999011"
ANLA = "CO/GOB/900467239"
FONVIVIENDA = "CO/GOB/830121208"

IDENTITY = """
    call: {service: verificarIdentidad, version: "1.0", to: CO/GOB/899999040}
    request:
      - {gel: per:identificacion/per:codTipoDocumento, value: CC}
      - {gel: per:identificacion/per:numDocumento, from: numDocumento}
      - {gel: per:nombreCompleto/per:primerNombre, value: MARÍA}
      - {gel: per:nombreCompleto/per:primerApellido, value: GÓMEZ}
    reply:
      - {ctx: estadoDocumento, gel: svc:codEstadoDocumento}
      - {ctx: nombreCoincide, gel: svc:coincidenciaNombre, as: boolean}
"""
SISBEN_CALL = """
    call: {service: consultarSisben, version: "1.0", to: CO/GOB/899999011}
    request:
      - {gel: per:identificacion/per:codTipoDocumento, value: CC}
      - {gel: per:identificacion/per:numDocumento, from: numDocumento}
    reply:
      - {ctx: sisbenEncontrado, gel: svc:encontrado, as: boolean}
"""


def indent(text: str, spaces: int) -> str:
    return "\n".join((" " * spaces + line[4:]) if line.strip() else line for line in text.strip("\n").splitlines())


@dataclass
class World:
    orchestrator: Orchestrator
    outbox: RecordingDispatcher
    clock: ManualClock

    def respond(self, send: Send, **values: object) -> None:
        assert self.orchestrator.on_reply(correlation=send.message_id, fault_reply=False, payload=None,
                                          message_id=f"r-{send.message_id}", values=values)

    def fail(self, send: Send, code: FaultCode, **params: object) -> None:
        payload = falla(code, **params).to_xml()
        assert self.orchestrator.on_reply(correlation=send.message_id, fault_reply=True, payload=payload,
                                          message_id=f"f-{send.message_id}")

    def row(self, key: str):  # type: ignore[no-untyped-def]
        row = self.orchestrator.store.get(key)
        assert row is not None
        return row

    def kinds(self, key: str) -> list[str]:
        return [e["kind"] for e in self.orchestrator.store.history(self.row(key).id)]


def chain(body: str, *, name: str = "prueba", version: int = 1, extra: str = "") -> ChainDefinition:
    text = f"chain: {name}\nversion: {version}\ntitle: Cadena de prueba\nradicado: PRB\ninputs: [numDocumento]\n" \
           f"{extra}steps:\n{body}"
    return definition_from_text(text, source=f"{name}.yaml")


def world_for(tmp_path: Path, registry: SchemaRegistry, *definitions: ChainDefinition) -> World:
    outbox, clock = RecordingDispatcher(), ManualClock()
    store = OrchestratorStore(open_engine(f"sqlite:///{tmp_path / 'orq.db'}"))
    library = {d.key: d for d in definitions}
    return World(Orchestrator(store, Engine(registry), library, outbox, clock=clock), outbox, clock)


def test_parallel_branches_join_and_a_choice_decides_on_the_replies(tmp_path: Path, registry: SchemaRegistry) -> None:
    definition = chain(f"""
  - id: cruces
    parallel:
      - - id: identidad
{indent(IDENTITY, 10)}
      - - id: sisben
{indent(SISBEN_CALL, 10)}
  - id: decidir
    choice:
      - {{if: "estadoDocumento == 'VIGENTE' and sisbenEncontrado", next: aprobado}}
    otherwise: negado
  - {{id: aprobado, end: aprobado, summary: "Aprobado ({{estadoDocumento}})"}}
  - {{id: negado, end: negado}}
""")
    world = world_for(tmp_path, registry, definition)
    row = world.orchestrator.start("prueba", {"numDocumento": "1020304050"})
    assert row.radicado == "PRB-2026-000001" and row.status == "en_curso"
    assert [s.step for s in world.outbox.sent] == ["identidad", "sisben"]
    assert set(world.row(row.id).holders) == {REGISTRADURIA, SISBEN}
    request = world.outbox.last("identidad").payload
    assert request.findtext("{*}identificacion/{*}numDocumento") == "1020304050"
    world.respond(world.outbox.last("sisben"), sisbenEncontrado=True)
    assert world.row(row.id).status == "en_curso" and world.row(row.id).holders == (REGISTRADURIA,)
    world.respond(world.outbox.last("identidad"), estadoDocumento="VIGENTE", nombreCoincide=True)
    done = world.row(row.id)
    assert (done.status, done.outcome, done.summary) == ("completada", "aprobado", "Aprobado (VIGENTE)")
    assert "ramas_unidas" in world.kinds(row.id) and done.holders == ()


def test_a_real_reply_payload_is_captured_into_the_context(tmp_path: Path, registry: SchemaRegistry) -> None:
    definition = chain(f"""
  - id: identidad
{indent(IDENTITY, 4)}
  - {{id: fin, end: listo, summary: "{{estadoDocumento}} {{nombreCoincide}}"}}
""")
    world = world_for(tmp_path, registry, definition)
    row = world.orchestrator.start("prueba", {"numDocumento": "1020304050"})
    answer = payload_of(parse_untrusted((SAMPLES / "valid" / "verificarIdentidad-respuesta.xml").read_bytes()))
    world.orchestrator.on_reply(correlation=world.outbox.sent[0].message_id, fault_reply=False, payload=answer,
                                message_id="respuesta-1")
    assert world.row(row.id).summary == "VIGENTE True"


def test_a_failed_check_in_one_branch_ends_the_wait_for_the_others(tmp_path: Path, registry: SchemaRegistry) -> None:
    definition = chain(f"""
  - id: cruces
    parallel:
      - - id: identidad
{indent(IDENTITY, 10)}
        - id: revisar
          choice: [{{if: "estadoDocumento != 'VIGENTE'", next: rechazo}}]
          otherwise: ok
        - {{id: ok, set: {{identidadOk: "True"}}}}
      - - id: sisben
{indent(SISBEN_CALL, 10)}
  - {{id: aprobado, end: aprobado}}
  - {{id: rechazo, end: rechazado}}
""")
    world = world_for(tmp_path, registry, definition)
    row = world.orchestrator.start("prueba", {"numDocumento": "1020304050"})
    world.respond(world.outbox.last("identidad"), estadoDocumento="CANCELADO_MUERTE", nombreCoincide=True)
    assert (world.row(row.id).status, world.row(row.id).outcome) == ("completada", "rechazado")
    world.respond(world.outbox.last("sisben"), sisbenEncontrado=True)  # arrives after the decision
    kinds = world.kinds(row.id)
    assert "ramas_abandonadas" in kinds and kinds[-1] == "respuesta_ignorada"
    assert world.row(row.id).outcome == "rechazado"


def test_a_retryable_fault_is_retried_after_the_backoff_and_a_late_answer_to_the_old_request_is_ignored(
        tmp_path: Path, registry: SchemaRegistry) -> None:
    definition = chain(f"""
  - id: identidad
{indent(IDENTITY, 4)}
    retry: {{attempts: 3, initial: 30s, maximum: 5m}}
  - {{id: fin, end: listo}}
""")
    world = world_for(tmp_path, registry, definition)
    row = world.orchestrator.start("prueba", {"numDocumento": "1020304050"})
    first = world.outbox.sent[0]
    world.fail(first, FaultCode.ADAPTER_LEGACY_UNAVAILABLE, entity=REGISTRADURIA, detail="caído")
    assert len(world.outbox.sent) == 1
    world.clock.advance(seconds=29)
    assert world.orchestrator.fire_due_timers() == 0
    world.clock.advance(seconds=2)
    assert world.orchestrator.fire_due_timers() == 1
    second = world.outbox.sent[1]
    assert second.step == "identidad" and second.attempt == 2 and second.message_id != first.message_id
    world.respond(first, estadoDocumento="VIGENTE", nombreCoincide=True)
    assert world.row(row.id).status == "en_curso"
    world.respond(second, estadoDocumento="VIGENTE", nombreCoincide=True)
    assert world.row(row.id).outcome == "listo"
    assert world.orchestrator.fire_due_timers() == 0


def test_retries_run_out_and_a_non_retryable_fault_goes_to_on_fault(tmp_path: Path, registry: SchemaRegistry
                                                                     ) -> None:
    definition = chain(f"""
  - id: identidad
{indent(IDENTITY, 4)}
    retry: {{attempts: 2, initial: 10s}}
    on_fault: sin_respuesta
  - {{id: fin, end: listo}}
  - {{id: sin_respuesta, end: sin_respuesta, summary: "{{falla_codigo}}"}}
""")
    world = world_for(tmp_path, registry, definition)
    row = world.orchestrator.start("prueba", {"numDocumento": "1020304050"})
    world.fail(world.outbox.sent[0], FaultCode.ROUTE_REPLY_TIMEOUT, recipient=REGISTRADURIA, message_id="x",
               seconds=120)
    world.clock.advance(seconds=11)
    world.orchestrator.fire_due_timers()
    world.fail(world.outbox.sent[1], FaultCode.ROUTE_REPLY_TIMEOUT, recipient=REGISTRADURIA, message_id="x",
               seconds=120)
    done = world.row(row.id)
    assert (done.outcome, done.summary) == ("sin_respuesta", "GEL-ROUTE-REPLY_TIMEOUT")


def test_a_later_failure_compensates_the_completed_steps_in_reverse_order(tmp_path: Path,
                                                                          registry: SchemaRegistry) -> None:
    compensate = """
    compensate:
      call: {service: consultarSisben, version: "1.0", to: CO/GOB/899999011}
      request:
        - {gel: per:identificacion/per:codTipoDocumento, value: CC}
        - {gel: per:identificacion/per:numDocumento, from: numDocumento}
"""
    definition = chain(f"""
  - id: primero
{indent(SISBEN_CALL, 4)}
{indent(compensate, 4)}
  - id: segundo
{indent(IDENTITY, 4)}
{indent(compensate, 4)}
  - id: tercero
{indent(SISBEN_CALL, 4)}
  - {{id: fin, end: listo}}
""")
    world = world_for(tmp_path, registry, definition)
    row = world.orchestrator.start("prueba", {"numDocumento": "1020304050"})
    world.respond(world.outbox.last("primero"), sisbenEncontrado=True)
    world.respond(world.outbox.last("segundo"), estadoDocumento="VIGENTE", nombreCoincide=True)
    world.fail(world.outbox.last("tercero"), FaultCode.ADAPTER_NOT_FOUND, entity=SISBEN, what="la persona")
    assert world.row(row.id).status == "compensando"
    compensations = [s for s in world.outbox.sent if s.compensation]
    assert [s.step for s in compensations] == ["segundo"]  # one at a time, the latest first
    world.respond(compensations[0])
    compensations = [s for s in world.outbox.sent if s.compensation]
    assert [s.step for s in compensations] == ["segundo", "primero"]
    assert all(s.recipient == SISBEN and s.call.service.code == "consultarSisben" for s in compensations)
    world.respond(compensations[1])
    done = world.row(row.id)
    assert (done.status, done.outcome) == ("fallida", "fallida")
    assert world.kinds(row.id).count("compensacion_hecha") == 2


def test_a_human_task_is_completed_only_by_its_entity_with_its_fields(tmp_path: Path, registry: SchemaRegistry
                                                                       ) -> None:
    definition = chain("""
  - id: visita
    task: {title: Visita técnica al proyecto, entity: CO/GOB/900467239, fields: [resultadoVisita]}
    deadline: 10dh
  - id: decidir
    choice: [{if: "resultadoVisita == 'favorable'", next: bien}]
    otherwise: mal
  - {id: bien, end: favorable}
  - {id: mal, end: desfavorable}
""")
    world = world_for(tmp_path, registry, definition)
    row = world.orchestrator.start("prueba", {"numDocumento": "1020304050"})
    (task,) = world.orchestrator.store.tasks(entity=ANLA)
    assert task.title == "Visita técnica al proyecto" and task.due_at is not None
    assert world.row(row.id).holders == (ANLA,) and "tarea_abierta" in world.kinds(row.id)
    with pytest.raises(GelFault) as refused:
        world.orchestrator.complete_task(task.id, {"resultadoVisita": "favorable"}, entity=SISBEN, official="x")
    assert refused.value.falla.code == FaultCode.CHAIN_TASK_FORBIDDEN
    with pytest.raises(GelFault) as incomplete:
        world.orchestrator.complete_task(task.id, {}, entity=ANLA, official="Ing. Rojas")
    assert incomplete.value.falla.code == FaultCode.CHAIN_TASK_FIELDS
    closed = world.orchestrator.complete_task(task.id, {"resultadoVisita": "favorable"}, entity=ANLA,
                                              official="Ing. Rojas")
    assert closed.status == "completada" and closed.completed_by == f"Ing. Rojas ({ANLA})"
    assert world.row(row.id).outcome == "favorable"
    with pytest.raises(GelFault) as again:
        world.orchestrator.complete_task(task.id, {"resultadoVisita": "x"}, entity=ANLA, official="Ing. Rojas")
    assert again.value.falla.code == FaultCode.CHAIN_TASK_CLOSED


def test_a_breached_deadline_marks_the_case_late_and_may_escalate(tmp_path: Path, registry: SchemaRegistry) -> None:
    definition = chain(f"""
  - id: identidad
{indent(IDENTITY, 4)}
    deadline: {{within: 2h, then: escalar}}
  - {{id: fin, end: listo}}
  - id: escalar
    task: {{title: Revisar el caso atrasado, entity: CO/PLAT/900000002, fields: [decision]}}
  - {{id: escalado, end: escalado}}
""")
    world = world_for(tmp_path, registry, definition)
    row = world.orchestrator.start("prueba", {"numDocumento": "1020304050"})
    world.clock.advance(hours=1, minutes=59)
    world.orchestrator.fire_due_timers()
    assert not world.row(row.id).late
    world.clock.advance(minutes=2)
    world.orchestrator.fire_due_timers()
    late = world.row(row.id)
    assert late.late and late.steps == ("escalar",) and "plazo_vencido" in world.kinds(row.id)
    world.respond(world.outbox.sent[0], estadoDocumento="VIGENTE", nombreCoincide=True)  # too late to matter
    assert world.row(row.id).steps == ("escalar",)


def test_a_deadline_without_escalation_keeps_waiting_marked_late(tmp_path: Path, registry: SchemaRegistry) -> None:
    definition = chain(f"""
  - id: identidad
{indent(IDENTITY, 4)}
    deadline: 5m
  - {{id: fin, end: listo}}
""")
    world = world_for(tmp_path, registry, definition)
    row = world.orchestrator.start("prueba", {"numDocumento": "1020304050"})
    world.clock.advance(minutes=6)
    world.orchestrator.fire_due_timers()
    assert world.row(row.id).late and world.row(row.id).status == "en_curso"
    world.respond(world.outbox.sent[0], estadoDocumento="VIGENTE", nombreCoincide=True)
    assert world.row(row.id).outcome == "listo" and world.row(row.id).late


def test_a_durable_timer_waits_in_working_days(tmp_path: Path, registry: SchemaRegistry) -> None:
    definition = chain("""
  - {id: esperar, wait: 1dh}
  - {id: fin, end: listo}
""")
    world = world_for(tmp_path, registry, definition)
    world.clock.now = dt.datetime(2026, 11, 27, 15, 0, tzinfo=dt.UTC)  # a Friday
    row = world.orchestrator.start("prueba", {"numDocumento": "1020304050"})
    world.clock.advance(days=1)  # Saturday: not a working day
    world.orchestrator.fire_due_timers()
    assert world.row(row.id).status == "en_curso"
    world.clock.advance(days=2)  # Monday
    world.orchestrator.fire_due_timers()
    assert world.row(row.id).outcome == "listo"


def test_an_event_about_the_case_moves_it_on(tmp_path: Path, registry: SchemaRegistry) -> None:
    definition = chain("""
  - id: decision
    event: {service: asignarSubsidio, version: "1.0", from: CO/GOB/830121208}
  - {id: fin, end: decidido}
""")
    world = world_for(tmp_path, registry, definition)
    row = world.orchestrator.start("prueba", {"numDocumento": "1020304050"})
    event = ServiceRef("asignarSubsidio", "1.0")
    assert not world.orchestrator.on_event(key="PRB-2026-999999", service=event, sender=FONVIVIENDA,
                                           payload=None, message_id="e0")
    world.orchestrator.on_event(key=row.radicado, service=ServiceRef("asignarSubsidio", "2.0"), sender=FONVIVIENDA,
                                payload=None, message_id="e1")
    world.orchestrator.on_event(key=row.radicado, service=event, sender=SISBEN, payload=None, message_id="e2")
    assert world.row(row.id).status == "en_curso"
    assert world.kinds(row.id).count("evento_ignorado") == 2
    world.orchestrator.on_event(key=row.id, service=event, sender=FONVIVIENDA, payload=None, message_id="e3")
    assert world.row(row.id).outcome == "decidido"


def test_a_repeated_start_request_starts_nothing_new(tmp_path: Path, registry: SchemaRegistry) -> None:
    definition = chain(f"""
  - id: identidad
{indent(IDENTITY, 4)}
""")
    world = world_for(tmp_path, registry, definition)
    first = world.orchestrator.start("prueba", {"numDocumento": "1020304050"}, key="solicitud-1")
    again = world.orchestrator.start("prueba", {"numDocumento": "1020304050"}, key="solicitud-1")
    assert first.id == again.id and len(world.outbox.sent) == 1
    with pytest.raises(GelFault) as missing:
        world.orchestrator.start("prueba", {})
    assert missing.value.falla.code == FaultCode.CHAIN_INPUT_MISSING


def test_running_instances_keep_their_version_and_an_edit_must_change_the_version(
        tmp_path: Path, registry: SchemaRegistry) -> None:
    body_v1 = f"""
  - id: identidad
{indent(IDENTITY, 4)}
  - {{id: fin, end: version_uno}}
"""
    v1 = chain(body_v1)
    world = world_for(tmp_path, registry, v1)
    old = world.orchestrator.start("prueba", {"numDocumento": "1020304050"})
    v2 = chain(body_v1.replace("version_uno", "version_dos"), version=2)
    edited = world_for(tmp_path, registry, v2)  # a new process: the library holds only v2 now
    new = edited.orchestrator.start("prueba", {"numDocumento": "1019876543"})
    edited.respond(world.outbox.sent[0], estadoDocumento="VIGENTE", nombreCoincide=True)
    edited.respond(edited.outbox.sent[0], estadoDocumento="VIGENTE", nombreCoincide=True)
    assert (edited.row(old.id).outcome, edited.row(new.id).outcome) == ("version_uno", "version_dos")
    sneaky = world_for(tmp_path, registry, chain(body_v1.replace("version_uno", "otra_cosa")))
    with pytest.raises(GelFault) as changed:
        sneaky.orchestrator.start("prueba", {"numDocumento": "79845123"})
    assert changed.value.falla.code == FaultCode.CHAIN_VERSION_CHANGED


def test_an_unbuildable_request_fails_the_step_with_a_coded_fault(tmp_path: Path, registry: SchemaRegistry) -> None:
    definition = chain(f"""
  - id: identidad
{indent(IDENTITY.replace("from: numDocumento", "from: numDocumento + ' con letras'"), 4)}
  - {{id: fin, end: listo}}
""")
    world = world_for(tmp_path, registry, definition)
    row = world.orchestrator.start("prueba", {"numDocumento": "1020304050"})
    done = world.row(row.id)
    assert done.status == "fallida" and world.outbox.sent == []
    assert "solicitud_invalida" in world.kinds(row.id)


def test_a_branch_failing_as_the_parallel_step_starts_stops_the_other_branches(tmp_path: Path,
                                                                              registry: SchemaRegistry) -> None:
    definition = chain(f"""
  - id: cruces
    parallel:
      - - id: identidad
{indent(IDENTITY.replace("from: numDocumento", "from: numDocumento + ' con letras'"), 10)}
      - - id: sisben
{indent(SISBEN_CALL, 10)}
  - {{id: fin, end: listo}}
""")
    world = world_for(tmp_path, registry, definition)
    row = world.orchestrator.start("prueba", {"numDocumento": "1020304050"})
    done = world.row(row.id)
    assert done.status == "fallida" and world.outbox.sent == [] and done.holders == ()
