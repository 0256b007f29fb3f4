"""Housing chains (chains/vivienda-postulacion.yaml) through the orchestrator alone: its own cost per step.

`instances` cases are started through `broker.orchestrator.runtime.Orchestrator` (the real `Engine`, a SQLite
store on disk, the system clock) and kept in flight together: every request a transition sends is answered at
once, in the order sent, with the values of the step's most likely reply in the definition's `simulate` block
(scenario `nuevo`), so every case takes the longest path (five parallel cross-checks, scoring, assignment,
notification: 9 transitions, 8 requests). Each transition (`start`, `on_reply`) is timed on the wall clock and
the thread's CPU clock; chains completed per second is cases / (first start → last case finished).

Two dispatchers, side by side on stores of their own:

- `RecordingDispatcher` (`broker.orchestrator.testing`): the requests are only kept in memory;
- the production one, `BusDispatcher` over the orchestrator's `Adapter` (not started: no bus): each request
  is signed by the orchestrator's certificate and written to the outbox in the transition's transaction, on
  the store the instances share with the outbox, as `open_orchestrator` wires it.

Included: loading the instance, the engine's step (building and schema-validating each request payload,
expressions, joins), the transaction that saves state, history, timers and messages (one commit, SQLite's
default rollback journal), and with the production dispatcher the signing and the outbox row. Excluded: the
bus — relaying the outbox to RabbitMQ, the gateway's two hops each way, the entities' work — and the
orchestrator's adapter receiving a reply (verifying its signature and time-stamp token, the inbox row,
capturing values from the reply's XML: here the values are handed over already extracted). See the `relay`
suite for the per-message cost of the bus and of the verification.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from bench.gelxml_bench import ROOT
from broker.gelxml import load_registry
from broker.gelxml.registry import SchemaRegistry
from broker.logs import quieten
from broker.orchestrator.definition import ChainDefinition, load_definition
from broker.orchestrator.engine import Engine, InstanceState, Send
from broker.orchestrator.runtime import Dispatcher, Orchestrator
from broker.orchestrator.simulation import SimulationModel, read_model
from broker.orchestrator.store import OrchestratorStore
from broker.orchestrator.testing import RecordingDispatcher
from broker.security.entities import load_entities
from broker.security.pki import DevPKI
from broker.storage import open_engine

CHAIN_FILE = ROOT / "chains" / "vivienda-postulacion.yaml"
ENTITIES_FILE = ROOT / "deploy" / "entities.yaml"
SCENARIO = "nuevo"
CAJA = "CO/CCF/860007336"


def instance_count(seconds: float) -> int:
    """Cases in flight together: 150 at the default one second per figure."""
    return max(20, min(5_000, round(150 * seconds)))


class Answering:
    """Wraps a dispatcher and keeps every request sent, to answer it later (in the order sent)."""

    def __init__(self, inner: Dispatcher) -> None:
        self.inner = inner
        self.pending: deque[Send] = deque()

    def send(self, connection: Connection, state: InstanceState, effect: Send) -> None:
        self.inner.send(connection, state, effect)
        self.pending.append(effect)

    def committed(self) -> None:
        self.inner.committed()


def likeliest_reply(model: SimulationModel, send: Send) -> dict[str, Any]:
    """The values of the step's most likely reply; a capture the reply does not set is absent (None)."""
    options = model.step(SCENARIO, send.step).replies
    chosen = dict(max(options, key=lambda option: option.p).values) if options else {}
    return {**{capture.ctx: None for capture in send.call.reply}, **chosen}


@dataclass
class Run:
    label: str
    instances: int
    elapsed: float = 0.0
    start_wall_us: list[float] = field(default_factory=list)
    reply_wall_us: list[float] = field(default_factory=list)
    start_cpu_us: list[float] = field(default_factory=list)
    reply_cpu_us: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    requests: int = 0

    @property
    def chains_per_second(self) -> float:
        return self.instances / self.elapsed if self.elapsed else 0.0


def _timed(wall: list[float], cpu: list[float], operation: Callable[[], Any]) -> Any:
    started_cpu, started = time.thread_time_ns(), time.perf_counter_ns()
    result = operation()
    wall.append((time.perf_counter_ns() - started) / 1000)
    cpu.append((time.thread_time_ns() - started_cpu) / 1000)
    return result


def drive(label: str, orchestrator: Orchestrator, answering: Answering, definition: ChainDefinition,
          model: SimulationModel, count: int) -> Run:
    run = Run(label, count)
    inputs: Mapping[str, Any] = {k: v for k, v in model.inputs.items() if k != "entidadSolicitante"}
    orchestrator.start(definition.name, inputs, started_by=CAJA)  # one case first: first-use costs, not timed
    while answering.pending:
        send = answering.pending.popleft()
        orchestrator.on_reply(correlation=send.message_id, fault_reply=False, payload=None,
                              message_id=f"bench-{send.message_id}", values=likeliest_reply(model, send))
    ids = []
    started = time.perf_counter()
    for _ in range(count):
        row = _timed(run.start_wall_us, run.start_cpu_us,
                     lambda: orchestrator.start(definition.name, inputs, started_by=CAJA))
        ids.append(row.id)
    while answering.pending:
        send = answering.pending.popleft()
        run.requests += 1
        values = likeliest_reply(model, send)
        known = _timed(run.reply_wall_us, run.reply_cpu_us, partial(
            orchestrator.on_reply, correlation=send.message_id, fault_reply=False, payload=None,
            message_id=f"bench-{send.message_id}", values=values))
        if not known:
            raise RuntimeError(f"{label}: no instance sent {send.message_id}")
    run.elapsed = time.perf_counter() - started
    for instance in ids:
        found = orchestrator.store.get(instance)
        run.outcomes[f"{found.status}/{found.outcome}" if found is not None else "missing"] += 1
    return run


def recording_run(directory: Path, registry: SchemaRegistry, definition: ChainDefinition, model: SimulationModel,
                  count: int) -> Run:
    answering = Answering(RecordingDispatcher())
    store = OrchestratorStore(open_engine(f"sqlite:///{directory / 'recording.db'}"))
    orchestrator = Orchestrator(store, Engine(registry), {definition.key: definition}, answering)
    try:
        return drive("RecordingDispatcher", orchestrator, answering, definition, model,
                     count)
    finally:
        store.engine.dispose()


def production_run(directory: Path, registry: SchemaRegistry, definition: ChainDefinition, model: SimulationModel,
                   count: int) -> Run:
    from adapters.sdk.runtime import Adapter
    from adapters.sdk.store import AdapterStore
    from broker.orchestrator.bus import ORCHESTRATOR_ID, BusDispatcher
    from broker.transport.embedded import EmbeddedBroker, EmbeddedTransport

    pki = DevPKI(directory / "pki")
    pki.initialise(load_entities(ENTITIES_FILE))
    outbox = AdapterStore(f"sqlite:///{directory / 'orquestador.db'}")
    adapter = Adapter(ORCHESTRATOR_ID, EmbeddedTransport(ORCHESTRATOR_ID, broker=EmbeddedBroker()),
                      pki.credential(ORCHESTRATOR_ID), pki.trust_store(), outbox, {})
    answering = Answering(BusDispatcher(adapter))
    orchestrator = Orchestrator(OrchestratorStore(outbox.engine), Engine(registry), {definition.key: definition},
                                answering)
    try:
        return drive("BusDispatcher", orchestrator, answering, definition, model, count)
    finally:
        outbox.close()


def _ms(values_us: list[float], fraction: float) -> float:
    ordered = sorted(values_us)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] / 1000


def run(seconds: float) -> dict[str, Any]:
    quieten("WARNING")
    count = instance_count(seconds)
    registry = load_registry(ROOT / "schemas")
    definition = load_definition(CHAIN_FILE)
    model = read_model(definition)
    report: dict[str, Any] = {"chain": f"{definition.name} v{definition.version}", "instances in flight": count,
                              "store": "SQLite file (one commit per transition)",
                              "RecordingDispatcher": "requests kept in memory (no signing, no outbox)",
                              "BusDispatcher": "each request signed and written to the outbox (no bus); the headline",
                              "load_average_1min_at_start": os.getloadavg()[0]}
    runs = []
    with tempfile.TemporaryDirectory(prefix="gel-bench-chains-") as tmp:
        directory = Path(tmp)
        runs.append(recording_run(directory, registry, definition, model, count))
        runs.append(production_run(directory, registry, definition, model, count))
    measurements = []
    for item in runs:
        everything_wall = item.start_wall_us + item.reply_wall_us
        everything_cpu = item.start_cpu_us + item.reply_cpu_us
        transitions = len(everything_wall)
        report[f"{item.label}: chains completed per second"] = item.chains_per_second
        report[f"{item.label}: transitions per chain"] = transitions / item.instances
        report[f"{item.label}: step overhead p50 (ms)"] = _ms(everything_wall, 0.5)
        report[f"{item.label}: step overhead p99 (ms)"] = _ms(everything_wall, 0.99)
        report[f"{item.label}: step CPU mean (ms)"] = statistics.fmean(everything_cpu) / 1000
        report[f"{item.label}: outcomes"] = dict(item.outcomes)
        for name, wall in (("start (radicación; sends 5 requests)", item.start_wall_us),
                           ("reply → next step", item.reply_wall_us), ("every transition", everything_wall)):
            ordered = sorted(wall)
            measurements.append({"name": f"{item.label}: {name}", "ops": len(ordered),
                                 "mean_us": statistics.fmean(ordered), "p50_us": ordered[len(ordered) // 2],
                                 "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]})
    production = runs[-1]
    everything = production.start_wall_us + production.reply_wall_us
    report["headline"] = {
        "chain_step_overhead_p50_ms": _ms(everything, 0.5),
        "chain_step_overhead_p99_ms": _ms(everything, 0.99),
        "chains_completed_per_s": production.chains_per_second,
    }
    report["load_average_1min_at_end"] = os.getloadavg()[0]
    report["measurements"] = measurements
    return report
