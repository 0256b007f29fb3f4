"""Chain definitions: YAML data in chains/, loaded into frozen values the engine interprets.

```yaml
chain: vivienda-postulacion           # the chain's code; with `version` it names one definition
version: 1                            # raise it for any change: running instances keep theirs
title: Ventanilla Única de Subsidios de Vivienda — postulación
radicado: VUV                         # prefix of the radicados it assigns (VUV-2026-000001)
inputs: [numDocumento, ...]           # context fields a start must provide
deadline: 36dh                        # legal term of the whole chain (optional)
start:                                # optional: a request to the orchestrator starts an instance
  service: radicarPostulacion
  version: "1.0"
  capture: [{ctx: numDocumento, gel: "svc:hogar/svc:jefeHogar/per:persona/per:identificacion/per:numDocumento"}]
  reply: [{gel: svc:radicado, from: radicado}, ...]
steps:
  - id: identidad
    title: Verificar identidad
    call: {service: verificarIdentidad, version: "1.0", to: CO/GOB/899999040}
    request: [...]                    # payloads.RequestRule list
    reply: [...]                      # payloads.Capture list
    retry: {attempts: 3, initial: 30s, maximum: 10m}
    timeout: 10m                      # no answer by then counts as a retryable fault
    deadline: {within: 2h, then: escalar}   # legal term: when breached, mark late (and go to `then`)
    on_fault: avisar                  # a non-retryable fault goes there (default: the chain fails)
    compensate: {call: {...}, request: [...]}   # undoes this step if a later step fails
  - {id: cruces, parallel: [[...steps...], [...steps...]]}
  - {id: decidir, choice: [{if: "puntaje >= 600", next: asignar}], otherwise: negar}
  - {id: calcular, set: {valorSolicitado: "min(tope, valorVivienda - ahorroPrevio)"}}
  - {id: visita, task: {title: Visita técnica, entity: CO/GOB/900467239, fields: [resultadoVisita]}}
  - {id: decision, event: {service: asignarSubsidio, version: "1.0", from: CO/GOB/830121208}, capture: [...]}
  - {id: esperar, wait: 3d}
  - {id: asignado, end: asignado, status: completada, summary: "Subsidio asignado por {valorAsignado}"}
```
Steps run in list order unless `next` (or a choice) says otherwise; a branch of a parallel step ends when
its list ends, and the parallel step continues when every branch has.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from broker.gelxml.envelope import ServiceRef
from broker.orchestrator.durations import Duration, parse_duration
from broker.orchestrator.expressions import Expression, ExpressionError, compile_expression
from broker.orchestrator.payloads import Capture, RequestRule, capture_from, rule_from

__all__ = [
    "TERMINAL_STATUSES",
    "CallSpec",
    "ChainDefinition",
    "Deadline",
    "DefinitionError",
    "Retry",
    "StartSpec",
    "Step",
    "definition_from_text",
    "load_definition",
    "load_library",
]

STEP_KINDS = ("call", "parallel", "choice", "set", "task", "event", "wait", "end")
TERMINAL_STATUSES = ("completada", "fallida")
_COMMON_KEYS = {"id", "title", "next"}
_KIND_KEYS: dict[str, set[str]] = {
    "call": {"request", "reply", "retry", "timeout", "deadline", "on_fault", "compensate", "simulate"},
    "parallel": set(),
    "choice": {"otherwise"},
    "set": set(),
    "task": {"deadline", "simulate"},
    "event": {"capture", "deadline", "simulate"},
    "wait": set(),
    "end": {"status", "summary"},
}


_THIRTY_SECONDS = Duration(30, "s")
_TEN_MINUTES = Duration(10, "m")


class DefinitionError(ValueError):
    """A chain definition that cannot be loaded; the message names the file and the step."""


@dataclass(frozen=True, slots=True)
class Retry:
    attempts: int = 1
    initial: Duration = _THIRTY_SECONDS
    maximum: Duration = _TEN_MINUTES

    def wait(self, attempt: int) -> float:
        """Seconds before attempt number `attempt + 1`."""
        return min(self.initial.seconds * 2 ** (attempt - 1), self.maximum.seconds)


@dataclass(frozen=True, slots=True)
class Deadline:
    within: Duration
    then: str | None = None
    """A step to go to when the term is breached; None keeps waiting, marked late."""


@dataclass(frozen=True, slots=True)
class CallSpec:
    service: ServiceRef
    to: str
    request: tuple[RequestRule, ...] = ()
    reply: tuple[Capture, ...] = ()


@dataclass(frozen=True, slots=True)
class Step:
    id: str
    kind: str
    title: str
    next: str | None = None
    call: CallSpec | None = None
    retry: Retry = Retry()
    timeout: Duration | None = None
    deadline: Deadline | None = None
    on_fault: str | None = None
    compensate: CallSpec | None = None
    branches: tuple[tuple[Step, ...], ...] = ()
    choices: tuple[tuple[Expression, str], ...] = ()
    otherwise: str | None = None
    assignments: tuple[tuple[str, Expression], ...] = ()
    task_entity: str | None = None
    task_fields: tuple[str, ...] = ()
    event_service: ServiceRef | None = None
    event_from: str | None = None
    captures: tuple[Capture, ...] = ()
    wait: Duration | None = None
    outcome: str | None = None
    status: str = "completada"
    summary: str | None = None
    simulate: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def holder(self) -> str | None:
        """The entity that must act for the step to finish."""
        if self.call is not None:
            return self.call.to
        return self.task_entity or self.event_from


@dataclass(frozen=True, slots=True)
class StartSpec:
    service: ServiceRef
    captures: tuple[Capture, ...] = ()
    reply: tuple[RequestRule, ...] = ()


@dataclass(frozen=True, slots=True)
class ChainDefinition:
    name: str
    version: int
    title: str
    steps: tuple[Step, ...]
    inputs: tuple[str, ...] = ()
    radicado_prefix: str = "CAD"
    deadline: Duration | None = None
    start: StartSpec | None = None
    description: str = ""
    simulation: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    source: str = "<cadena>"
    text: str = field(default="", compare=False, hash=False, repr=False)

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, self.version)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def walk(self) -> Iterator[tuple[Step, tuple[Step, ...]]]:
        """Every step with the list it belongs to (branches included), depth first."""
        def visit(steps: tuple[Step, ...]) -> Iterator[tuple[Step, tuple[Step, ...]]]:
            for step in steps:
                yield step, steps
                for branch in step.branches:
                    yield from visit(branch)
        yield from visit(self.steps)

    @property
    def index(self) -> dict[str, Step]:
        return {step.id: step for step, _ in self.walk()}


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source
        self.where = ""

    def fail(self, message: str) -> DefinitionError:
        return DefinitionError(f"Cadena {self.source}{self.where}: {message}")

    def target(self, value: Any, what: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(f"{what} debe ser el id de un paso, no {value!r}")
        return value

    def names(self, value: Any, what: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(f"{what} debe ser una lista de nombres de campo")
        return tuple(value)

    def duration(self, value: Any, what: str) -> Duration:
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.fail(f"{what}: {exc}") from None

    def expression(self, value: Any) -> Expression:
        try:
            return compile_expression(value)
        except ExpressionError as exc:
            raise self.fail(str(exc)) from None

    def service(self, raw: Any, *, need_to: bool) -> tuple[ServiceRef, str | None]:
        if not isinstance(raw, Mapping) or "service" not in raw or (need_to and "to" not in raw):
            raise self.fail("call necesita service, version y to (la entidad que lo presta)")
        extra = set(raw) - {"service", "version", "to", "from"}
        if extra:
            raise self.fail(f"clave desconocida {sorted(extra)[0]!r} en el servicio")
        return ServiceRef(str(raw["service"]), str(raw.get("version", "1.0"))), raw.get("to") or raw.get("from")

    def rules(self, raw: Any) -> tuple[RequestRule, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise self.fail("request debe ser una lista de reglas")
        try:
            return tuple(rule_from(item) for item in raw)
        except (ValueError, TypeError, AttributeError) as exc:
            raise self.fail(str(exc)) from None

    def captures(self, raw: Any) -> tuple[Capture, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise self.fail("reply/capture debe ser una lista de capturas")
        try:
            return tuple(capture_from(item) for item in raw)
        except (ValueError, TypeError, AttributeError) as exc:
            raise self.fail(str(exc)) from None

    def call(self, raw: Any, request: Any, reply: Any) -> CallSpec:
        service, to = self.service(raw, need_to=True)
        return CallSpec(service, str(to), self.rules(request), self.captures(reply))

    def steps(self, raw: Any) -> tuple[Step, ...]:
        if not isinstance(raw, list) or not raw:
            raise self.fail("steps (y cada rama de parallel) debe ser una lista no vacía de pasos")
        return tuple(self.step(item) for item in raw)

    def step(self, raw: Any) -> Step:
        if not isinstance(raw, Mapping) or "id" not in raw:
            raise self.fail(f"cada paso necesita id (se encontró {raw!r})")
        step_id = str(raw["id"])
        outer, self.where = self.where, f", paso {step_id}"
        kinds = [k for k in STEP_KINDS if k in raw]
        if len(kinds) != 1:
            raise self.fail(f"el paso debe tener exactamente una de {', '.join(STEP_KINDS)}")
        kind = kinds[0]
        unknown = set(raw) - _COMMON_KEYS - {kind} - _KIND_KEYS[kind]
        if unknown:
            raise self.fail(f"clave desconocida {sorted(unknown)[0]!r} para un paso {kind}")
        body = raw[kind]
        values: dict[str, Any] = {"id": step_id, "kind": kind, "title": str(raw.get("title", step_id)),
                                  "next": self.target(raw.get("next"), "next"), "simulate": raw.get("simulate") or {}}
        if "deadline" in raw:
            deadline = raw["deadline"]
            if not isinstance(deadline, Mapping):
                deadline = {"within": deadline}
            values["deadline"] = Deadline(self.duration(deadline.get("within"), "deadline.within"),
                                          self.target(deadline.get("then"), "deadline.then"))
        if kind == "call":
            values["call"] = self.call(body, raw.get("request"), raw.get("reply"))
            retry = raw.get("retry") or {}
            values["retry"] = Retry(int(retry.get("attempts", 1)),
                                    self.duration(retry.get("initial", "30s"), "retry.initial"),
                                    self.duration(retry.get("maximum", "10m"), "retry.maximum"))
            if "timeout" in raw:
                values["timeout"] = self.duration(raw["timeout"], "timeout")
            values["on_fault"] = self.target(raw.get("on_fault"), "on_fault")
            if "compensate" in raw:
                comp = raw["compensate"]
                if not isinstance(comp, Mapping) or "call" not in comp:
                    raise self.fail("compensate necesita call (y request)")
                values["compensate"] = self.call(comp["call"], comp.get("request"), None)
        elif kind == "parallel":
            if not isinstance(body, list) or len(body) < 2:
                raise self.fail("parallel necesita al menos dos ramas (listas de pasos)")
            values["branches"] = tuple(self.steps(branch) for branch in body)
        elif kind == "choice":
            if not isinstance(body, list) or not body:
                raise self.fail("choice necesita una lista de {if, next}")
            choices = []
            for item in body:
                if not isinstance(item, Mapping) or set(item) != {"if", "next"}:
                    raise self.fail(f"cada opción de choice es {{if: condición, next: paso}}, no {item!r}")
                choices.append((self.expression(item["if"]), str(item["next"])))
            values["choices"] = tuple(choices)
            values["otherwise"] = self.target(raw.get("otherwise"), "otherwise")
        elif kind == "set":
            if not isinstance(body, Mapping) or not body:
                raise self.fail("set necesita {campo: expresión}")
            values["assignments"] = tuple((str(k), self.expression(v)) for k, v in body.items())
        elif kind == "task":
            if not isinstance(body, Mapping) or "entity" not in body:
                raise self.fail("task necesita entity (la entidad cuyo funcionario la completa) y fields")
            values["title"] = str(body.get("title", values["title"]))
            values["task_entity"] = str(body["entity"])
            values["task_fields"] = self.names(body.get("fields"), "task.fields")
        elif kind == "event":
            service, sender = self.service(body, need_to=False)
            values["event_service"], values["event_from"] = service, sender
            values["captures"] = self.captures(raw.get("capture"))
        elif kind == "wait":
            values["wait"] = self.duration(body, "wait")
        elif kind == "end":
            values["outcome"] = str(body)
            values["status"] = str(raw.get("status", "completada"))
            if values["status"] not in TERMINAL_STATUSES:
                raise self.fail(f"status debe ser {' o '.join(TERMINAL_STATUSES)}")
            values["summary"] = raw.get("summary")
        self.where = outer
        return Step(**values)


_TOP_KEYS = {"chain", "version", "title", "description", "radicado", "inputs", "deadline", "start", "steps",
             "simulation"}


def definition_from_text(text: str, *, source: str = "<cadena>") -> ChainDefinition:
    """Load a definition; any malformed part is a DefinitionError naming the file and the step."""
    reader = _Reader(source)
    try:
        return _definition(reader, text)
    except DefinitionError:
        raise
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        raise reader.fail(f"estructura no válida ({exc})") from None


def _definition(reader: _Reader, text: str) -> ChainDefinition:
    source = reader.source
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise reader.fail(f"no es YAML válido: {exc}") from None
    if not isinstance(data, Mapping):
        raise reader.fail("el archivo debe ser un objeto con chain, version, title y steps")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise reader.fail(f"clave desconocida {sorted(unknown)[0]!r} (admitidas: {', '.join(sorted(_TOP_KEYS))})")
    if "chain" not in data or "version" not in data or "steps" not in data:
        raise reader.fail("faltan chain, version o steps")
    try:
        version = int(data["version"])
    except (TypeError, ValueError):
        raise reader.fail("version debe ser un número entero (1, 2, …)") from None
    start = None
    if data.get("start") is not None:
        raw = data["start"]
        service, _ = reader.service({k: v for k, v in raw.items() if k in ("service", "version")}, need_to=False)
        start = StartSpec(service, reader.captures(raw.get("capture")), reader.rules(raw.get("reply")))
    return ChainDefinition(
        name=str(data["chain"]), version=version, title=str(data.get("title", data["chain"])),
        description=str(data.get("description", "")), steps=reader.steps(data["steps"]),
        inputs=reader.names(data.get("inputs"), "inputs"), radicado_prefix=str(data.get("radicado", "CAD")),
        deadline=reader.duration(data["deadline"], "deadline") if data.get("deadline") else None,
        start=start, simulation=data.get("simulation") or {}, source=source, text=text,
    )


def load_definition(path: Path) -> ChainDefinition:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DefinitionError(f"No se pudo leer la cadena {path}: {exc.strerror or exc}") from None
    return definition_from_text(text, source=str(path))


def load_library(folder: Path) -> dict[tuple[str, int], ChainDefinition]:
    """Every definition under `folder` (archived versions in subfolders too), by (chain, version)."""
    library: dict[tuple[str, int], ChainDefinition] = {}
    for path in sorted(folder.rglob("*.yaml")):
        definition = load_definition(path)
        if definition.key in library:
            raise DefinitionError(f"La cadena {definition.name} versión {definition.version} aparece dos veces: "
                                  f"{library[definition.key].source} y {path}")
        library[definition.key] = definition
    return library


def latest(library: Mapping[tuple[str, int], ChainDefinition], name: str) -> ChainDefinition | None:
    versions: Sequence[ChainDefinition] = sorted((d for d in library.values() if d.name == name),
                                                 key=lambda d: d.version)
    return versions[-1] if versions else None
