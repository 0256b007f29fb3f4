"""The chain engine: pure transitions of one instance's state, driven by what happens to it.

The engine knows no chain: it interprets a `ChainDefinition`. Each entry point (`start`, `on_reply`,
`on_timer`, `on_task`, `on_event`) mutates the instance's `InstanceState` and returns the `Effect`s the
runtime must persist in the same transaction: messages to send (through the outbox), timers, human tasks,
history entries. The state is plain JSON, so an instance survives any restart exactly as it was committed.

Tokens are the places where an instance is active: one per running branch. Each token waits on at most
one thing (a reply, a timer, a task, an event), named by `ref`; a reply, timer or task whose ref is no
longer the token's is stale (a retried request's late answer, a cancelled timer) and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from lxml import etree

from broker.gelxml.envelope import ServiceRef
from broker.gelxml.registry import SchemaRegistry
from broker.orchestrator.definition import CallSpec, ChainDefinition, Step
from broker.orchestrator.expressions import ExpressionError, compile_expression
from broker.orchestrator.payloads import PayloadError, build_payload, capture, read_fault

__all__ = [
    "STATUS_NAMES", "Effect", "Engine", "Finish", "History", "InstanceState", "OpenTask", "Schedule", "Send", "Token",
]

RUNNING = "en_curso"
COMPENSATING = "compensando"
STATUS_NAMES = {RUNNING: "En curso", COMPENSATING: "Revirtiendo pasos", "completada": "Completada",
                "fallida": "Fallida"}
"""How operators read an instance's status (the CLI and the dashboard)."""
STEP_TIMEOUT = "GEL-CHAIN-STEP_TIMEOUT"
BAD_REQUEST = "GEL-CHAIN-REQUEST"
BAD_DATA = "GEL-CHAIN-EXPRESSION"


@dataclass
class Token:
    id: str
    step: str
    parent: str | None = None
    phase: str = "activo"
    ref: str | None = None
    attempt: int = 0
    pending: int = 0
    since: str | None = None
    due: str | None = None
    late: bool = False
    holder: str | None = None
    deadline_ref: str | None = None


@dataclass
class InstanceState:
    id: str
    radicado: str
    context: dict[str, Any]
    tokens: dict[str, Token] = field(default_factory=dict)
    compensations: list[str] = field(default_factory=list)
    status: str = RUNNING
    outcome: str | None = None
    summary: str | None = None
    late: bool = False
    counter: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InstanceState:
        values = dict(data)
        values["tokens"] = {k: Token(**v) for k, v in data.get("tokens", {}).items()}
        return cls(**values)

    @property
    def finished(self) -> bool:
        return self.status not in (RUNNING, COMPENSATING)


@dataclass(frozen=True, slots=True)
class Send:
    message_id: str
    token: str
    step: str
    call: CallSpec
    recipient: str
    payload: etree._Element
    attempt: int
    compensation: bool = False


@dataclass(frozen=True, slots=True)
class Schedule:
    token: str
    kind: str
    ref: str
    due: dt.datetime


@dataclass(frozen=True, slots=True)
class OpenTask:
    token: str
    ref: str
    step: str
    title: str
    entity: str
    fields: tuple[str, ...]
    due: dt.datetime | None


@dataclass(frozen=True, slots=True)
class History:
    kind: str
    step: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Finish:
    status: str
    outcome: str
    summary: str | None


Effect = Send | Schedule | OpenTask | History | Finish


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds")


class _Run:
    """One transition: the definition, the state it mutates, the clock reading and the effects so far."""

    def __init__(self, engine: Engine, definition: ChainDefinition, state: InstanceState, now: dt.datetime) -> None:
        self.engine = engine
        self.definition = definition
        self.steps = definition.index
        self.state = state
        self.now = now
        self.effects: list[Effect] = []

    def note(self, kind: str, step: str | None = None, **detail: Any) -> None:
        self.effects.append(History(kind, step, detail))

    def new_token(self, step: str, parent: str | None = None) -> Token:
        self.state.counter += 1
        token = Token(id=f"t{self.state.counter}", step=step, parent=parent)
        self.state.tokens[token.id] = token
        return token

    def new_ref(self, token: Token) -> str:
        self.state.counter += 1
        token.ref = f"{token.id}.{self.state.counter}"
        return token.ref

    # -- moving tokens ----------------------------------------------------------------------------------
    def enter(self, token: Token, step_id: str) -> None:
        token = self.escape(token, step_id)
        step = self.steps[step_id]
        token.step, token.phase, token.attempt, token.late, token.due = step.id, "activo", 0, False, None
        token.holder = None
        token.since = _iso(self.now)
        self.note("paso_iniciado", step.id, titulo=step.title, tipo=step.kind)
        token.deadline_ref = None
        if step.deadline is not None:
            due = step.deadline.within.after(self.now)
            self.state.counter += 1
            token.due, token.deadline_ref = _iso(due), f"{token.id}.plazo.{self.state.counter}"
            self.effects.append(Schedule(token.id, "deadline", token.deadline_ref, due))
        try:
            getattr(self, f"enter_{step.kind}")(token, step)
        except ExpressionError as exc:
            self.fail(token, BAD_DATA, str(exc))

    def enter_call(self, token: Token, step: Step) -> None:
        self.dispatch(token, step)

    def enter_parallel(self, token: Token, step: Step) -> None:
        token.phase, token.pending = "uniendo", len(step.branches)
        for branch in step.branches:
            if token.id not in self.state.tokens or token.step != step.id:
                return  # a branch failed the chain or jumped out of the parallel step as it started
            self.enter(self.new_token(branch[0].id, parent=token.id), branch[0].id)

    def enter_choice(self, token: Token, step: Step) -> None:
        for condition, target in step.choices:
            if condition(self.state.context):
                self.note("decision", step.id, condicion=condition.source, siguiente=target)
                self.enter(token, target)
                return
        if step.otherwise is None:
            self.fail(token, BAD_DATA, f"ninguna condición de {step.id} se cumplió y no hay otherwise")
            return
        self.note("decision", step.id, condicion="otherwise", siguiente=step.otherwise)
        self.enter(token, step.otherwise)

    def enter_set(self, token: Token, step: Step) -> None:
        for name, expression in step.assignments:
            self.state.context[name] = expression(self.state.context)
        self.note("datos_calculados", step.id, campos=[name for name, _ in step.assignments])
        self.advance(token)

    def enter_task(self, token: Token, step: Step) -> None:
        token.phase = "tarea"
        ref = self.new_ref(token)
        assert step.task_entity is not None
        token.holder = entity_of(step.task_entity, self.state.context)
        due = dt.datetime.fromisoformat(token.due) if token.due else None
        self.effects.append(OpenTask(token.id, ref, step.id, step.title, token.holder, step.task_fields, due))
        self.note("tarea_abierta", step.id, titulo=step.title, entidad=token.holder)

    def enter_event(self, token: Token, step: Step) -> None:
        token.phase = "evento"
        self.new_ref(token)

    def enter_wait(self, token: Token, step: Step) -> None:
        assert step.wait is not None
        token.phase = "temporizador"
        self.effects.append(Schedule(token.id, "wait", self.new_ref(token), step.wait.after(self.now)))

    def enter_end(self, token: Token, step: Step) -> None:
        assert step.outcome is not None
        if step.status == "fallida":
            self.fail(token, step.outcome, step.summary or step.title, outcome=step.outcome)
            return
        self.finish("completada", step.outcome, step.summary)

    def escape(self, token: Token, target: str) -> Token:
        """Jumping out of a parallel branch (a failed cross-check ends the wait for the others): the branch's
        parallel step gives up its other branches and continues at `target` itself."""
        lists = self.engine.lists(self.definition)
        while token.parent is not None and target not in lists[token.step]:
            parent = self.state.tokens[token.parent]
            self.drop_descendants(parent.id)
            self.note("ramas_abandonadas", parent.step, hacia=target)
            token = parent
        return token

    def drop_descendants(self, ancestor: str) -> None:
        children = [t for t in self.state.tokens.values() if t.parent == ancestor]
        for child in children:
            self.drop_descendants(child.id)
            del self.state.tokens[child.id]

    def advance(self, token: Token) -> None:
        step = self.steps[token.step]
        target = step.next or self.following(step)
        if target is not None:
            self.enter(token, target)
            return
        del self.state.tokens[token.id]
        if token.parent is None:
            self.finish("completada", "completada", None)
            return
        parent = self.state.tokens[token.parent]
        parent.pending -= 1
        if parent.pending == 0:
            self.note("ramas_unidas", parent.step)
            self.advance(parent)

    def following(self, step: Step) -> str | None:
        for candidate, siblings in self.definition.walk():
            if candidate.id == step.id:
                position = siblings.index(candidate)
                return siblings[position + 1].id if position + 1 < len(siblings) else None
        return None

    # -- calls ------------------------------------------------------------------------------------------
    def dispatch(self, token: Token, step: Step) -> None:
        assert step.call is not None
        token.attempt += 1
        token.phase = "esperando_respuesta"
        try:
            payload, recipient = self.engine.request(step.call, self.state.context)
        except (PayloadError, ExpressionError) as exc:
            self.note("solicitud_invalida", step.id, detalle=str(exc))
            self.fault(token, BAD_REQUEST, str(exc), retryable=False)
            return
        message_id = str(uuid.uuid4())
        token.ref, token.holder = message_id, recipient
        self.effects.append(Send(message_id, token.id, step.id, step.call, recipient, payload, token.attempt))
        self.note("solicitud_enviada", step.id, servicio=str(step.call.service), entidad=recipient,
                  idMensaje=message_id, intento=token.attempt)
        if step.timeout is not None:
            self.effects.append(Schedule(token.id, "timeout", message_id, step.timeout.after(self.now)))

    def reply(self, token: Token, payload: etree._Element | None, message_id: str,
              given: Mapping[str, Any] | None) -> None:
        step = self.steps[token.step]
        assert step.call is not None
        values = capture(payload, _namespace(payload), step.call.reply) if payload is not None else dict(given or {})
        self.state.context.update(values)
        if step.compensate is not None:
            self.state.compensations.append(step.id)
        self.note("respuesta_recibida", step.id, entidad=token.holder, idMensaje=message_id,
                  campos=sorted(values), tarde=token.late)
        token.ref = None
        self.advance(token)

    def fault(self, token: Token, code: str, text: str, *, retryable: bool) -> None:
        step = self.steps[token.step]
        self.state.context.update(falla_codigo=code, falla_descripcion=text, falla_paso=step.id)
        if retryable and step.kind == "call" and token.attempt < step.retry.attempts:
            wait = step.retry.wait(token.attempt)
            token.phase = "reintento"
            ref = self.new_ref(token)
            self.note("reintento_programado", step.id, codigo=code, espera_s=round(wait), intento=token.attempt + 1)
            self.effects.append(Schedule(token.id, "retry", ref, self.now + dt.timedelta(seconds=wait)))
            return
        self.note("falla", step.id, codigo=code, descripcion=text, reintentable=retryable)
        if step.on_fault is not None:
            self.enter(token, step.on_fault)
            return
        self.fail(token, code, text)

    # -- ending -----------------------------------------------------------------------------------------
    def fail(self, token: Token, code: str, text: str, *, outcome: str | None = None) -> None:
        for other in self.state.tokens.values():
            other.ref = None
        self.state.tokens = {}
        self.state.context.update(falla_codigo=code, falla_descripcion=text)
        self.state.outcome = outcome or "fallida"
        self.state.summary = text
        if self.state.compensations:
            self.state.status = COMPENSATING
            self.note("compensacion_iniciada", None, pasos=list(reversed(self.state.compensations)))
            self.compensate_next()
            return
        self.finish("fallida", self.state.outcome, text)

    def compensate_next(self) -> None:
        if not self.state.compensations:
            self.finish("fallida", self.state.outcome or "fallida", self.state.summary)
            return
        step = self.steps[self.state.compensations.pop()]
        assert step.compensate is not None
        token = self.new_token(step.id)
        token.phase = "compensando"
        try:
            payload, recipient = self.engine.request(step.compensate, self.state.context)
        except (PayloadError, ExpressionError) as exc:
            self.note("compensacion_fallida", step.id, detalle=str(exc))
            del self.state.tokens[token.id]
            self.compensate_next()
            return
        token.ref, token.holder = str(uuid.uuid4()), recipient
        self.effects.append(Send(token.ref, token.id, step.id, step.compensate, recipient, payload, 1,
                                 compensation=True))
        self.note("compensacion_enviada", step.id, servicio=str(step.compensate.service), entidad=recipient,
                  idMensaje=token.ref)

    def finish(self, status: str, outcome: str, summary: str | None) -> None:
        for token in self.state.tokens.values():
            token.ref = None
        self.state.tokens = {}
        self.state.status, self.state.outcome = status, outcome
        self.state.summary = _render(summary, self.state.context) if summary else self.state.summary
        self.note("cadena_terminada", None, estado=status, resultado=outcome)
        self.effects.append(Finish(status, outcome, self.state.summary))


def entity_of(reference: str, context: Mapping[str, Any]) -> str:
    """An entity named by id (`CO/GOB/899999040`) or, without a slash, by an expression giving one."""
    if "/" in reference:
        return reference
    value = compile_expression(reference)(context)
    if not isinstance(value, str) or "/" not in value:
        raise ExpressionError(f"{reference!r} no dio un id de entidad (dio {value!r})")
    return value


def _namespace(payload: etree._Element) -> str:
    return etree.QName(payload).namespace or ""


def _render(template: str, context: Mapping[str, Any]) -> str:
    try:
        return template.format_map(_Missing(context))
    except (ValueError, IndexError):
        return template


class _Missing(dict[str, Any]):
    def __init__(self, context: Mapping[str, Any]) -> None:
        super().__init__(context)

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class Engine:
    """Interprets chain definitions; holds nothing but the schema registry it builds payloads with."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry
        self._lists: dict[str, dict[str, frozenset[str]]] = {}

    def lists(self, definition: ChainDefinition) -> dict[str, frozenset[str]]:
        """For each step, the ids of the list it belongs to (jumping elsewhere leaves its branch)."""
        known = self._lists.get(definition.digest)
        if known is None:
            known = {step.id: frozenset(s.id for s in siblings) for step, siblings in definition.walk()}
            self._lists[definition.digest] = known
        return known

    def request(self, call: CallSpec, context: Mapping[str, Any]) -> tuple[etree._Element, str]:
        """The request payload for `context`, validated, and the entity it goes to."""
        service = self.registry.service(call.service.code, call.service.version)
        if service is None:
            raise PayloadError(f"el servicio {call.service} no está en el registro de esquemas")
        payload = build_payload(service.root_tag(service.request_root), service.namespace, call.request, context,
                                self.registry)
        return payload, entity_of(call.to, context)

    def start(self, definition: ChainDefinition, instance_id: str, radicado: str, inputs: Mapping[str, Any],
              now: dt.datetime) -> tuple[InstanceState, list[Effect]]:
        state = InstanceState(id=instance_id, radicado=radicado, context={**inputs, "radicado": radicado})
        run = _Run(self, definition, state, now)
        run.note("cadena_iniciada", None, cadena=definition.name, version=definition.version)
        if definition.deadline is not None:
            run.effects.append(Schedule("cadena", "chain_deadline", f"{instance_id}.plazo",
                                        definition.deadline.after(now)))
        run.enter(run.new_token(definition.steps[0].id), definition.steps[0].id)
        return state, run.effects

    def on_reply(self, definition: ChainDefinition, state: InstanceState, *, correlation: str, fault: bool,
                 payload: etree._Element | None, message_id: str, now: dt.datetime,
                 values: Mapping[str, Any] | None = None) -> list[Effect]:
        """`values` stand for the captured reply when there is no payload (simulated entities)."""
        run = _Run(self, definition, state, now)
        token = next((t for t in state.tokens.values() if t.ref == correlation), None)
        if token is None:
            run.note("respuesta_ignorada", None, idCorrelacion=correlation, idMensaje=message_id)
            return run.effects
        if token.phase == "compensando":
            if fault:
                code, text, _ = read_fault(payload)
                run.note("compensacion_fallida", token.step, codigo=code, descripcion=text)
            else:
                run.note("compensacion_hecha", token.step, idMensaje=message_id)
            del state.tokens[token.id]
            run.compensate_next()
            return run.effects
        if fault:
            code, text, retryable = read_fault(payload)
            run.fault(token, code, text, retryable=retryable)
        else:
            try:
                run.reply(token, payload, message_id, values)
            except ExpressionError as exc:
                run.fail(token, BAD_DATA, str(exc))
        return run.effects

    def on_timer(self, definition: ChainDefinition, state: InstanceState, *, token_id: str, kind: str, ref: str,
                 now: dt.datetime) -> list[Effect]:
        run = _Run(self, definition, state, now)
        if kind == "chain_deadline":
            if not state.finished and not state.late:
                state.late = True
                run.note("plazo_vencido", None, alcance="cadena")
            return run.effects
        token = state.tokens.get(token_id)
        if token is None:
            return run.effects
        step = definition.index[token.step]
        if kind == "deadline":
            if ref != token.deadline_ref or token.late:
                return run.effects
            token.late = True
            state.late = True
            run.note("plazo_vencido", step.id, alcance="paso", entidad=step.holder)
            if step.deadline is not None and step.deadline.then is not None:
                token.ref = None
                run.enter(token, step.deadline.then)
            return run.effects
        if token.ref != ref:
            return run.effects
        if kind == "retry":
            run.dispatch(token, step)
        elif kind == "timeout":
            run.fault(token, STEP_TIMEOUT, f"{step.holder} no respondió a tiempo", retryable=True)
        elif kind == "wait":
            token.ref = None
            run.note("temporizador_cumplido", step.id)
            run.advance(token)
        return run.effects

    def on_task(self, definition: ChainDefinition, state: InstanceState, *, token_id: str, ref: str,
                values: Mapping[str, Any], by: str, now: dt.datetime) -> list[Effect]:
        run = _Run(self, definition, state, now)
        token = state.tokens.get(token_id)
        if token is None or token.ref != ref:
            return run.effects
        state.context.update(values)
        token.ref = None
        run.note("tarea_completada", token.step, por=by, campos=sorted(values))
        run.advance(token)
        return run.effects

    def on_event(self, definition: ChainDefinition, state: InstanceState, *, service: ServiceRef, sender: str,
                 payload: etree._Element | None, message_id: str, now: dt.datetime,
                 values: Mapping[str, Any] | None = None) -> list[Effect]:
        """`values` stand for the captured event when there is no payload (simulated entities)."""
        run = _Run(self, definition, state, now)
        given = values
        for token in list(state.tokens.values()):
            step = definition.index[token.step]
            if (token.phase == "evento" and step.event_service == service and step.event_from in (None, sender)):
                captured = (capture(payload, _namespace(payload), step.captures) if payload is not None
                            else dict(given or {}))
                state.context.update(captured)
                token.ref = None
                run.note("evento_recibido", step.id, entidad=sender, idMensaje=message_id, campos=sorted(captured))
                run.advance(token)
                return run.effects
        run.note("evento_ignorado", None, servicio=str(service), entidad=sender, idMensaje=message_id)
        return run.effects
