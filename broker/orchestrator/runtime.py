"""The orchestrator: starts instances, feeds them what happens (replies, events, timers, completed tasks)
and commits each transition — new state, history, timers, tasks and the messages to send — in one
transaction. How messages leave is the `Dispatcher`'s business: signed into the outbox on the bus, or
answered by simulated entities under a virtual clock."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from lxml import etree
from sqlalchemy.engine import Connection

from broker.gelxml.envelope import ServiceRef
from broker.gelxml.faults import FaultCode, fault
from broker.logs import get_logger
from broker.orchestrator.definition import ChainDefinition, definition_from_text, latest
from broker.orchestrator.engine import Effect, Engine, Finish, History, InstanceState, OpenTask, Schedule, Send
from broker.orchestrator.store import InstanceRow, OrchestratorStore, TaskRow, TimerRow
from broker.storage import iso as _iso

__all__ = ["Clock", "Dispatcher", "Orchestrator"]

Clock = Callable[[], dt.datetime]
_COLOMBIA = dt.timezone(dt.timedelta(hours=-5), "COT")


def system_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Dispatcher(Protocol):
    def send(self, connection: Connection, state: InstanceState, effect: Send) -> None:
        """Queue the request in the transaction of the transition that decided it."""

    def committed(self) -> None:
        """The transition committed: what was queued may leave now."""


class _Conflict(Exception):
    """Another process moved the instance between read and write; the transition is tried again."""


class Orchestrator:
    def __init__(self, store: OrchestratorStore, engine: Engine, library: Mapping[tuple[str, int], ChainDefinition],
                 dispatcher: Dispatcher, *, clock: Clock = system_clock, folder: str = "chains") -> None:
        self.store = store
        self.engine = engine
        self.library = dict(library)
        self.dispatcher = dispatcher
        self.clock = clock
        self.folder = folder
        self.log = get_logger(component="orquestador")
        self._lock = threading.RLock()
        self._by_digest: dict[str, ChainDefinition] = {d.digest: d for d in self.library.values()}

    # -- definitions ------------------------------------------------------------------------------------
    def definition(self, chain: str, version: int | None = None) -> ChainDefinition:
        found = self.library.get((chain, version)) if version is not None else latest(self.library, chain)
        if found is None:
            names = ", ".join(sorted({f"{n} v{v}" for n, v in self.library})) or "ninguna"
            raise fault(FaultCode.CHAIN_UNKNOWN, chain=chain, version=f" versión {version}" if version else "",
                        folder=self.folder, available=names)
        return found

    def _definition_of(self, row: InstanceRow) -> ChainDefinition:
        known = self._by_digest.get(row.digest)
        if known is None:
            text = self.store.definition_text(row.digest)
            if text is None:
                raise RuntimeError(f"la definición {row.digest} de la instancia {row.id} no está guardada")
            known = definition_from_text(text, source=f"{row.chain} v{row.version} (guardada)")
            self._by_digest[row.digest] = known
        return known

    def start_definition(self, definition: ChainDefinition) -> None:
        """Check the definition is stored as it is (refusing an edit that kept the version number)."""
        with self.store.transaction() as connection:
            other = self.store.remember_definition(connection, definition.digest, definition.name,
                                                   definition.version, definition.text)
        if other is not None:
            raise fault(FaultCode.CHAIN_VERSION_CHANGED, chain=definition.name, version=definition.version,
                        source=definition.source)

    # -- starting ---------------------------------------------------------------------------------------
    def start(self, chain: str, inputs: Mapping[str, Any], *, key: str | None = None, started_by: str | None = None,
              version: int | None = None) -> InstanceRow:
        """Start an instance (or return the one `key` already started: a repeated request starts nothing)."""
        definition = self.definition(chain, version)
        missing = [name for name in definition.inputs if inputs.get(name) in (None, "", [])]
        if missing:
            raise fault(FaultCode.CHAIN_INPUT_MISSING, chain=chain, fields=", ".join(missing))
        self.start_definition(definition)
        with self._lock:
            now = self.clock()
            with self.store.transaction() as connection:
                if key is not None and (existing := self.store.by_start_key(connection, key)) is not None:
                    return existing
                number = self.store.next_number(connection, f"{definition.radicado_prefix}-{now.year}")
                radicado = f"{definition.radicado_prefix}-{now.year}-{number:06d}"
                instance_id = str(uuid.uuid4())
                context = {"entidadSolicitante": started_by, **inputs, "idCadena": instance_id,
                           "fechaHoraRadicacion": now.astimezone(_COLOMBIA).isoformat(timespec="seconds")}
                state, effects = self.engine.start(definition, instance_id, radicado, context, now)
                self.store.insert_instance(
                    connection, id=instance_id, chain=definition.name, version=definition.version,
                    digest=definition.digest, radicado=radicado, start_key=key, started_by=started_by,
                    status=state.status, started_at=_iso(now), updated_at=_iso(now), revision=0,
                    state="{}", holders="", steps="", late=False)
                row = self.store.load(connection, instance_id)
                assert row is not None
                self._persist(connection, row, definition, state, effects, now)
                result = self.store.load(connection, instance_id)
            self.dispatcher.committed()
        self.log.info("cadena.iniciada", idCadena=instance_id, radicado=radicado, cadena=definition.name)
        assert result is not None
        return result

    # -- what happens to instances ----------------------------------------------------------------------
    def on_reply(self, *, correlation: str, fault_reply: bool, payload: etree._Element | None, message_id: str,
                 values: Mapping[str, Any] | None = None) -> bool:
        """A response or falla to a request an instance sent; False when no instance sent it."""
        instance_id = self.store.instance_of_message(correlation)
        if instance_id is None:
            return False

        def step(definition: ChainDefinition, state: InstanceState, now: dt.datetime,
                 connection: Connection) -> list[Effect]:
            self.store.mark_answered(connection, correlation, now)
            return self.engine.on_reply(definition, state, correlation=correlation, fault=fault_reply,
                                        payload=payload, message_id=message_id, now=now, values=values)
        self._transition(instance_id, step)
        return True

    def on_event(self, *, key: str, service: ServiceRef, sender: str, payload: etree._Element | None,
                 message_id: str, values: Mapping[str, Any] | None = None) -> bool:
        """An event about the instance with id or radicado `key`; False when there is none."""
        row = self.store.get(key)
        if row is None:
            return False
        self._transition(row.id, lambda d, s, now, _c: self.engine.on_event(
            d, s, service=service, sender=sender, payload=payload, message_id=message_id, now=now, values=values))
        return True

    def complete_task(self, task_id: int, values: Mapping[str, Any], *, entity: str, official: str) -> TaskRow:
        task = self.store.task(task_id)
        if task is None:
            raise fault(FaultCode.CHAIN_TASK_NOT_FOUND, task=task_id)
        if task.entity != entity:
            raise fault(FaultCode.CHAIN_TASK_FORBIDDEN, task=task_id, title=task.title, entity=task.entity, by=entity)
        if task.status != "abierta":
            raise fault(FaultCode.CHAIN_TASK_CLOSED, task=task_id, status=task.status)
        missing = [f for f in task.fields if values.get(f) in (None, "")]
        if missing:
            raise fault(FaultCode.CHAIN_TASK_FIELDS, task=task_id, title=task.title, fields=", ".join(missing))
        by = f"{official} ({entity})"
        chosen = {k: v for k, v in values.items() if k in task.fields}

        def step(definition: ChainDefinition, state: InstanceState, now: dt.datetime,
                 connection: Connection) -> list[Effect]:
            self.store.close_task(connection, task_id, status="completada", by=by, values=chosen, at=now)
            return self.engine.on_task(definition, state, token_id=task.token, ref=task.ref, values=chosen, by=by,
                                       now=now)
        self._transition(task.instance, step)
        closed = self.store.task(task_id)
        assert closed is not None
        return closed

    def fire_due_timers(self, now: dt.datetime | None = None) -> int:
        """Fire every timer due by now (each exactly once, even with several orchestrators)."""
        moment = now or self.clock()
        fired = 0
        while due := self.store.due_timers(moment):
            fired_now = self._fire(due)
            fired += fired_now
            if not fired_now:
                break
        return fired

    def _fire(self, due: list[TimerRow]) -> int:
        fired = 0
        for timer in due:
            def step(definition: ChainDefinition, state: InstanceState, at: dt.datetime, connection: Connection,
                     timer: Any = timer) -> list[Effect] | None:
                if not self.store.claim_timer(connection, timer.id, at):
                    return None
                return self.engine.on_timer(definition, state, token_id=timer.token, kind=timer.kind, ref=timer.ref,
                                            now=at)
            if self._transition(timer.instance, step):
                fired += 1
        return fired

    # -- transitions ------------------------------------------------------------------------------------
    def _transition(self, instance_id: str,
                    step: Callable[[ChainDefinition, InstanceState, dt.datetime, Connection], list[Effect] | None]
                    ) -> bool:
        for _ in range(20):
            try:
                with self._lock:
                    with self.store.transaction() as connection:
                        row = self.store.load(connection, instance_id)
                        if row is None:
                            return False
                        definition = self._definition_of(row)
                        state = InstanceState.from_json(row.state)
                        now = self.clock()
                        effects = step(definition, state, now, connection)
                        if effects is None:
                            return False
                        self._persist(connection, row, definition, state, effects, now)
                    self.dispatcher.committed()
                return True
            except _Conflict:
                continue
        raise RuntimeError(f"la instancia {instance_id} cambia sin cesar; no se pudo aplicar la transición")

    def _persist(self, connection: Connection, row: InstanceRow, definition: ChainDefinition, state: InstanceState,
                 effects: list[Effect], now: dt.datetime) -> None:
        ended = False
        for effect in effects:
            if isinstance(effect, Send):
                self.dispatcher.send(connection, state, effect)
                self.store.add_message(connection, effect.message_id, state.id, effect.step, effect.recipient, now)
            elif isinstance(effect, Schedule):
                self.store.add_timer(connection, state.id, effect.token, effect.kind, effect.ref, effect.due)
            elif isinstance(effect, OpenTask):
                self.store.add_task(connection, instance=state.id, token=effect.token, ref=effect.ref,
                                    step=effect.step, title=effect.title, entity=effect.entity, fields=effect.fields,
                                    due=effect.due, at=now)
            elif isinstance(effect, History):
                self.store.add_event(connection, state.id, now, effect.kind, effect.step, dict(effect.detail))
            elif isinstance(effect, Finish):
                ended = True
        live = {t.ref for t in state.tokens.values() if t.ref}
        self.store.cancel_stale_tasks(connection, state.id, live, now)
        if ended:
            self.store.drop_timers(connection, state.id, now)
        holders = sorted({h for t in state.tokens.values()
                          if (h := t.holder or definition.index[t.step].holder) and t.phase != "uniendo"})
        steps = sorted({t.step for t in state.tokens.values() if t.phase != "uniendo"})
        dues = [t.due for t in state.tokens.values() if t.due]
        saved = self.store.save(
            connection, row, status=state.status, outcome=state.outcome, summary=state.summary, late=state.late,
            holders=",".join(holders), steps=",".join(steps), due_at=min(dues) if dues else None,
            updated_at=_iso(now), ended_at=_iso(now) if state.finished else None,
            state=_dumps(state))
        if not saved:
            raise _Conflict()


def _dumps(state: InstanceState) -> str:
    return json.dumps(state.to_json(), ensure_ascii=False, default=str)
