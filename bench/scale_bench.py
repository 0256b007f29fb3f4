"""Scale: routing fan-out across 1,200 entity queues, and 10,000 chain instances in flight in one orchestrator.

The performance issue's "scale" bullet: "1,200 entity queues (Colombia's 1,099 alcaldías, 32 gobernaciones and
the EPS) routed without throughput loss; 10,000 chain instances in flight with the orchestrator's memory
reported". Two parts, one after the other in one run (they would share the 2 CPUs if run together):

1. Routing across many entity queues (RabbitMQ, a vhost of this run's own, `gel-scale-<random>`, where guest may
   do anything; no RabbitMQ user is created or changed, and the vhost is deleted afterwards). The topology is
   the platform's own (`platform_topology`: `gel.ingress` → the sender's ingress queue, here the orchestrator's
   `gel.entrada.CO.PLAT.900000002`; `gel.deliver`, a topic exchange, → one quorum queue per entity bound by
   `entity_key`, with the platform's queue arguments: delivery limit, reject-publish, at-least-once
   dead-lettering to `gel.dlx`; the destination entities' own ingress queues are left out, as nothing here
   sends from them), declared through `RabbitMQTransport.declare`. A relay process does what the gateway does
   to a message after admitting it, and nothing else (no XML work: the question is only whether routing fan-out
   costs throughput): it consumes the sender's ingress queue at prefetch 64, republishes each body to
   `gel.deliver` with routing key = the recipient's key (from a header, as the gateway reads it from the
   envelope), keeps the publisher confirm in flight and acks the ingress delivery only once that republish is
   confirmed (`relay_bench`'s discipline).
   The bodies are one signed `verificarIdentidad` request (the `relay` suite's bytes), persistent.

   The consuming end is a process of its own with one pika connection and one channel carrying one consumer
   per destination queue (1, 100 or 1,200 consumers, prefetch 100 each), acking with `multiple` after each read
   of the socket; it reports each arrival's time (CLOCK_MONOTONIC) to this process. Bursts as in `relay_bench`
   (`run_burst`: confirmed batches of 100, at most 500 published and not yet consumed; msg/s = messages /
   first publish → last consumed), CPU per message per process; fan-out bursts are warmed up with one message
   to each of their queues (its first write), single-queue bursts with five.

   Quorum queues and the node's file handles: each quorum queue holds file handles of the node's file handle
   cache for as long as it exists (3 on RabbitMQ 3.10), and once the cache's limit is reached the node stops
   accepting connections: every new AMQP handshake times out, for every vhost and user of the (shared) node.
   With the default `ulimit -n` of 1,024 the limit is 927, so 1,200 quorum queues (~3,600 handles) do not fit.
   The suite therefore declares `QUORUM_PROBE` (100) of the 1,200 quorum queues first (timed; the declare time
   of 1,200 is extrapolated from it), measures the handles they took, and declares all 1,200 as quorum queues
   only if they would take at most 70 % of the limit. Otherwise it measures a burst round-robin over the 100
   quorum queues (b'), deletes them, and measures the routing figure on classic queues (the platform's arguments
   that classic queues accept), case (a) on a classic queue too, so the ratio compares like with like:

   (a) quorum: one destination entity queue, every message to the Registraduría (the platform's queue type);
   (b') [fallback] 100 quorum queues, round-robin;
   (a) classic [fallback]: one classic destination queue;
   (b) 1,200 destination queues (1,099 alcaldías, 32 gobernaciones, 69 EPS; synthetic ids), round-robin over
       all 1,200 recipients, quorum or (fallback) classic. The headline ratio is (b) / (a) of the same type.

2. 10,000 chain instances in flight (chains/vivienda-postulacion.yaml, the `chains` suite's case) in this
   process: `broker.orchestrator.runtime.Orchestrator` with the real `Engine` on a SQLite file. Instances are
   started one after another and their requests are not answered, so all stay in flight. The dispatcher keeps
   nothing (as `RecordingDispatcher`, but it drops the requests of instances that are not sampled, so the
   orchestrator's memory is not inflated by the benchmark's own list of ~50,000 requests): no signing, no
   outbox row — `BusDispatcher` costs ~11 ms per start (`chains` suite), which would be ~2 minutes for 10,000.
   First, 150 instances are started and one round of replies is answered for all 150 (their five pending
   cross-check requests each: the `chains` suite's 150-in-flight figure, measured the same way); then the rest
   up to 10,000 are started (every 49th one sampled, 200 in all), and one round of replies is answered for the
   200 sampled instances with 10,000 in flight. Reported: per-start wall p50/p99 (and the first and last 1,000
   starts), this process's RSS (`/proc/self/status` VmRSS) before and after, its peak (VmHWM), the store's size
   on disk, and the per-transition (reply → next step) wall time p50/p99 at 150 and at 10,000 in flight. The
   RSS is the benchmark process's: it has every suite's modules loaded; the difference is the 10,000
   instances'. tracemalloc is not used over the 10,000 starts (it slows every allocation and so every
   start); instead it traces 50 more starts after the 10,000, to show how much Python memory each start
   leaves behind.

The suite takes ~95 s, two thirds of it starting the 10,000 instances (~6.5 ms each, nearly all CPU: SQLAlchemy
statements and the engine's step, one commit).
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import queue
import re
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from bench.chain_bench import CAJA, CHAIN_FILE, likeliest_reply
from bench.gateway_bench import ENTITIES_FILE, ORCHESTRATOR, REGISTRADURIA
from bench.gelxml_bench import ROOT
from bench.relay_bench import (
    RECIPIENT_HEADER,
    Arrivals,
    Burst,
    CpuMeter,
    WorkerProcess,
    _signed,
    raw_count,
    relay_worker,
    run_burst,
    warm_up,
)
from bench.transport_bench import AMQP_URL, delete_vhost, rabbitmq_unavailable, rabbitmqctl, url_with_vhost
from broker.gelxml import load_registry
from broker.logs import quieten
from broker.orchestrator.definition import ChainDefinition, load_definition
from broker.orchestrator.engine import Engine, InstanceState, Send
from broker.orchestrator.runtime import Orchestrator
from broker.orchestrator.simulation import SimulationModel, read_model
from broker.orchestrator.store import OrchestratorStore, instances
from broker.security.entities import Entity, load_entities
from broker.security.pki import DevPKI
from broker.storage import open_engine
from broker.transport.abc import Binding, OutgoingMessage, QueueSpec, Topology
from broker.transport.topology import (
    DEAD_LETTER_EXCHANGE,
    DELIVER_EXCHANGE,
    INGRESS_EXCHANGE,
    entity_key,
    entity_queue,
    ingress_queue,
    platform_topology,
)

ALCALDIAS, GOBERNACIONES, EPS = 1_099, 32, 69
"""1,200 destination entities: Colombia's 1,099 alcaldías and 32 gobernaciones, and 69 EPS to make 1,200."""
CLASSIC_SINGLE = "CO/GOB/899999041"
"""Case (a)'s recipient when the routing figure falls back to classic queues (a synthetic id of its own)."""
QUORUM_PROBE = 100
"""Quorum queues declared first, to measure the file handles each holds before declaring all 1,200."""
QUORUM_HANDLE_SHARE = 0.7
"""1,200 quorum queues are declared only if they would take at most this share of the node's file handles."""
DECLARE_CHUNK = 200
"""Entities per `declare` call (each call must finish within the transport's 30 s operation timeout)."""
SINK_PREFETCH = 100
SINK_FLUSH_SECONDS = 0.002
WARM_UP = 5
CHAINS = 10_000
BASELINE_IN_FLIGHT = 150
"""The `chains` suite's instances in flight at the default one second per figure."""
SAMPLE = 200
TRACED_STARTS = 50


def scale_entities() -> list[Entity]:
    """1,200 synthetic destination entities (ids of the platform's shape; no RabbitMQ user is made for them)."""
    found = [Entity(f"CO/ALC/89{i:07d}", f"Alcaldía {i + 1}", "alcaldia") for i in range(ALCALDIAS)]
    found += [Entity(f"CO/GOB/88{i:07d}", f"Gobernación {i + 1}", "gobernacion") for i in range(GOBERNACIONES)]
    found += [Entity(f"CO/EPS/87{i:07d}", f"EPS {i + 1}", "eps") for i in range(EPS)]
    return found


def burst_count(seconds: float, queues: int) -> int:
    """Messages per burst: `relay_bench`'s raw burst (5,000 at one second per figure), rounded up to whole
    rounds of the 1,200 recipients (6,000), the same for both cases."""
    return -(-raw_count(seconds) // queues) * queues


def chain_count(seconds: float) -> int:
    return max(1_000, min(CHAINS, round(CHAINS * seconds)))


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else float("nan")


def _ms(values_us: Sequence[float], fraction: float) -> float:
    return _percentile(sorted(values_us), fraction) / 1000


def _measurement(name: str, values_us: Sequence[float]) -> dict[str, Any]:
    ordered = sorted(values_us)
    return {"name": name, "ops": len(ordered), "mean_us": statistics.fmean(ordered),
            "p50_us": _percentile(ordered, 0.5), "p99_us": _percentile(ordered, 0.99)}


def _status_kb(pid: int | str, field_name: str) -> int | None:
    """A `/proc/<pid>/status` field in kB (VmRSS, VmHWM), or None where /proc cannot say."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _mb(kb: int | None) -> float | None:
    return kb / 1024 if kb is not None else None


# -- part 1: routing across many entity queues ------------------------------------------------------------
def _drain_worker(url: str, queues: Sequence[str], label: str, arrivals: Any, ready: Any, stop: Any,
                  results: Any) -> None:
    """The consuming end: one pika connection, one channel, one consumer per queue (prefetch 100 each); acks
    with `multiple` after each read of the socket; reports (idMensaje, arrival time) in lists every 2 ms."""
    import pika

    quieten("WARNING")
    buffered: list[tuple[str, float, None, None]] = []
    keys: set[str] = set()
    last_tag = 0
    try:
        parameters = pika.URLParameters(url)
        parameters.client_properties = {"connection_name": label}
        connection = pika.BlockingConnection(parameters)
        channel = connection.channel()
        channel.basic_qos(prefetch_count=SINK_PREFETCH)

        def on_message(_channel: Any, method: Any, properties: Any, _body: bytes) -> None:
            nonlocal last_tag
            buffered.append((properties.message_id or "", time.perf_counter(), None, None))
            keys.add(method.routing_key)
            last_tag = method.delivery_tag

        for name in queues:
            channel.basic_consume(name, on_message)
    except Exception as exc:
        ready.put(f"{label}: {type(exc).__name__}: {exc}")
        raise
    ready.put(None)
    acked, flushed = 0, time.perf_counter()
    while not stop.is_set():
        connection.process_data_events(time_limit=SINK_FLUSH_SECONDS)
        if last_tag > acked:
            channel.basic_ack(delivery_tag=last_tag, multiple=True)
            acked = last_tag
        if buffered and time.perf_counter() - flushed >= SINK_FLUSH_SECONDS:
            arrivals.put(buffered[:])
            buffered.clear()
            flushed = time.perf_counter()
    if buffered:
        arrivals.put(buffered[:])
    with contextlib.suppress(Exception):
        connection.close()
    results.put({"routing keys delivered": len(keys)})


@contextlib.contextmanager
def drain_process(url: str, queues: Sequence[str], label: str) -> Iterator[tuple[Arrivals, WorkerProcess]]:
    """Run `_drain_worker` in a spawned process; yield its arrivals and the process."""
    found = Arrivals()
    reports = multiprocessing.get_context("spawn").Queue()
    done = threading.Event()

    def read() -> None:
        while True:
            try:
                batch = reports.get(timeout=0.2)
            except queue.Empty:
                if done.is_set():
                    return
                continue
            for key, at, spent, failure in batch:
                found.note(key, at, spent, failure)

    reader = threading.Thread(target=read, name=f"{label}-reader", daemon=True)
    reader.start()
    try:
        with WorkerProcess(_drain_worker, (url, tuple(queues), label, reports), label) as worker:
            yield found, worker
    finally:
        done.set()
        reader.join(timeout=10)


@contextlib.contextmanager
def scale_vhost() -> Iterator[tuple[str, dict[str, float]]]:
    """A vhost of this run's own (`gel-scale-<random>`) for guest, deleted afterwards (the deletion timed)."""
    name = f"gel-scale-{uuid.uuid4().hex[:8]}"
    timings: dict[str, float] = {}
    try:
        rabbitmqctl("add_vhost", name)
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name, timings
    finally:
        started = time.perf_counter()
        delete_vhost(name)
        timings["delete"] = time.perf_counter() - started


def _messages(body: bytes, recipients: Sequence[str], count: int) -> list[OutgoingMessage]:
    """`count` messages from the orchestrator (its routing key: its ingress queue) to `recipients` round-robin,
    each naming its recipient's key in `RECIPIENT_HEADER` for the relay."""
    keys = [entity_key(r) for r in recipients]
    return [OutgoingMessage(INGRESS_EXCHANGE, entity_key(ORCHESTRATOR), body, message_id=str(uuid.uuid4()),
                            headers={RECIPIENT_HEADER: keys[i % len(keys)]}) for i in range(count)]


def _burst_report(label: str, burst: Burst) -> dict[str, Any]:
    found: dict[str, Any] = {f"{label}: msg/s": burst.rate,
                             f"{label}: msg/s, middle 80 % of arrivals": burst.middle_rate,
                             f"{label}: last message consumed after (s)": burst.elapsed}
    for party, value in burst.cpu_ms.items():
        found[f"{label}: CPU ms per message, {party}"] = value
    if burst.received < burst.count:
        found[f"{label}: incomplete"] = f"{burst.received} of {burst.count} arrived"
    return found


def node_handles() -> tuple[int | None, int | None, int | None]:
    """The RabbitMQ node's OS pid and its file handle cache's (used, limit): the node refuses new connections
    (the AMQP handshake times out) once `used` reaches `limit`, and each quorum queue holds handles for good."""
    try:
        text = rabbitmqctl("eval", "{os:getpid(), file_handle_cache:info([total_used, total_limit])}.")
    except Exception:
        return None, None, None
    pid = re.search(r'"(\d+)"', text)
    used = re.search(r"total_used,(\d+)", text)
    limit = re.search(r"total_limit,(\d+)", text)
    return (int(pid.group(1)) if pid else None, int(used.group(1)) if used else None,
            int(limit.group(1)) if limit else None)


def classic_arguments() -> dict[str, Any]:
    """The platform's queue arguments that a classic queue accepts (the delivery limit and at-least-once
    dead-lettering exist only for quorum queues)."""
    return {"x-queue-type": "classic", "x-overflow": "reject-publish", "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE}


def entity_topology(entities: Sequence[Entity], kind: str) -> Topology:
    """The platform's per-entity destination queues and their bindings: quorum as `platform_topology` makes them
    (without the entities' ingress queues), or classic."""
    if kind == "quorum":
        full = platform_topology(entities)
        inboxes = {entity_queue(e.id) for e in entities}
        return Topology(exchanges=full.exchanges, queues=tuple(q for q in full.queues if q.name in inboxes),
                        bindings=tuple(b for b in full.bindings if b.queue in inboxes))
    return Topology(queues=tuple(QueueSpec(entity_queue(e.id), classic_arguments()) for e in entities),
                    bindings=tuple(Binding(DELIVER_EXCHANGE, entity_queue(e.id), entity_key(e.id)) for e in entities))


def _declare(transport: Any, entities: Sequence[Entity], kind: str) -> float:
    started = time.perf_counter()
    for start in range(0, len(entities), DECLARE_CHUNK):
        transport.declare(entity_topology(entities[start:start + DECLARE_CHUNK], kind))
    return time.perf_counter() - started


def routing(seconds: float, body: bytes) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, float | None]]:
    """Case (a) on a quorum queue; the quorum queues' handle budget probed with `QUORUM_PROBE` of the 1,200;
    then (a) and (b) on the queue type the node can hold 1,200 of; the report, latency rows and the ratios."""
    from broker.transport.rabbitmq import RabbitMQTransport

    many = scale_entities()
    count = burst_count(seconds, len(many))
    report: dict[str, Any] = {"routing: burst messages per case": count,
                              "routing: message bytes (signed verificarIdentidad request)": len(body)}
    rows: list[dict[str, Any]] = []
    rates: dict[str, float] = {}
    quorum_ratio: float | None = None
    single = Entity(REGISTRADURIA, "Registraduría", "gobierno")
    single_classic = Entity(CLASSIC_SINGLE, "Registraduría (cola clásica)", "gobierno")
    node_pid, used_before, limit = node_handles()
    rss_kb = partial(_status_kb, node_pid, "VmRSS") if node_pid else (lambda: None)

    def burst(label: str, sender: Any, arrivals: Arrivals, relay: WorkerProcess, sink: WorkerProcess,
              recipients: Sequence[str]) -> None:
        meter = CpuMeter({"relay process": relay.pid, "consumer process": sink.pid}, rabbit_pid=node_pid)
        outcome = run_burst(sender, arrivals, _messages(body, recipients, count), meter,
                            timeout=max(60.0, count * 0.02))
        report.update(_burst_report(label, outcome))
        rows.append(_measurement(f"{label}: publish→consumed, in the burst", outcome.latency_us))
        rates[label] = outcome.rate

    with scale_vhost() as (vhost, timings), contextlib.ExitStack() as stack:
        url = url_with_vhost(AMQP_URL, vhost)
        sender = RabbitMQTransport(url, user_label="gel-scale-publisher")
        stack.callback(sender.close)
        orchestrator = Entity(ORCHESTRATOR, "Orquestador", "orquestador")
        sender.declare(platform_topology([orchestrator, single]))
        sender.declare(entity_topology([single_classic], "classic"))
        relay_args = (url, ingress_queue(ORCHESTRATOR), DELIVER_EXCHANGE, None, "gel-scale-relay")
        relay = stack.enter_context(WorkerProcess(relay_worker, relay_args, "gel-scale-relay"))
        one, one_sink = stack.enter_context(drain_process(
            url, [entity_queue(single.id), entity_queue(single_classic.id)], "gel-scale-drain-1"))
        warm_up(sender, one, _messages(body, [single.id], WARM_UP))
        burst_a_quorum = "(a) 1 destination quorum queue"
        burst(burst_a_quorum, sender, one, relay, one_sink, [single.id])

        # How many handles a quorum queue holds, on QUORUM_PROBE of the 1,200: do 1,200 fit under the limit?
        probe_used = node_handles()[1]
        probe = many[:QUORUM_PROBE]
        spent = _declare(sender, probe, "quorum")
        after_probe = node_handles()[1]
        report[f"routing: declare {QUORUM_PROBE} quorum queues + bindings (s)"] = spent
        report["routing: declare 1,200 quorum queues, extrapolated (s)"] = spent * len(many) / QUORUM_PROBE
        kind = "quorum"
        if probe_used is not None and after_probe is not None and limit is not None:
            per_queue = (after_probe - probe_used) / QUORUM_PROBE
            needed = probe_used + per_queue * len(many)
            report["routing: node file handles, limit / in use before this suite"] = f"{limit} / {used_before}"
            report["routing: file handles held per quorum queue"] = per_queue
            report["routing: file handles 1,200 quorum queues would take"] = round(needed)
            if needed > QUORUM_HANDLE_SHARE * limit:
                kind = "classic"
                report["routing: 1,200 quorum queues"] = (
                    f"not declared: they would take ~{needed:.0f} of the node's {limit} file handles, and at the "
                    "limit the node refuses every new connection (the node is shared); classic queues instead")
        if kind == "classic":
            # The fan-out the node can hold as quorum queues: the same burst round-robin over the probe's queues
            with drain_process(url, [entity_queue(e.id) for e in probe], "gel-scale-drain-q") as (few, few_sink):
                primer = _messages(body, [e.id for e in probe], len(probe))
                few.expect([m.message_id or "" for m in primer])
                sender.publish_all(primer)
                if not few.wait(60):
                    raise RuntimeError("the warm-up message of every probe queue did not arrive within 60 s")
                burst_q = f"(b') {QUORUM_PROBE} destination quorum queues, round-robin"
                burst(burst_q, sender, few, relay, few_sink, [e.id for e in probe])
            if rates.get(burst_a_quorum) and rates.get(burst_q):
                quorum_ratio = rates[burst_q] / rates[burst_a_quorum]
                report[f"routing: ratio (b') {QUORUM_PROBE} quorum queues / (a) quorum"] = quorum_ratio
            started = time.perf_counter()
            for entity in probe:
                sender.delete_queue(entity_queue(entity.id))
            report[f"routing: delete the {QUORUM_PROBE} probe quorum queues (s)"] = time.perf_counter() - started
            warm_up(sender, one, _messages(body, [single_classic.id], WARM_UP))
            burst_a = "(a) 1 destination classic queue"
            burst(burst_a, sender, one, relay, one_sink, [single_classic.id])
        else:
            burst_a = burst_a_quorum

        rss_before = rss_kb()
        spent = _declare(sender, many if kind == "classic" else many[QUORUM_PROBE:], kind)
        label = "routing: declare 1,200 classic queues + bindings (s)" if kind == "classic" else \
            f"routing: declare the other {len(many) - QUORUM_PROBE:,} quorum queues + bindings (s)"
        report[label] = spent
        rss_after = rss_kb()
        if rss_before is not None and rss_after is not None:
            report["routing: RabbitMQ node RSS before / after declaring them (MB)"] = (
                f"{rss_before / 1024:.0f} / {rss_after / 1024:.0f}")

        started = time.perf_counter()
        fan, fan_sink = stack.enter_context(drain_process(url, [entity_queue(e.id) for e in many],
                                                          "gel-scale-drain-1200"))
        report["routing: consumer process with 1,200 consumers ready after (s)"] = time.perf_counter() - started
        primer = _messages(body, [e.id for e in many], len(many))  # each queue's first write, before timing
        fan.expect([m.message_id or "" for m in primer])
        for start in range(0, len(primer), 100):
            sender.publish_all(primer[start:start + 100])
        if not fan.wait(60):
            raise RuntimeError("the warm-up message of every destination queue did not arrive within 60 s")
        burst_b = f"(b) 1,200 destination {kind} queues, round-robin"
        burst(burst_b, sender, fan, relay, fan_sink, [e.id for e in many])
        report["routing: node file handles in use after (b)"] = node_handles()[1]
        stack.close()  # consumers, relay and publisher stop before the vhost goes
        if isinstance(fan_sink.result, dict):
            report["(b): destination queues that delivered"] = fan_sink.result.get("routing keys delivered")
        if isinstance(relay.result, dict):
            report["routing: relay republishes not confirmed (retried)"] = relay.result.get("failed", 0)
        for name, arrivals in (("(a)", one), ("(b)", fan)):
            if arrivals.duplicates:
                report[f"{name}: duplicate deliveries"] = arrivals.duplicates
    report[f"routing: vhost deletion with 1,200 {kind} queues (s)"] = timings.get("delete")
    ratio = rates[burst_b] / rates[burst_a] if rates.get(burst_a) and rates.get(burst_b) else None
    report[f"routing: ratio (b) / (a), {kind} queues"] = ratio
    if burst_a != burst_a_quorum and rates.get(burst_a_quorum) and rates.get(burst_b):
        report["routing: ratio (b) / (a) on a quorum queue"] = rates[burst_b] / rates[burst_a_quorum]
    if kind == "quorum":
        quorum_ratio = ratio
    return report, rows, {"scale_queues_ratio": ratio, "scale_queues_type": kind,
                          "scale_quorum_fanout_queues": len(many) if kind == "quorum" else QUORUM_PROBE,
                          "scale_quorum_fanout_ratio": quorum_ratio}


# -- part 2: 10,000 chain instances in flight -------------------------------------------------------------
@dataclass
class SampleDispatcher:
    """Sends nothing (as `RecordingDispatcher`), and keeps only the requests of the instances being sampled."""

    capture: list[Send] | None = None
    dropped: int = 0
    commits: int = 0

    def send(self, connection: Connection, state: InstanceState, effect: Send) -> None:
        if self.capture is not None:
            self.capture.append(effect)
        else:
            self.dropped += 1

    def committed(self) -> None:
        self.commits += 1


@dataclass
class ChainRun:
    orchestrator: Orchestrator
    dispatcher: SampleDispatcher
    definition: ChainDefinition
    model: SimulationModel
    inputs: Mapping[str, Any]
    start_us: list[float] = field(default_factory=list)

    def start(self, *, keep: bool, timed: bool = True) -> list[Send]:
        """Start one instance; its requests (when `keep`)."""
        kept: list[Send] = []
        self.dispatcher.capture = kept if keep else None
        began = time.perf_counter_ns()
        self.orchestrator.start(self.definition.name, self.inputs, started_by=CAJA)
        if timed:
            self.start_us.append((time.perf_counter_ns() - began) / 1000)
        self.dispatcher.capture = None
        return kept

    def answer(self, sends: Sequence[Send]) -> list[float]:
        """Answer these requests (one reply each, in the order sent); wall µs per transition."""
        spent = []
        for send in sends:
            values = likeliest_reply(self.model, send)
            began = time.perf_counter_ns()
            known = self.orchestrator.on_reply(correlation=send.message_id, fault_reply=False, payload=None,
                                               message_id=f"bench-{send.message_id}", values=values)
            spent.append((time.perf_counter_ns() - began) / 1000)
            if not known:
                raise RuntimeError(f"no instance sent {send.message_id}")
        return spent

    def in_flight(self) -> int:
        with self.orchestrator.store.engine.connect() as connection:
            return int(connection.execute(
                select(func.count()).select_from(instances).where(instances.c.ended_at.is_(None))).scalar_one())


def _store_bytes(database: Path) -> int:
    return sum(p.stat().st_size for p in (database, *(database.with_name(database.name + s)
                                                      for s in ("-wal", "-journal", "-shm"))) if p.exists())


def chains(seconds: float) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    count = chain_count(seconds)
    registry = load_registry(ROOT / "schemas")
    definition = load_definition(CHAIN_FILE)
    model = read_model(definition)
    report: dict[str, Any] = {
        "chains: chain": f"{definition.name} v{definition.version}",
        "chains: store": "SQLite file (one commit per transition)",
        "chains: dispatcher": "sends nothing, keeps only the sampled instances' requests (no signing, no outbox)"}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gel-scale-chains-") as tmp:
        database = Path(tmp) / "orquestador.db"
        store = OrchestratorStore(open_engine(f"sqlite:///{database}"))
        try:
            dispatcher = SampleDispatcher()
            run = ChainRun(Orchestrator(store, Engine(registry), {definition.key: definition}, dispatcher),
                           dispatcher, definition, model,
                           {k: v for k, v in model.inputs.items() if k != "entidadSolicitante"})
            run.answer(run.start(keep=True, timed=False))  # first-use costs (schemas, statements), not timed
            gc.collect()
            rss_before = _status_kb("self", "VmRSS")
            baseline: list[Send] = []
            for _ in range(BASELINE_IN_FLIGHT):
                baseline += run.start(keep=True)
            low = run.answer(baseline)
            low_in_flight = run.in_flight()
            every = max(1, (count - BASELINE_IN_FLIGHT) // SAMPLE)
            sampled: list[Send] = []
            sampled_instances = 0
            started = time.perf_counter()
            for index in range(count - BASELINE_IN_FLIGHT - 1):  # the warm-up instance is in flight too
                keep = index % every == every // 2 and sampled_instances < SAMPLE
                sampled += run.start(keep=keep)
                sampled_instances += keep
            elapsed = time.perf_counter() - started
            rss_after = _status_kb("self", "VmRSS")
            in_flight = run.in_flight()
            store_bytes = _store_bytes(database)
            high = run.answer(sampled)
            tracemalloc.start()
            traced_before = tracemalloc.get_traced_memory()[0]
            for _ in range(TRACED_STARTS):
                run.start(keep=False, timed=False)
            traced_now, traced_peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            hwm = _status_kb("self", "VmHWM")
        finally:
            store.engine.dispose()
    starts = run.start_us
    report |= {
        "chains: instances in flight (store: not ended)": in_flight,
        f"chains: time to start the last {count - BASELINE_IN_FLIGHT - 1:,} (s)": elapsed,
        "chains: start p50 / p99 (ms), all starts": f"{_ms(starts, 0.5):.2f} / {_ms(starts, 0.99):.2f}",
        "chains: start p50 (ms), first 1,000 / last 1,000": f"{_ms(starts[:1000], 0.5):.2f} / "
                                                             f"{_ms(starts[-1000:], 0.5):.2f}",
        "chains: requests sent and dropped (not kept)": dispatcher.dropped,
        "chains: RSS before the instances / with them in flight (MB)": f"{_mb(rss_before):.1f} / {_mb(rss_after):.1f}",
        "chains: RSS growth per 1,000 instances in flight (MB)": (
            (rss_after - rss_before) / 1024 / (in_flight / 1000) if rss_before and rss_after and in_flight else None),
        "chains: peak RSS of this process, VmHWM (MB)": _mb(hwm),
        f"chains: tracemalloc over {TRACED_STARTS} more starts: retained / peak (KB)":
            f"{(traced_now - traced_before) / 1024:.0f} / {traced_peak / 1024:.0f}",
        "chains: store on disk (MB)": store_bytes / 1e6,
        "chains: store bytes per instance": store_bytes / max(1, in_flight),
        f"chains: reply → next step p50 / p99 (ms), {low_in_flight:,} in flight, {BASELINE_IN_FLIGHT} instances, "
        f"{len(low)} replies": f"{_ms(low, 0.5):.2f} / {_ms(low, 0.99):.2f}",
        f"chains: reply → next step p50 / p99 (ms), {in_flight:,} in flight, {sampled_instances} instances, "
        f"{len(high)} replies": f"{_ms(high, 0.5):.2f} / {_ms(high, 0.99):.2f}",
    }
    rows.append(_measurement(f"chains: start, {len(starts):,} starts (up to {in_flight:,} in flight)", starts))
    rows.append(_measurement(f"chains: reply → next step, {low_in_flight:,} in flight", low))
    rows.append(_measurement(f"chains: reply → next step, {in_flight:,} in flight", high))
    headline = {"scale_chains_in_flight": in_flight, "scale_orchestrator_rss_mb": _mb(rss_after),
                "scale_chain_step_overhead_p99_ms": _ms(high, 0.99)}
    return report, rows, headline


# -- the suite --------------------------------------------------------------------------------------------
def run(seconds: float) -> dict[str, Any]:
    quieten("WARNING")
    began = time.perf_counter()
    report: dict[str, Any] = {"load_average_1min_at_start": os.getloadavg()[0], "cpus": os.cpu_count(),
                              "routing": "relay only (no XML work): ingress → gel.deliver by recipient → entity "
                                         "queues; one consumer process, one channel, a consumer per queue"}
    rows: list[dict[str, Any]] = []
    headline: dict[str, Any] = {"scale_queues_ratio": None, "scale_queues_type": None,
                                "scale_quorum_fanout_queues": None, "scale_quorum_fanout_ratio": None,
                                "scale_chains_in_flight": None,
                                "scale_orchestrator_rss_mb": None, "scale_chain_step_overhead_p99_ms": None}
    unavailable = rabbitmq_unavailable()
    if unavailable is not None:
        print(f"{unavailable}: routing across 1,200 queues is not measured", file=sys.stderr)
        report["routing"] = f"not measured: {unavailable}"
    else:
        try:
            with tempfile.TemporaryDirectory(prefix="gel-scale-pki-") as tmp:
                pki = DevPKI(Path(tmp) / "pki")
                pki.initialise(load_entities(ENTITIES_FILE))
                body = _signed(pki.credential(ORCHESTRATOR), 1, clock=None)[0]
            found, measured, ratios = routing(seconds, body)
            report |= found
            rows += measured
            headline |= ratios
        except Exception as exc:  # the node is shared: report what failed, keep the chains part
            print(f"routing: not measured: {type(exc).__name__}: {exc}", file=sys.stderr)
            report["routing: not measured"] = f"{type(exc).__name__}: {exc}"
    report["routing part took (s)"] = time.perf_counter() - began
    began_chains = time.perf_counter()
    found, measured, figures = chains(seconds)
    report |= found
    rows += measured
    headline |= figures
    report["chains part took (s)"] = time.perf_counter() - began_chains
    report["load_average_1min_at_end"] = os.getloadavg()[0]
    report["headline"] = headline
    report["measurements"] = rows
    return report
