"""Simulating a chain: N cases run through the real `Orchestrator` and `Engine` under a virtual clock, with
the entities, officials and events played by a seeded random model declared in the definition.

The model lives in the definition itself, beside what it simulates:

```yaml
simulation:
  scenarios:                      # declaration order is display order; `gel chains simulate` knows actual/nuevo
    actual: {description: Ventanilla física y papel entre oficinas, handoff: 3d..15d, timeouts: false}
    nuevo: {description: Ventanilla única sobre la plataforma GEL-XML}
  inputs: {tipoDocumento: CC, numDocumento: "1020304050"}   # what every simulated case starts with (and
                                                            # entidadSolicitante, if a step answers it)
  arrivals: 1h                    # a new case every hour (default 0: all start together)
  figures:                        # the program's published figures, shown beside the results
    - {label: Asignación del subsidio, outcome: asignado, actual: "4,2 meses", nuevo: "1,2 meses"}
    - {label: Verificación de derechos, step: derechos, actual: 2d, nuevo: "< 5 minutos"}
steps:
  - id: identidad
    call: {service: verificarIdentidad, version: "1.0", to: CO/GOB/899999040}
    simulate:
      actual: {duration: 20d..45d, handoffs: 2}     # the step's own time, plus 2 hand-offs of 3d..15d each
      nuevo: {duration: 5s..2m}
      replies:                                       # the answer's values, drawn by probability (sum 1)
        - {p: 0.85, set: {documentoVigente: true}}
        - {p: 0.15, set: {documentoVigente: false}}
      fault: {p: 0.02, code: GEL-ADAPTER-LEGACY_UNAVAILABLE, retryable: true}
```

Per step, a scenario block (`actual:`, `nuevo:`) gives `duration` (`parse_range`: `2h`, `2h..3d`, uniform) and
`handoffs` (how many times the case's papers change office, each costing the scenario's `handoff` range;
`timeouts: false` on a scenario without the platform drops the steps' `timeout`s, which only the orchestrator
enforces); a
step with no block for the scenario takes no time. `replies` and `fault` may also sit inside a scenario
block, overriding the step's own. What each kind of step does:

- `call`: the request really is built (and schema-validated) by the engine; the simulated entity answers it
  after the step's time with one of `replies` (whose `set` names the step's `reply` captures), or, with
  probability `fault.p` per attempt, with a `falla` carrying `fault.code` (the engine's retry policy, timeouts
  and `on_fault` apply as in production). Compensation requests are acknowledged at once.
- `task`: a simulated official of the task's entity completes it after the step's time; `set` gives every
  field the task asks for.
- `event`: the event arrives after the step's time; `set` names the step's `capture`s.
- `wait`, `deadline`, `timeout`, retries: the engine's own timers, fired when the virtual clock reaches them.

`simulate(definition, cases=N, scenario=..., seed=..., registry=...)` runs the cases (a discrete-event loop:
the earliest pending reply, task completion, event, start or due timer goes next) on a throw-away in-memory
SQLite store, and returns a `SimulationReport`: per outcome the count and cycle-time distribution, per
step the mean time spent in it, and the program's figures. The same seed gives the same report.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import logging
import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import structlog
from lxml import etree
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine as SqlEngine
from sqlalchemy.pool import StaticPool

from broker.gelxml.faults import Falla, FaultCode, GelFault, Stage
from broker.gelxml.namespaces import COMMON_PREFIXES
from broker.gelxml.registry import SchemaRegistry
from broker.orchestrator.definition import ChainDefinition, Step
from broker.orchestrator.durations import DurationRange, parse_duration, parse_range
from broker.orchestrator.engine import Effect, Engine, Finish, History, InstanceState, OpenTask, Send
from broker.orchestrator.runtime import Orchestrator
from broker.orchestrator.store import OrchestratorStore

__all__ = [
    "SCENARIO_UNKNOWN",
    "SIMULATION_INVALID",
    "Distribution",
    "Figure",
    "OutcomeResult",
    "Scenario",
    "SimulatedDispatcher",
    "SimulationError",
    "SimulationModel",
    "SimulationReport",
    "StepModel",
    "StepResult",
    "VirtualClock",
    "read_model",
    "readable",
    "simulate",
]

SCENARIO_UNKNOWN = "GEL-CHAIN-SCENARIO_UNKNOWN"
SIMULATION_INVALID = "GEL-CHAIN-SIMULATION_INVALID"
EPOCH = dt.datetime(2026, 2, 2, 13, 0, tzinfo=dt.UTC)
"""Monday 2 February 2026, 08:00 in Bogotá: when the first simulated case starts."""
HORIZON = dt.timedelta(days=3650)
"""Virtual time after the last start beyond which a case is counted as unfinished (a chain that loops)."""
SIMULATED_SENDER = "CO/SIM/000000000"

_TOP_KEYS = {"scenarios", "inputs", "arrivals", "figures"}
_SCENARIO_KEYS = {"description", "handoff", "timeouts"}
_BLOCK_KEYS = {"duration", "handoffs", "replies", "fault"}
_SHARED_KEYS = {"replies", "fault"}
_FAULT_KEYS = {"p", "code", "retryable", "description"}
_SCALAR_CAPTURES = ("text", "number", "integer", "boolean")
_WAIT_ENDS = {"respuesta_recibida", "tarea_completada", "evento_recibido", "temporizador_cumplido", "ramas_unidas"}
_WAITING_KINDS = ("call", "task", "event", "wait", "parallel")
_MINUTE, _HOUR, _DAY = 60.0, 3600.0, 86400.0
_MONTH = 30 * _DAY


class SimulationError(ValueError):
    """A simulation that cannot run as asked; the Spanish message names the chain and the step."""

    def __init__(self, message: str, code: str = SIMULATION_INVALID) -> None:
        super().__init__(message)
        self.code = code


# -- the model ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Reply:
    p: float
    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SimulatedFault:
    p: float
    code: str
    retryable: bool
    description: str

    def payload(self) -> etree._Element:
        return Falla(self.code, self.description, Stage.ADAPTER, retryable=self.retryable).to_xml()


@dataclass(frozen=True, slots=True)
class StepModel:
    """How one step behaves in one scenario."""

    duration: DurationRange | None = None
    handoffs: int = 0
    replies: tuple[Reply, ...] = ()
    fault: SimulatedFault | None = None

    def delay(self, rng: random.Random, handoff: DurationRange | None) -> float:
        seconds = self.duration.sample(rng) if self.duration is not None else 0.0
        if handoff is not None:
            seconds += sum(handoff.sample(rng) for _ in range(self.handoffs))
        return seconds

    def reply(self, rng: random.Random) -> Mapping[str, Any]:
        if not self.replies:
            return {}
        draw, total = rng.random(), 0.0
        for option in self.replies:
            total += option.p
            if draw < total:
                return option.values
        return self.replies[-1].values

    def faulted(self, rng: random.Random) -> SimulatedFault | None:
        return self.fault if self.fault is not None and rng.random() < self.fault.p else None


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str = ""
    handoff: DurationRange | None = None
    timeouts: bool = True
    """False for a scenario without the platform (the situación actual): the steps' `timeout`s, which only
    the platform's orchestrator enforces, do not apply."""


@dataclass(frozen=True, slots=True)
class Figure:
    """A published figure: the cycle time of the cases ending in `outcome` (all finished cases when neither
    is given), or the time spent in `step`; `published` holds the program's text per scenario."""

    label: str
    published: Mapping[str, str]
    outcome: str | None = None
    step: str | None = None


@dataclass(frozen=True, slots=True)
class SimulationModel:
    scenarios: tuple[Scenario, ...]
    inputs: Mapping[str, Any]
    arrivals: float
    figures: tuple[Figure, ...]
    steps: Mapping[str, Mapping[str, StepModel]]
    """scenario → step id → model; a step missing here takes no time and answers with no values."""

    def scenario(self, name: str) -> Scenario:
        for scenario in self.scenarios:
            if scenario.name == name:
                return scenario
        known = ", ".join(s.name for s in self.scenarios) or "ninguno"
        raise SimulationError(f"el escenario {name!r} no está declarado (declarados: {known})", SCENARIO_UNKNOWN)

    def step(self, scenario: str, step_id: str) -> StepModel:
        return self.steps.get(scenario, {}).get(step_id, _NOTHING)


_NOTHING = StepModel()


class _ModelReader:
    def __init__(self, definition: ChainDefinition) -> None:
        self.definition = definition
        self.where = ""

    def fail(self, message: str) -> SimulationError:
        return SimulationError(f"Cadena {self.definition.name} v{self.definition.version}, simulation{self.where}: "
                               f"{message}")

    def mapping(self, raw: Any, what: str) -> Mapping[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            raise self.fail(f"{what} debe ser un objeto {{clave: valor}}, no {raw!r}")
        return raw

    def known(self, raw: Mapping[str, Any], allowed: Iterable[str], what: str) -> None:
        allowed = set(allowed)
        unknown = sorted(str(k) for k in set(raw) - allowed)
        if unknown:
            raise self.fail(f"clave desconocida {unknown[0]!r} en {what} (admitidas: {', '.join(sorted(allowed))})")

    def range(self, raw: Any, what: str) -> DurationRange:
        try:
            found = parse_range(raw)
        except ValueError as exc:
            raise self.fail(f"{what}: {exc}; un rango es 2h..3d") from None
        if found.high.seconds < found.low.seconds:
            raise self.fail(f"{what}: el rango {raw!r} termina antes de empezar")
        return found

    def probability(self, raw: Any, what: str) -> float:
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise self.fail(f"{what} debe ser una probabilidad entre 0 y 1, no {raw!r}") from None
        if not 0 <= value <= 1:
            raise self.fail(f"{what} debe estar entre 0 y 1, no {raw!r}")
        return value

    def read(self) -> SimulationModel:
        top = self.mapping(self.definition.simulation, "simulation")
        if not top:
            raise self.fail("la cadena no declara una sección simulation (escenarios, datos de entrada, tiempos)")
        self.known(top, _TOP_KEYS, "simulation")
        scenarios = self.scenarios(top.get("scenarios"))
        names = [s.name for s in scenarios]
        inputs = dict(self.mapping(top.get("inputs"), "inputs"))
        missing = [name for name in self.definition.inputs if inputs.get(name) in (None, "", [])]
        if missing:
            raise self.fail(f"inputs no da valor a {', '.join(missing)}, que la cadena exige para iniciar")
        arrivals = 0.0
        if top.get("arrivals") is not None:
            try:
                arrivals = parse_duration(top["arrivals"]).seconds
            except ValueError as exc:
                raise self.fail(f"arrivals: {exc}") from None
        steps: dict[str, dict[str, StepModel]] = {name: {} for name in names}
        for step, _ in self.definition.walk():
            if step.simulate:
                self.where = f", paso {step.id}"
                for scenario, model in self.step(step, scenarios).items():
                    steps[scenario][step.id] = model
                self.where = ""
        figures = self.figures(top.get("figures"), names)
        return SimulationModel(scenarios, inputs, arrivals, figures, steps)

    def scenarios(self, raw: Any) -> tuple[Scenario, ...]:
        found = self.mapping(raw, "scenarios")
        if not found:
            raise self.fail("scenarios debe declarar al menos un escenario (actual, nuevo)")
        result = []
        for name, body in found.items():
            self.where = f", escenario {name}"
            body = self.mapping(body, f"el escenario {name}")
            self.known(body, _SCENARIO_KEYS, f"el escenario {name}")
            handoff = self.range(body["handoff"], "handoff") if body.get("handoff") is not None else None
            timeouts = body.get("timeouts", True)
            if not isinstance(timeouts, bool):
                raise self.fail(f"el escenario {name}: timeouts debe ser true o false, no {timeouts!r}")
            result.append(Scenario(str(name), str(body.get("description", "")), handoff, timeouts))
        self.where = ""
        return tuple(result)

    def step(self, step: Step, scenarios: Sequence[Scenario]) -> dict[str, StepModel]:
        if step.kind == "wait":
            raise self.fail("un paso wait no lleva simulate: su espera es el temporizador que ya declara")
        raw = self.mapping(step.simulate, "simulate")
        names = [s.name for s in scenarios]
        self.known(raw, {*names, *_SHARED_KEYS}, "simulate")
        shared_replies = self.replies(step, raw.get("replies"), "simulate.replies")
        shared_fault = self.fault(step, raw.get("fault"), "simulate.fault")
        models: dict[str, StepModel] = {}
        for scenario in scenarios:
            block = self.mapping(raw.get(scenario.name), f"simulate.{scenario.name}")
            self.known(block, _BLOCK_KEYS, f"simulate.{scenario.name}")
            duration = (self.range(block["duration"], f"simulate.{scenario.name}.duration")
                        if block.get("duration") is not None else None)
            handoffs = block.get("handoffs", 0)
            if not isinstance(handoffs, int) or isinstance(handoffs, bool) or handoffs < 0:
                raise self.fail(f"simulate.{scenario.name}.handoffs debe ser un entero ≥ 0, no {handoffs!r}")
            if handoffs and scenario.handoff is None:
                raise self.fail(f"simulate.{scenario.name}.handoffs pide {handoffs} traslados, pero el escenario "
                                f"{scenario.name} no declara cuánto cuesta uno (handoff: 1d..5d)")
            replies = (self.replies(step, block["replies"], f"simulate.{scenario.name}.replies")
                       if "replies" in block else shared_replies)
            fault = (self.fault(step, block["fault"], f"simulate.{scenario.name}.fault")
                     if "fault" in block else shared_fault)
            if step.kind == "task" and step.task_fields and not replies:
                raise self.fail(f"la tarea pide {', '.join(step.task_fields)}: simulate.replies debe darles valor")
            models[scenario.name] = StepModel(duration, handoffs, replies, fault)
        return models

    def replies(self, step: Step, raw: Any, what: str) -> tuple[Reply, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list) or not raw:
            raise self.fail(f"{what} debe ser una lista de {{p: probabilidad, set: {{campo: valor}}}}")
        allowed, noun = self.settable(step)
        result = []
        for item in raw:
            if not isinstance(item, Mapping) or not set(item) <= {"p", "set"}:
                raise self.fail(f"cada opción de {what} es {{p: probabilidad, set: {{campo: valor}}}}, no {item!r}")
            if "p" not in item and len(raw) > 1:
                raise self.fail(f"con varias opciones, cada una de {what} necesita p (su probabilidad)")
            values = dict(self.mapping(item.get("set"), f"{what}[].set"))
            strange = sorted(set(values) - allowed)
            if strange:
                raise self.fail(f"{what} da valor a {strange[0]!r}, que no es {noun} "
                                f"({', '.join(sorted(allowed)) or 'ninguno'})")
            if step.kind == "task":
                lacking = [f for f in step.task_fields if values.get(f) in (None, "")]
                if lacking:
                    raise self.fail(f"{what}: una opción no da valor a {', '.join(lacking)}, que la tarea exige")
            result.append(Reply(self.probability(item.get("p", 1), f"{what}[].p"), values))
        total = sum(r.p for r in result)
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise self.fail(f"las probabilidades de {what} suman {total:g}; deben sumar 1")
        return tuple(result)

    def settable(self, step: Step) -> tuple[set[str], str]:
        if step.kind == "call":
            assert step.call is not None
            return {c.ctx for c in step.call.reply}, "una captura del reply del paso"
        if step.kind == "task":
            return set(step.task_fields), "un campo de la tarea"
        unsupported = [c.ctx for c in step.captures if c.kind not in _SCALAR_CAPTURES]
        if unsupported:
            raise self.fail(f"la captura {unsupported[0]!r} del evento no es un valor simple "
                            f"({', '.join(_SCALAR_CAPTURES)}); no se puede simular")
        return {c.ctx for c in step.captures}, "una captura (capture) del evento"

    def fault(self, step: Step, raw: Any, what: str) -> SimulatedFault | None:
        if raw is None:
            return None
        if step.kind != "call":
            raise self.fail(f"{what}: solo un paso call recibe fallas")
        body = self.mapping(raw, what)
        self.known(body, _FAULT_KEYS, what)
        if not body.get("code"):
            raise self.fail(f"{what} necesita code (el código de la falla, p. ej. GEL-ADAPTER-LEGACY_UNAVAILABLE)")
        retryable = body.get("retryable", False)
        if not isinstance(retryable, bool):
            raise self.fail(f"{what}.retryable debe ser true o false, no {retryable!r}")
        return SimulatedFault(self.probability(body.get("p", 0), f"{what}.p"), str(body["code"]), retryable,
                              str(body.get("description", "falla simulada")))

    def figures(self, raw: Any, names: Sequence[str]) -> tuple[Figure, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise self.fail("figures debe ser una lista de {label, outcome o step, actual, nuevo}")
        index = self.definition.index
        outcomes = {s.outcome for s in index.values() if s.outcome} | {"completada", "fallida"}
        result = []
        for item in raw:
            body = self.mapping(item, "cada cifra de figures")
            self.known(body, {"label", "outcome", "step", *names}, "figures")
            if "label" not in body:
                raise self.fail(f"la cifra {dict(body)!r} necesita label")
            label = str(body["label"])
            outcome, step = body.get("outcome"), body.get("step")
            if outcome is not None and step is not None:
                raise self.fail(f"la cifra {label!r} se refiere a un resultado (outcome) o a un paso (step), "
                                "no a ambos")
            if outcome is not None and str(outcome) not in outcomes:
                raise self.fail(f"la cifra {label!r} habla del resultado {outcome!r}, que ningún paso end da "
                                f"(resultados: {', '.join(sorted(outcomes))})")
            if step is not None and str(step) not in index:
                raise self.fail(f"la cifra {label!r} habla del paso {step!r}, que la cadena no tiene")
            published = {name: str(body[name]) for name in names if body.get(name) is not None}
            result.append(Figure(label, published, None if outcome is None else str(outcome),
                                 None if step is None else str(step)))
        return tuple(result)


def read_model(definition: ChainDefinition) -> SimulationModel:
    """The definition's `simulation` section and steps' `simulate` blocks, checked; SimulationError otherwise."""
    return _ModelReader(definition).read()


# -- results --------------------------------------------------------------------------------------------
def _unit(seconds: float) -> tuple[float, str, str]:
    if seconds < _MINUTE:
        return 1.0, "segundo", "segundos"
    if seconds < _HOUR:
        return _MINUTE, "minuto", "minutos"
    if seconds < _DAY:
        return _HOUR, "hora", "horas"
    if seconds < _MONTH:
        return _DAY, "día", "días"
    return _MONTH, "mes", "meses"


def _number(value: float) -> str:
    text = f"{value:.0f}" if value >= 10 else f"{value:.1f}".removesuffix(".0")
    return text.replace(".", ",")


def readable(seconds: float) -> str:
    """`"4,1 meses"`, `"36 horas"`, `"inmediato"`: a duration in Spanish in its most readable unit (a month
    is 30 days)."""
    if seconds <= 0:
        return "inmediato"
    size, one, many = _unit(seconds)
    number = _number(seconds / size)
    return f"{number} {one if number == '1' else many}"


@dataclass(frozen=True, slots=True)
class Distribution:
    """Times in seconds: median, 90th percentile, mean and maximum of `count` samples."""

    count: int
    p50: float
    p90: float
    mean: float
    max: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Distribution:
        if not samples:
            return cls(0, 0.0, 0.0, 0.0, 0.0)
        ordered = sorted(samples)
        return cls(len(ordered), _percentile(ordered, 0.5), _percentile(ordered, 0.9),
                   math.fsum(ordered) / len(ordered), ordered[-1])

    @property
    def summary(self) -> str:
        """`"p50 4,1 · p90 4,6 · máx 5,2 meses"`; each figure in its own unit when they differ
        (`"p50 57 minutos · p90 16 días · máx 19 días"`)."""
        if self.count == 0:
            return "—"
        if self.max <= 0:
            return "inmediato"
        values = {"p50": self.p50, "p90": self.p90, "máx": self.max}
        units = {_unit(v) if v > 0 else None for v in values.values()}
        if len(units) > 1 or None in units:
            return " · ".join(f"{label} {readable(v)}" for label, v in values.items())
        size, one, many = _unit(self.max)
        numbers = {label: _number(v / size) for label, v in values.items()}
        unit = one if set(numbers.values()) == {"1"} else many
        return " · ".join(f"{label} {number}" for label, number in numbers.items()) + f" {unit}"

    def to_dict(self) -> dict[str, Any]:
        return {"casos": self.count, "p50_s": round(self.p50, 3), "p90_s": round(self.p90, 3),
                "media_s": round(self.mean, 3), "max_s": round(self.max, 3),
                "p50": readable(self.p50), "p90": readable(self.p90), "media": readable(self.mean),
                "max": readable(self.max)}


def _percentile(ordered: Sequence[float], q: float) -> float:
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True, slots=True)
class OutcomeResult:
    outcome: str
    status: str
    cycle: Distribution
    late: int
    """Cases of this outcome that breached a legal term (the chain's or a step's)."""

    @property
    def count(self) -> int:
        return self.cycle.count


@dataclass(frozen=True, slots=True)
class StepResult:
    step: str
    title: str
    kind: str
    waits: Distribution
    """Time from entering the step to leaving it normally (answer, completed task, event, timer, join)."""


@dataclass(frozen=True, slots=True)
class SimulationReport:
    chain: str
    version: int
    title: str
    scenario: Scenario
    cases: int
    seed: int
    outcomes: tuple[OutcomeResult, ...]
    cycle: Distribution
    steps: tuple[StepResult, ...]
    figures: tuple[Figure, ...]
    unfinished: int
    sent: int
    faults_injected: int
    retries: int
    failures: Mapping[str, int]
    """Fault codes of the cases that ended `fallida`."""
    transitions: int
    elapsed: float
    """Wall-clock seconds the simulation took."""

    def outcome(self, name: str) -> OutcomeResult | None:
        return next((o for o in self.outcomes if o.outcome == name), None)

    def share(self, name: str) -> float:
        found = self.outcome(name)
        return found.count / self.cases if found is not None and self.cases else 0.0

    def step(self, step_id: str) -> StepResult | None:
        return next((s for s in self.steps if s.step == step_id), None)

    def measured(self, figure: Figure) -> Distribution | None:
        """What the simulation gives for a published figure."""
        if figure.step is not None:
            found = self.step(figure.step)
            return found.waits if found is not None else None
        if figure.outcome is not None:
            outcome = self.outcome(figure.outcome)
            return outcome.cycle if outcome is not None else None
        return self.cycle

    def to_dict(self) -> dict[str, Any]:
        return {
            "cadena": self.chain, "version": self.version, "titulo": self.title,
            "escenario": self.scenario.name, "descripcion": self.scenario.description,
            "casos": self.cases, "semilla": self.seed, "sin_terminar": self.unfinished,
            "tiempo_de_ciclo": self.cycle.to_dict(),
            "resultados": [{"resultado": o.outcome, "estado": o.status, "fuera_de_plazo": o.late,
                            "proporcion": round(o.count / self.cases, 4) if self.cases else 0.0,
                            **o.cycle.to_dict()} for o in self.outcomes],
            "pasos": [{"paso": s.step, "titulo": s.title, "tipo": s.kind, **s.waits.to_dict()} for s in self.steps],
            "cifras": [{"indicador": f.label, "resultado": f.outcome, "paso": f.step,
                        "programa": f.published.get(self.scenario.name),
                        "simulado": m.to_dict() if (m := self.measured(f)) is not None else None}
                       for f in self.figures],
            "solicitudes": self.sent, "fallas_simuladas": self.faults_injected, "reintentos": self.retries,
            "fallas_finales": dict(self.failures), "transiciones": self.transitions,
            "duracion_s": round(self.elapsed, 3),
        }


# -- the virtual world ----------------------------------------------------------------------------------
class VirtualClock:
    """The orchestrator's clock in a simulation: it only moves when the event loop moves it."""

    def __init__(self, start: dt.datetime = EPOCH) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, moment: dt.datetime) -> None:
        self.now = max(self.now, moment)


@dataclass(frozen=True, slots=True)
class PlannedReply:
    """What a simulated entity will answer to one request, and when."""

    message_id: str
    step: str
    at: dt.datetime
    values: Mapping[str, Any] = field(default_factory=dict)
    fault: SimulatedFault | None = None


class SimulatedDispatcher:
    """Answers each request in the virtual world: `plan` decides the reply (and its virtual time) when the
    request is queued, `deliver` puts it on the agenda once the transition that sent it has committed, and
    `after` hears of every committed transition."""

    def __init__(self, plan: Callable[[InstanceState, Send], PlannedReply], deliver: Callable[[PlannedReply], None],
                 after: Callable[[], None] = lambda: None) -> None:
        self._plan = plan
        self._deliver = deliver
        self._after = after
        self._queued: list[PlannedReply] = []
        self.sent = 0
        self.faults = 0

    def send(self, connection: Connection, state: InstanceState, effect: Send) -> None:
        self._queued.append(self._plan(state, effect))

    def discard(self) -> None:
        self._queued.clear()

    def committed(self) -> None:
        for planned in self._queued:
            self.sent += 1
            self.faults += planned.fault is not None
            self._deliver(planned)
        self._queued.clear()
        self._after()


class _ObservedEngine(Engine):
    """The real engine, telling the simulation what each transition decided."""

    def __init__(self, registry: SchemaRegistry,
                 observe: Callable[[InstanceState, dt.datetime, list[Effect]], None]) -> None:
        super().__init__(registry)
        self._observe = observe

    def start(self, definition: ChainDefinition, instance_id: str, radicado: str, inputs: Mapping[str, Any],
              now: dt.datetime) -> tuple[InstanceState, list[Effect]]:
        state, effects = super().start(definition, instance_id, radicado, inputs, now)
        self._observe(state, now, effects)
        return state, effects

    def on_reply(self, definition: ChainDefinition, state: InstanceState, **kwargs: Any) -> list[Effect]:
        effects = super().on_reply(definition, state, **kwargs)
        self._observe(state, kwargs["now"], effects)
        return effects

    def on_timer(self, definition: ChainDefinition, state: InstanceState, **kwargs: Any) -> list[Effect]:
        effects = super().on_timer(definition, state, **kwargs)
        self._observe(state, kwargs["now"], effects)
        return effects

    def on_task(self, definition: ChainDefinition, state: InstanceState, **kwargs: Any) -> list[Effect]:
        effects = super().on_task(definition, state, **kwargs)
        self._observe(state, kwargs["now"], effects)
        return effects

    def on_event(self, definition: ChainDefinition, state: InstanceState, **kwargs: Any) -> list[Effect]:
        effects = super().on_event(definition, state, **kwargs)
        self._observe(state, kwargs["now"], effects)
        return effects


def _silent_logger() -> Any:
    return structlog.wrap_logger(structlog.ReturnLogger(), processors=[],
                                 wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))


def _event_payload(step: Step, values: Mapping[str, Any], namespace: str) -> etree._Element:
    """An element the step's captures read `values` from (the engine's on_event takes no values)."""
    prefixes = {**COMMON_PREFIXES, "svc": namespace}
    root = etree.Element(f"{{{namespace}}}eventoSimulado")
    for item in step.captures:
        if item.ctx not in values or values[item.ctx] is None:
            continue
        node = root
        for part in item.gel.split("/"):
            prefix, _, local = part.rpartition(":")
            node = etree.SubElement(node, f"{{{prefixes.get(prefix, namespace)}}}{local}")
        value = values[item.ctx]
        node.text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return root


class _SimulationStore(OrchestratorStore):
    """The real store on a throw-away database, minus the history nobody reads back (the simulation reads
    the engine's History effects as they happen), answering from memory what the event loop asks each turn:
    when the next timer is due and which instance sent a message."""

    def __init__(self, engine: SqlEngine) -> None:
        super().__init__(engine)
        self.timers: list[dt.datetime] = []
        """Due moments of the timers set so far (fired and dropped ones too: firing those does nothing)."""
        self._senders: dict[str, str] = {}
        self._with_tasks: set[str] = set()
        self._remembered: set[str] = set()

    def remember_definition(self, connection: Connection, digest: str, chain: str, version: int,
                            text: str) -> str | None:
        if digest in self._remembered:
            return None
        other = super().remember_definition(connection, digest, chain, version, text)
        if other is None:
            self._remembered.add(digest)
        return other

    def add_event(self, connection: Connection, instance: str, at: dt.datetime, kind: str, step: str | None,
                  detail: dict[str, Any]) -> None:
        return None

    def add_timer(self, connection: Connection, instance: str, token: str, kind: str, ref: str,
                  due: dt.datetime) -> None:
        super().add_timer(connection, instance, token, kind, ref, due)
        heapq.heappush(self.timers, due)

    def add_message(self, connection: Connection, message_id: str, instance: str, step: str, recipient: str,
                    at: dt.datetime) -> None:
        super().add_message(connection, message_id, instance, step, recipient, at)
        self._senders[message_id] = instance

    def instance_of_message(self, message_id: str) -> str | None:
        return self._senders.get(message_id) or super().instance_of_message(message_id)

    def add_task(self, connection: Connection, **values: Any) -> None:
        super().add_task(connection, **values)
        self._with_tasks.add(values["instance"])

    def cancel_stale_tasks(self, connection: Connection, instance: str, live_refs: set[str], at: dt.datetime) -> None:
        if instance in self._with_tasks:
            super().cancel_stale_tasks(connection, instance, live_refs, at)


class _World:
    """One scenario's run: the orchestrator on a throw-away store, and the agenda of what happens next."""

    def __init__(self, definition: ChainDefinition, model: SimulationModel, scenario: Scenario, *, seed: int,
                 registry: SchemaRegistry, start: dt.datetime) -> None:
        self.definition = definition
        self.model = model
        self.scenario = scenario
        self.registry = registry
        self.index = definition.index
        self.rng = random.Random(seed)
        self.clock = VirtualClock(start)
        self.agenda: list[tuple[dt.datetime, int, Callable[[], None]]] = []
        self.sequence = itertools.count()
        database = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
        self.store = _SimulationStore(database)
        self.dispatcher = SimulatedDispatcher(self.plan, self.schedule_reply, self.absorb)
        self.orchestrator = Orchestrator(self.store, _ObservedEngine(registry, self.observe),
                                         {definition.key: definition}, self.dispatcher, clock=self.clock,
                                         folder="simulación")
        self.orchestrator.log = _silent_logger()
        self.observed: tuple[InstanceState, dt.datetime, list[Effect]] | None = None
        self.started: dict[str, dt.datetime] = {}
        self.entered: dict[str, dict[str, dt.datetime]] = defaultdict(dict)
        self.late: set[str] = set()
        self.cycles: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.late_by_outcome: Counter[tuple[str, str]] = Counter()
        self.waits: dict[str, list[float]] = defaultdict(list)
        self.failures: Counter[str] = Counter()
        self.retries = 0
        self.transitions = 0
        self.finished = 0

    # -- the agenda -----------------------------------------------------------------------------------------
    def at(self, moment: dt.datetime, action: Callable[[], None]) -> None:
        heapq.heappush(self.agenda, (moment, next(self.sequence), action))

    def later(self, seconds: float) -> dt.datetime:
        return self.clock.now + dt.timedelta(seconds=seconds)

    def plan(self, state: InstanceState, send: Send) -> PlannedReply:
        if send.compensation:
            return PlannedReply(send.message_id, send.step, self.clock.now)
        model = self.model.step(self.scenario.name, send.step)
        moment = self.later(model.delay(self.rng, self.scenario.handoff))
        fault = model.faulted(self.rng)
        if fault is not None:
            return PlannedReply(send.message_id, send.step, moment, fault=fault)
        unset = {capture.ctx: None for capture in send.call.reply}  # as a real reply without those elements
        return PlannedReply(send.message_id, send.step, moment, values={**unset, **model.reply(self.rng)})

    def schedule_reply(self, planned: PlannedReply) -> None:
        def deliver() -> None:
            self.orchestrator.on_reply(
                correlation=planned.message_id, fault_reply=planned.fault is not None,
                payload=planned.fault.payload() if planned.fault is not None else None,
                message_id=f"sim-{next(self.sequence)}", values=planned.values)
        self.at(planned.at, deliver)

    def schedule_task(self, instance: str, task: OpenTask) -> None:
        found = next((t for t in self.store.tasks(instance=instance) if t.ref == task.ref), None)
        if found is None:
            return
        model = self.model.step(self.scenario.name, task.step)
        moment = self.later(model.delay(self.rng, self.scenario.handoff))
        values = dict(model.reply(self.rng))

        def complete() -> None:
            try:
                self.orchestrator.complete_task(found.id, values, entity=found.entity, official="simulación")
            except GelFault as exc:
                if exc.falla.code != FaultCode.CHAIN_TASK_CLOSED:
                    raise
        self.at(moment, complete)

    def schedule_event(self, instance: str, step: Step) -> None:
        assert step.event_service is not None
        service = step.event_service
        model = self.model.step(self.scenario.name, step.id)
        moment = self.later(model.delay(self.rng, self.scenario.handoff))
        values = model.reply(self.rng)
        known = self.registry.service(service.code, service.version)
        namespace = known.namespace if known is not None else f"urn:gel:simulacion:{service.code}"
        payload = _event_payload(step, values, namespace) if values else None

        def arrive() -> None:
            self.orchestrator.on_event(key=instance, service=service, sender=step.event_from or SIMULATED_SENDER,
                                       payload=payload, message_id=f"sim-{next(self.sequence)}")
        self.at(moment, arrive)

    # -- what the engine decided ----------------------------------------------------------------------------
    def observe(self, state: InstanceState, now: dt.datetime, effects: list[Effect]) -> None:
        self.observed = (state, now, effects)
        self.dispatcher.discard()

    def absorb(self) -> None:
        """Act on the last committed transition: waiting times, tasks and events to play, finished cases."""
        if self.observed is None:
            return
        state, now, effects = self.observed
        self.observed = None
        self.transitions += 1
        self.started.setdefault(state.id, now)
        entered = self.entered[state.id]
        for effect in effects:
            if isinstance(effect, History):
                self.history(state.id, entered, effect, now)
            elif isinstance(effect, OpenTask):
                self.schedule_task(state.id, effect)
            elif isinstance(effect, Finish):
                key = (effect.outcome, effect.status)
                self.cycles[key].append((now - self.started[state.id]).total_seconds())
                if state.id in self.late:
                    self.late_by_outcome[key] += 1
                if effect.status == "fallida":
                    self.failures[str(state.context.get("falla_codigo") or effect.outcome)] += 1
                self.entered.pop(state.id, None)
                self.finished += 1

    def history(self, instance: str, entered: dict[str, dt.datetime], effect: History, now: dt.datetime) -> None:
        if effect.kind == "paso_iniciado" and effect.step is not None:
            step = self.index[effect.step]
            if step.kind in _WAITING_KINDS:
                entered[step.id] = now
            if step.kind == "event":
                self.schedule_event(instance, step)
        elif effect.kind in _WAIT_ENDS and effect.step is not None:
            since = entered.pop(effect.step, None)
            if since is not None:
                self.waits[effect.step].append((now - since).total_seconds())
        elif effect.kind == "reintento_programado":
            self.retries += 1
        elif effect.kind == "plazo_vencido":
            self.late.add(instance)

    # -- the loop -------------------------------------------------------------------------------------------
    def run(self, cases: int, progress: Callable[[int], None] | None) -> None:
        inputs = dict(self.model.inputs)

        def begin() -> None:
            self.orchestrator.start(self.definition.name, inputs, version=self.definition.version)
        for number in range(cases):
            self.at(self.later(number * self.model.arrivals), begin)
        horizon = self.later(max(cases - 1, 0) * self.model.arrivals) + HORIZON
        reported = -1
        while True:
            timer = self.store.timers[0] if self.store.timers else None
            upcoming = self.agenda[0][0] if self.agenda else None
            if timer is None and upcoming is None:
                break
            if timer is not None and (upcoming is None or timer <= upcoming):
                if timer > horizon:
                    break
                while self.store.timers and self.store.timers[0] <= timer:
                    heapq.heappop(self.store.timers)
                self.clock.advance(timer)
                while self.orchestrator.fire_due_timers(self.clock.now):
                    pass  # one batch per call: many cases' timers may fall due at the same moment
            else:
                moment, _, action = heapq.heappop(self.agenda)
                if moment > horizon:
                    break
                self.clock.advance(moment)
                action()
            if progress is not None and self.finished != reported:
                reported = self.finished
                progress(reported)

    # -- the report -----------------------------------------------------------------------------------------
    def report(self, cases: int, seed: int, elapsed: float, figures: tuple[Figure, ...]) -> SimulationReport:
        outcomes = tuple(sorted(
            (OutcomeResult(outcome, status, Distribution.of(samples), self.late_by_outcome[(outcome, status)])
             for (outcome, status), samples in self.cycles.items()),
            key=lambda o: (-o.count, o.outcome)))
        order = {step_id: position for position, step_id in enumerate(self.index)}
        steps = tuple(StepResult(step_id, self.index[step_id].title, self.index[step_id].kind,
                                 Distribution.of(samples))
                      for step_id, samples in sorted(self.waits.items(), key=lambda item: order[item[0]]))
        every = [sample for samples in self.cycles.values() for sample in samples]
        return SimulationReport(
            chain=self.definition.name, version=self.definition.version, title=self.definition.title,
            scenario=self.scenario, cases=cases, seed=seed, outcomes=outcomes, cycle=Distribution.of(every),
            steps=steps, figures=figures, unfinished=cases - self.finished, sent=self.dispatcher.sent,
            faults_injected=self.dispatcher.faults, retries=self.retries, failures=dict(self.failures),
            transitions=self.transitions, elapsed=elapsed)


def _without_timeouts(definition: ChainDefinition) -> ChainDefinition:
    def strip(steps: tuple[Step, ...]) -> tuple[Step, ...]:
        return tuple(replace(step, timeout=None, branches=tuple(strip(b) for b in step.branches)) for step in steps)

    return replace(definition, steps=strip(definition.steps))


def simulate(definition: ChainDefinition, *, cases: int, scenario: str, registry: SchemaRegistry, seed: int = 2026,
             progress: Callable[[int], None] | None = None, start: dt.datetime = EPOCH) -> SimulationReport:
    """Run `cases` instances of `definition` in `scenario` through the real engine under a virtual clock.

    `progress` is told how many cases have finished as they do. Raises SimulationError (with a code) for a
    scenario the definition does not declare or a malformed `simulation` section.
    """
    if cases < 1:
        raise SimulationError(f"el número de casos debe ser al menos 1, no {cases}")
    model = read_model(definition)
    chosen = model.scenario(scenario)
    if not chosen.timeouts:
        definition = _without_timeouts(definition)
    began = time.perf_counter()
    world = _World(definition, model, chosen, seed=seed, registry=registry, start=start)
    try:
        world.run(cases, progress)
        return world.report(cases, seed, time.perf_counter() - began, model.figures)
    finally:
        world.store.engine.dispose()
