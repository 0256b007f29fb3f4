"""The full pipeline against the raw two-hop ceiling, side by side on the same RabbitMQ node in one run.

Both paths move the same bytes (a signed `verificarIdentidad` request, as `gateway_bench.sign_stream` makes
them) along the same two hops, persistent messages on quorum queues, and keep publisher confirms in flight:

    raw ceiling:   publisher ─▶ queue "ingress" ─▶ relay ─▶ queue "destination" ─▶ consumer (ack)
    full pipeline: sender (signs) ─▶ gel.ingress ─▶ its ingress queue ─▶ gateway worker ─▶ Registraduría's queue
                   ─▶ receiver (verifies)

- The relay is a separate process (spawned, like a `gel gateway` worker) with one `RabbitMQTransport`: the
  repository's pika wrapper, the gateway's own transport. It consumes at prefetch 64 (the gateway's default),
  republishes each delivery's body with the publisher confirm kept in flight and acks the ingress delivery only
  when that republish is confirmed: exactly the gateway's discipline, and no XML work at all. Its queues are
  quorum queues with the platform's arguments (delivery limit, reject-publish; no dead-letter exchange).
- The gateway is one `gel gateway` worker process (`gateway_bench._process_worker`: `build_gateway` on SQLite,
  one commit per write) on a vhost carrying the platform topology. It parses, validates, verifies, authorises,
  checks duplicates, time-stamps, logs and routes; the routed message also carries the TSA token header.
- The receiver runs what an adapter does before handing a message to its handler (`Adapter._verify`):
  `verify_message` on the body and `verify_token` on the time-stamp header, then acks.
- Every party has a process of its own, as on separate machines (here they share the 2 CPUs, with the node):
  the sender (this process), the relay or gateway worker, and the consumer or receiver, which reports each
  arrival's `time.perf_counter` (CLOCK_MONOTONIC, one clock for every process) back to this one.

Figures per path: sustained msg/s over a burst (first publish → last message consumed; messages pre-signed,
published in confirmed batches of 100, at most 500 published and not yet consumed, so that every party works
at once for the whole burst instead of the queue absorbing it while the publisher has the CPUs), then
end-to-end latency p50/p95/p99 with publishing paced at 50 % of the sustained rate measured just before. In the
paced pipeline run the sender signs each message when its slot comes, so its latency is "sender starts signing
→ receiver has verified". Last, the raw path is paced once more at half the pipeline's sustained rate: the
bus's own latency at the load the pipeline's latency was measured at (the raw path stays up, idle, while the
pipeline is measured). CPU time per message during each burst is read from /proc for the relay or gateway
process, the consumer or receiver process, this process (the sender), the RabbitMQ node (`beam.smp`) and the
whole machine (everything running on it, other users' jobs included).

CPU per stage: the stages of the admission (and the gateway's bookkeeping around it, the sender's signing and
the receiver's verification) run one message at a time in this process on fresh signed messages, each stage
timed with the thread's CPU clock and the wall clock, through the public calls a stage makes (`check_message`,
`verify_message`, the catalog's `authorise`, the replay guard, `TimeStampAuthority.stamp`, `append_once`, the
reply-deadline row, the operational record). Beside them, on other fresh messages: whole `Pipeline.admit` calls,
and, where the pipeline has it, whole `Pipeline.admit_batch` calls of the gateway's batch size (per message), as
the batching gateway admits a backlog. The one-at-a-time rows are therefore the unbatched cost of each stage.
This part needs no RabbitMQ; the rest is measured only when RabbitMQ and `rabbitmqctl` answer.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import multiprocessing
import os
import queue
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from bench.gateway_bench import (
    ENTITIES_FILE,
    GATEWAY,
    ORCHESTRATOR,
    PREFETCH,
    REGISTRADURIA,
    SAMPLE,
    _await_ready,
    _process_worker,
    cpu_jiffies,
    platform_vhost,
    settings_for,
)
from bench.harness import Measurement
from bench.transport_bench import AMQP_URL, bench_vhost, rabbitmq_unavailable, url_with_vhost
from broker.commands.gateway import DEFAULT_WORKERS
from broker.gateway.gateway import HEADER_TIMESTAMP
from broker.gateway.records import OperationalRecord
from broker.gateway.runtime import GatewayParts, build_gateway
from broker.gelxml import check_message
from broker.gelxml.envelope import read_header, reissue
from broker.gelxml.faults import FaultCode, fault
from broker.gelxml.parsing import parse_untrusted
from broker.logs import quieten
from broker.security.entities import load_entities
from broker.security.message_log import LogEntry
from broker.security.pki import Credential, DevPKI, TrustStore
from broker.security.signing import sign_message
from broker.security.timestamp import verify_token
from broker.security.verification import verify_message
from broker.settings import Settings
from broker.transport.abc import (
    Binding,
    Delivery,
    ExchangeSpec,
    OutgoingMessage,
    QueueSpec,
    Topology,
    Transport,
)
from broker.transport.embedded import EmbeddedBroker, EmbeddedTransport
from broker.transport.provisioning import load_credentials
from broker.transport.topology import DELIVERY_LIMIT, INGRESS_EXCHANGE, entity_key, entity_queue, ingress_queue

RAW_INGRESS_EXCHANGE = "bench.relay.ingress"
RAW_DELIVER_EXCHANGE = "bench.relay.deliver"
RAW_INGRESS = "ingress"
RAW_DESTINATION = "destination"
RAW_KEY = "bench.destination"
RAW_QUEUE_ARGUMENTS = {"x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT, "x-overflow": "reject-publish"}
RAW_TOPOLOGY = Topology(
    exchanges=(ExchangeSpec(RAW_INGRESS_EXCHANGE, "topic"), ExchangeSpec(RAW_DELIVER_EXCHANGE, "topic")),
    queues=(QueueSpec(RAW_INGRESS, RAW_QUEUE_ARGUMENTS), QueueSpec(RAW_DESTINATION, RAW_QUEUE_ARGUMENTS)),
    bindings=(Binding(RAW_INGRESS_EXCHANGE, RAW_INGRESS, "#"), Binding(RAW_DELIVER_EXCHANGE, RAW_DESTINATION, "#")),
)
RECIPIENT_HEADER = "x-bench-destinatario"
"""Where a relay without a fixed routing key finds the recipient's key (as the gateway reads the envelope's)."""
PUBLISH_BATCH = 100
"""Burst publishing: `publish_all` of 100 (confirms in flight within a batch), as `gateway_bench.drive` does."""
BURST_WINDOW = 500
"""At most this many burst messages published and not yet consumed."""
PACED_PUBLISH_WINDOW = 1_000
WARM_UP = 5
SINK_PREFETCH = 100


def raw_count(seconds: float) -> int:
    """Messages in the raw burst: 5,000 at the default one second per figure."""
    return max(1_000, min(20_000, round(5_000 * seconds)))


def pipeline_count(seconds: float) -> int:
    """Messages in the pipeline burst: 1,000 at the default one second per figure (~5 s at ~200 msg/s)."""
    return max(200, min(5_000, round(1_000 * seconds)))


def paced_count(rate: float, seconds: float) -> int:
    """Messages paced at half `rate`: about 4 s × `seconds` of sending, at least 200 (of 200, p99 is the 2nd worst)."""
    return max(200, min(4_000, round(rate / 2 * 4 * seconds)))


def stage_count(seconds: float) -> int:
    return max(40, min(1_000, round(150 * seconds)))


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else float("nan")


def _measurement(name: str, values_us: Sequence[float]) -> Measurement:
    ordered = sorted(values_us)
    return Measurement(name=name, ops=len(ordered), mean_us=sum(ordered) / len(ordered),
                       p50_us=_percentile(ordered, 0.5), p99_us=_percentile(ordered, 0.99))


def _latency_ms(values_us: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values_us)
    return {"p50": _percentile(ordered, 0.5) / 1000, "p95": _percentile(ordered, 0.95) / 1000,
            "p99": _percentile(ordered, 0.99) / 1000, "max": ordered[-1] / 1000 if ordered else float("nan")}


# -- CPU accounting from /proc ----------------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process `pid` (all its threads) so far; None where /proc cannot say."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return None


def rabbitmq_node_pid() -> int | None:
    """The pid of the local RabbitMQ node (`beam.smp`), if one runs on this machine."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm", encoding="ascii", errors="replace") as comm:
                    if comm.read().strip() == "beam.smp":
                        return int(entry)
            except OSError:
                continue
    return None


@dataclass
class CpuMeter:
    """CPU seconds spent by each party's process, this process, the RabbitMQ node and the machine over a span."""

    parties: dict[str, int | None]
    """Label → pid of the other processes taking part (relay or gateway, consumer or receiver)."""
    rabbit_pid: int | None = field(default_factory=rabbitmq_node_pid)
    _start: dict[str, float] = field(default_factory=dict)
    _machine: tuple[int, int] | None = None

    def _now(self) -> dict[str, float]:
        found = {"this process (sender)": time.process_time()}
        for label, pid in (*self.parties.items(), ("RabbitMQ node", self.rabbit_pid)):
            if pid is not None and (seconds := process_cpu_seconds(pid)) is not None:
                found[label] = seconds
        return found

    def start(self) -> None:
        self._start = self._now()
        self._machine = cpu_jiffies()

    def per_message_ms(self, messages: int) -> dict[str, float]:
        """CPU ms per message since `start`, per party, and for the whole machine (every CPU, anything running)."""
        now, machine = self._now(), cpu_jiffies()
        found = {label: 1000 * (now[label] - before) / messages for label, before in self._start.items()
                 if label in now}
        if machine is not None and self._machine is not None and machine[1] > self._machine[1]:
            busy = (machine[0] - self._machine[0]) / _TICK
            found["whole machine"] = 1000 * busy / messages
            found["CPUs busy (%)"] = 100 * (machine[0] - self._machine[0]) / (machine[1] - self._machine[1])
        return found


# -- the consuming end ------------------------------------------------------------------------------------
class Arrivals:
    """What the consuming end reports (it runs in a process of its own): when each message arrived, the
    receiver's verification time, failures and duplicates; and waiting for expected messages."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.verify_cpu_us: list[float] = []
        self.failures: list[str] = []
        self.duplicates = 0
        self._lock = threading.Condition()
        self._pending: set[str] = set()
        self._complete = threading.Event()

    def note(self, key: str, at: float, verify_cpu_us: float | None, failure: str | None) -> None:
        with self._lock:
            if verify_cpu_us is not None:
                self.verify_cpu_us.append(verify_cpu_us)
            if failure is not None:
                self.failures.append(failure)
            if key in self.arrived:
                self.duplicates += 1
                return
            self.arrived[key] = at
            self._pending.discard(key)
            if not self._pending:
                self._complete.set()
            self._lock.notify_all()

    def expect(self, ids: Sequence[str]) -> None:
        with self._lock:
            self._pending = {i for i in ids if i not in self.arrived}
            self._complete.clear()
            if not self._pending:
                self._complete.set()

    def wait(self, timeout: float) -> bool:
        return self._complete.wait(timeout)

    def wait_outstanding(self, at_most: int, timeout: float) -> bool:
        """Wait until at most `at_most` of the expected messages have not arrived yet."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self._pending) <= at_most, timeout=timeout)


def _sink_worker(url: str, queue_name: str, certs_dir: str | None, arrivals: Any, ready: Any, stop: Any,
                 results: Any) -> None:
    """The consuming end, in a process of its own: (verify, as an adapter does,) ack, report each arrival
    (`time.perf_counter` is CLOCK_MONOTONIC on Linux, the same clock in every process)."""
    from broker.transport.rabbitmq import RabbitMQTransport

    quieten("WARNING")
    check = receiver_check(DevPKI(Path(certs_dir)).trust_store()) if certs_dir is not None else None
    buffered: list[tuple[str, float, float | None, str | None]] = []
    lock = threading.Lock()
    flushing = threading.Event()
    try:
        transport = RabbitMQTransport(url, user_label="gel-bench-sink")
    except Exception as exc:
        ready.put(f"sink: {type(exc).__name__}: {exc}")
        raise

    def handle(delivery: Delivery) -> None:
        spent: float | None = None
        failure: str | None = None
        if check is not None:
            cpu = time.thread_time_ns()
            try:
                check(delivery)
            except Exception as exc:  # counted and reported; the benchmark goes on
                failure = f"{type(exc).__name__}: {exc}"
            spent = (time.thread_time_ns() - cpu) / 1000
        now = time.perf_counter()
        transport.ack(delivery)
        with lock:
            buffered.append((delivery.message_id or "", now, spent, failure))

    def flush() -> None:  # in lists, every 2 ms: a queue put per message would cost the consumer CPU
        while not flushing.wait(0.002):
            with lock:
                batch = buffered[:]
                buffered.clear()
            if batch:
                arrivals.put(batch)

    flusher = threading.Thread(target=flush, name="gel-bench-sink-flush", daemon=True)
    flusher.start()
    consumer = transport.consume(queue_name, handle, prefetch=SINK_PREFETCH)
    ready.put(None)
    stop.wait()
    consumer.cancel()
    transport.close()
    flushing.set()
    flusher.join()
    with lock:
        if buffered:
            arrivals.put(buffered[:])
    results.put(None)


@contextlib.contextmanager
def sink_process(url: str, queue_name: str, *, certs_dir: Path | None = None) -> Iterator[tuple[Arrivals, int | None]]:
    """Run the consuming end (`_sink_worker`) in a spawned process; yield its arrivals and its pid."""
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

    reader = threading.Thread(target=read, name="gel-bench-sink-reader", daemon=True)
    reader.start()
    try:
        with WorkerProcess(_sink_worker, (url, queue_name, str(certs_dir) if certs_dir else None, reports),
                           "gel-bench-sink") as worker:
            yield found, worker.pid
    finally:
        done.set()
        reader.join(timeout=10)


def receiver_check(trust: TrustStore) -> Callable[[Delivery], None]:
    """What `adapters.sdk.runtime.Adapter._verify` does with a delivery: the signature and the TSA token."""

    def check(delivery: Delivery) -> None:
        verify_message(delivery.body, trust, window=None)
        token = delivery.headers.get(HEADER_TIMESTAMP)
        if not token:
            raise ValueError("the routed message carries no time-stamp token")
        verify_token(base64.b64decode(token), digest=hashlib.sha256(delivery.body).digest(), trust=trust)

    return check


# -- driving a path ---------------------------------------------------------------------------------------
@dataclass
class Burst:
    count: int
    received: int = 0
    elapsed: float = 0.0
    publish_elapsed: float = 0.0
    middle_rate: float = 0.0
    latency_us: list[float] = field(default_factory=list)
    cpu_ms: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.received / self.elapsed if self.elapsed else 0.0


@dataclass
class Paced:
    target_rate: float
    count: int
    received: int = 0
    achieved_rate: float = 0.0
    max_lag_ms: float = 0.0
    """How late the sender got behind its schedule at worst (the paced rate holds when this stays small)."""
    end_to_end_us: list[float] = field(default_factory=list)
    publish_to_receive_us: list[float] = field(default_factory=list)
    sign_cpu_us: list[float] = field(default_factory=list)
    sign_wall_us: list[float] = field(default_factory=list)
    publish_failures: int = 0


def run_burst(sender: Transport, sink: Arrivals, messages: Sequence[OutgoingMessage], meter: CpuMeter, *,
              timeout: float) -> Burst:
    """Publish `messages` in confirmed batches, never more than `BURST_WINDOW` of them published and not yet
    consumed (so publisher, relay or gateway, consumer and node all work at once, as in a steady state, and the
    queue does not absorb the burst while the publisher has the CPUs); the rate is messages / (first publish →
    last consumed)."""
    outcome = Burst(len(messages))
    ids = [m.message_id or "" for m in messages]
    sink.expect(ids)
    sent: dict[str, float] = {}
    meter.start()
    started = time.perf_counter()
    deadline = started + timeout
    for start in range(0, len(messages), PUBLISH_BATCH):
        batch = messages[start:start + PUBLISH_BATCH]
        if not sink.wait_outstanding(BURST_WINDOW - len(batch) + (len(ids) - start),
                                     timeout=max(0.0, deadline - time.perf_counter())):
            break
        now = time.perf_counter()
        sent |= {m.message_id or "": now for m in batch}
        sender.publish_all(batch)
    outcome.publish_elapsed = time.perf_counter() - started
    complete = len(sent) == len(ids) and sink.wait(max(0.0, deadline - time.perf_counter()))
    arrivals = {i: sink.arrived[i] for i in ids if i in sink.arrived}
    outcome.received = len(arrivals)
    outcome.cpu_ms = meter.per_message_ms(max(1, outcome.received))
    outcome.elapsed = (max(arrivals.values()) if complete else time.perf_counter()) - started
    outcome.latency_us = [(arrivals[i] - sent[i]) * 1e6 for i in arrivals]
    ordered = sorted(arrivals.values())
    if len(ordered) >= 20:  # the middle 80 % of the arrivals: the rate without ramp-up and tail
        low, high = ordered[len(ordered) // 10], ordered[len(ordered) * 9 // 10]
        outcome.middle_rate = (len(ordered) * 9 // 10 - len(ordered) // 10) / (high - low) if high > low else 0.0
    if not complete:
        print(f"burst: only {outcome.received} of {outcome.count} messages arrived in {timeout:.0f} s", file=sys.stderr)
    return outcome


def run_paced(sender: Transport, sink: Arrivals, rate: float, count: int, make: Callable[[], OutgoingMessage], *,
              timeout: float, signing: bool) -> Paced:
    """Send `count` messages at `rate` (one `publish` per slot, confirms in flight); `make` builds (and, for the
    pipeline, signs) each message when its slot comes."""
    outcome = Paced(rate, count)
    interval = 1.0 / rate
    window = threading.BoundedSemaphore(PACED_PUBLISH_WINDOW)
    futures: list[Future[None]] = []
    sent: dict[str, tuple[float, float]] = {}
    sink.expect([])
    begin = time.perf_counter() + 0.05
    for index in range(count):
        slot = begin + index * interval
        delay = slot - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        made, cpu = time.perf_counter(), time.thread_time_ns()
        message = make()
        publishing = time.perf_counter()
        if signing:
            outcome.sign_cpu_us.append((time.thread_time_ns() - cpu) / 1000)
            outcome.sign_wall_us.append((publishing - made) * 1e6)
        outcome.max_lag_ms = max(outcome.max_lag_ms, (made - slot) * 1000)
        sent[message.message_id or ""] = (made, publishing)
        window.acquire()
        future = sender.publish(message)
        future.add_done_callback(lambda _f: window.release())
        futures.append(future)
    last_sent = time.perf_counter()
    ids = list(sent)
    sink.expect(ids)
    sink.wait(timeout)
    outcome.publish_failures = sum(1 for f in futures if f.done() and f.exception() is not None)
    arrivals = {i: sink.arrived[i] for i in ids if i in sink.arrived}
    outcome.received = len(arrivals)
    outcome.achieved_rate = (count - 1) / (last_sent - sent[ids[0]][0]) if count > 1 else 0.0
    outcome.end_to_end_us = [(arrivals[i] - sent[i][0]) * 1e6 for i in arrivals]
    outcome.publish_to_receive_us = [(arrivals[i] - sent[i][1]) * 1e6 for i in arrivals]
    if outcome.received < count:
        print(f"paced: only {outcome.received} of {count} messages arrived in {timeout:.0f} s", file=sys.stderr)
    return outcome


def warm_up(sender: Transport, sink: Arrivals, messages: Sequence[OutgoingMessage]) -> None:
    """One at a time, so that each party's first-message costs (connections, schemas, caches) are paid."""
    for message in messages:
        sink.expect([message.message_id or ""])
        sender.publish_all([message])
        if not sink.wait(60):
            raise RuntimeError("a warm-up message did not arrive within 60 s")


# -- worker processes -------------------------------------------------------------------------------------
def relay_worker(url: str, ingress: str, exchange: str, routing_key: str | None, label: str,
                 ready: Any, stop: Any, results: Any) -> None:
    """The gateway's routing discipline without the admission: consume `ingress` at the gateway's prefetch,
    republish each body to `exchange` (under `routing_key`, or when None the key in the delivery's
    `RECIPIENT_HEADER`) with the confirm in flight, ack the ingress delivery once the republish is confirmed.
    No XML work."""
    from broker.transport.rabbitmq import RabbitMQTransport

    quieten("WARNING")
    counts = {"relayed": 0, "failed": 0}
    lock = threading.Lock()
    try:
        transport = RabbitMQTransport(url, user_label=label)
    except Exception as exc:
        ready.put(f"relay: {type(exc).__name__}: {exc}")
        raise

    def handle(delivery: Delivery) -> None:
        future = transport.publish(OutgoingMessage(
            exchange=exchange, routing_key=routing_key or str(delivery.headers[RECIPIENT_HEADER]), body=delivery.body,
            message_id=delivery.message_id, content_type="application/xml"))

        def settle(done: Future[None]) -> None:
            ok = done.exception() is None
            if ok:
                transport.ack(delivery)
            else:
                transport.nack(delivery, requeue=True)
            with lock:
                counts["relayed" if ok else "failed"] += 1

        future.add_done_callback(settle)

    consumer = transport.consume(ingress, handle, prefetch=PREFETCH)
    ready.put(None)
    stop.wait()
    consumer.cancel()
    transport.close()
    results.put(counts)


@dataclass
class WorkerProcess:
    """A spawned relay or gateway worker, stopped and joined on exit."""

    target: Callable[..., None]
    args: tuple[Any, ...]
    name: str
    result: Any = None

    def __enter__(self) -> WorkerProcess:
        context = multiprocessing.get_context("spawn")
        self._ready, self._results, self._stop = context.Queue(), context.Queue(), context.Event()
        self.process = context.Process(target=self.target, name=self.name, daemon=True,
                                       args=(*self.args, self._ready, self._stop, self._results))
        self.process.start()
        try:
            _await_ready(self._ready, [self.process], timeout=120)
        except BaseException:
            self.__exit__()
            raise
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        try:
            self.result = self._results.get(timeout=60) if self.process.is_alive() else None
        except Exception:
            self.result = None
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)


# -- the two paths ----------------------------------------------------------------------------------------
def _path_report(label: str, burst: Burst, paced: Paced) -> dict[str, Any]:
    report: dict[str, Any] = {
        f"{label}: burst messages": burst.count,
        f"{label}: burst msg/s": burst.rate,
        f"{label}: burst msg/s, middle 80 % of arrivals": burst.middle_rate,
        f"{label}: burst, publishing done after (s)": burst.publish_elapsed,
        f"{label}: burst, last message consumed after (s)": burst.elapsed,
    }
    for party, value in burst.cpu_ms.items():
        report[f"{label}: burst, CPU ms per message, {party}"] = value
    report[f"{label}: paced at (msg/s)"] = paced.target_rate
    report[f"{label}: paced, achieved (msg/s)"] = paced.achieved_rate
    report[f"{label}: paced, sender's worst lag behind schedule (ms)"] = paced.max_lag_ms
    report[f"{label}: paced messages"] = paced.count
    for name, value in _latency_ms(paced.end_to_end_us).items():
        report[f"{label}: paced end-to-end latency {name} (ms)"] = value
    if burst.received < burst.count:
        report[f"{label}: burst incomplete"] = f"{burst.received} of {burst.count} arrived"
    if paced.received < paced.count:
        report[f"{label}: paced incomplete"] = f"{paced.received} of {paced.count} arrived"
    if paced.publish_failures:
        report[f"{label}: paced publishes refused"] = paced.publish_failures
    return report


@dataclass
class RawRelay:
    """The raw two-hop path, set up and ready: a publisher, the relay process and the consumer's process."""

    body: bytes
    sender: Transport
    sink: Arrivals
    relay: WorkerProcess
    consumer_pid: int | None

    def message(self) -> OutgoingMessage:
        return OutgoingMessage(RAW_INGRESS_EXCHANGE, RAW_KEY, self.body, message_id=str(uuid.uuid4()))

    def burst(self, count: int) -> Burst:
        meter = CpuMeter({"relay process": self.relay.pid, "consumer process": self.consumer_pid})
        return run_burst(self.sender, self.sink, [self.message() for _ in range(count)], meter,
                         timeout=max(60.0, count * 0.02))

    def paced(self, rate: float, count: int) -> Paced:
        return run_paced(self.sender, self.sink, rate, count, self.message, timeout=60, signing=False)


@contextlib.contextmanager
def raw_relay(body: bytes) -> Iterator[RawRelay]:
    """The relay ceiling's path on a vhost of its own (guest), torn down on exit."""
    from broker.transport.rabbitmq import RabbitMQTransport

    with bench_vhost() as vhost:
        url = url_with_vhost(AMQP_URL, vhost)
        opened: list[RabbitMQTransport] = []
        try:
            setup = RabbitMQTransport(url, user_label="gel-bench-relay-setup")
            opened.append(setup)
            setup.declare(RAW_TOPOLOGY)
            with WorkerProcess(relay_worker, (url, RAW_INGRESS, RAW_DELIVER_EXCHANGE, RAW_KEY, "gel-bench-relay"),
                               "gel-bench-relay") as relay, \
                    sink_process(url, RAW_DESTINATION) as (arrivals, consumer_pid):
                sender = RabbitMQTransport(url, user_label="gel-bench-relay-publisher")
                opened.append(sender)
                path = RawRelay(body, sender, arrivals, relay, consumer_pid)
                warm_up(sender, arrivals, [path.message() for _ in range(WARM_UP)])
                yield path
        finally:
            for transport in opened:
                transport.close()


def _raw_extras(path: RawRelay) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if path.sink.duplicates:
        found["raw relay: duplicate deliveries"] = path.sink.duplicates
    if isinstance(path.relay.result, dict):
        found["raw relay: republishes not confirmed (retried)"] = path.relay.result.get("failed", 0)
    return found


def pipeline_path(directory: Path, pki: DevPKI, seconds: float, *, workers: int = 1
                  ) -> tuple[dict[str, Any], list[Measurement], float, Paced]:
    """`workers` gateway worker processes (as `gel gateway --workers`) on the platform topology; the sender signs,
    the receiver verifies."""
    template = parse_untrusted(SAMPLE.read_bytes())
    credential = pki.credential(ORCHESTRATOR)

    def message() -> OutgoingMessage:
        fresh = reissue(template)
        return OutgoingMessage(INGRESS_EXCHANGE, entity_key(ORCHESTRATOR), sign_message(fresh, credential),
                               message_id=read_header(fresh).message_id, user_id=ORCHESTRATOR)

    count = pipeline_count(seconds)
    warm = [message() for _ in range(WARM_UP)]
    burst_messages = [message() for _ in range(count)]
    label = "pipeline" if workers == 1 else f"pipeline, {workers} gateway workers"
    with platform_vhost(directory) as vhost:
        settings_kwargs = settings_for(directory, f"relay-pipeline-{workers}", pki, vhost)
        receiver_url = load_credentials(vhost.credentials_file, vhost=vhost.name).url(AMQP_URL, REGISTRADURIA)
        opened: list[Transport] = []
        try:
            with contextlib.ExitStack() as processes, \
                    sink_process(receiver_url, entity_queue(REGISTRADURIA), certs_dir=pki.directory) as (
                        sink, receiver_pid):
                gateways = [processes.enter_context(WorkerProcess(_process_worker, (i, settings_kwargs),
                                                                  f"gel-bench-gateway-{i}")) for i in range(workers)]
                sender = vhost.connect(ORCHESTRATOR, "gel-bench-pipeline-sender")
                opened.append(sender)
                warm_up(sender, sink, warm)
                verified_before = len(sink.verify_cpu_us)
                parties: dict[str, int | None] = {"receiver process": receiver_pid}
                if workers == 1:
                    parties["gateway worker process"] = gateways[0].pid
                else:
                    parties |= {f"gateway worker process {i}": g.pid for i, g in enumerate(gateways)}
                meter = CpuMeter(parties)
                burst = run_burst(sender, sink, burst_messages, meter, timeout=max(60.0, count * 0.2))
                burst_verify_cpu = sink.verify_cpu_us[verified_before:]
                rate = burst.rate
                paced = run_paced(sender, sink, rate / 2, paced_count(rate, seconds), message,
                                  timeout=max(60.0, count * 0.2), signing=True)
        finally:
            for transport in opened:
                transport.close()
    report = _path_report(label, burst, paced)
    for name, value in _latency_ms(paced.publish_to_receive_us).items():
        report[f"{label}: paced publish→verified latency {name} (ms)"] = value
    if sink.failures:
        report[f"{label}: receiver verification failures"] = f"{len(sink.failures)}, first: {sink.failures[0]}"
    if sink.duplicates:
        report[f"{label}: duplicate deliveries"] = sink.duplicates
    if vhost.relogins:
        report[f"{label}: logins retried after a concurrent run reset the users' passwords"] = vhost.relogins
    measurements = [
        _measurement(f"{label}: sign→verified, paced at 50 % (sender signs inline)", paced.end_to_end_us),
        _measurement(f"{label}: publish→verified, paced at 50 %", paced.publish_to_receive_us),
        _measurement(f"{label}: sender signs, in the paced run (wall)", paced.sign_wall_us),
        _measurement(f"{label}: receiver verifies, in the burst (thread CPU)", burst_verify_cpu),
    ]
    if workers == 1:  # one worker's samples are in arrival order: warm-up, burst, then the paced run
        service_us = gateways[0].result or []
        in_burst = service_us[WARM_UP:WARM_UP + burst.count]
        at_half = service_us[WARM_UP + burst.count:]
        if in_burst:
            measurements.append(_measurement(f"{label}: gateway, delivery → routed publish confirmed, burst", in_burst))
        if at_half:
            measurements.append(_measurement(f"{label}: gateway, delivery → routed publish confirmed, paced", at_half))
    return report, measurements, burst.rate, paced


# -- CPU per stage, in process ----------------------------------------------------------------------------
@dataclass
class StageClock:
    """Per-stage thread-CPU and wall samples, in µs."""

    cpu: dict[str, list[float]] = field(default_factory=dict)
    wall: dict[str, list[float]] = field(default_factory=dict)

    def time(self, stage: str, operation: Callable[[], Any]) -> Any:
        cpu, wall = time.thread_time_ns(), time.perf_counter_ns()
        result = operation()
        self.wall.setdefault(stage, []).append((time.perf_counter_ns() - wall) / 1000)
        self.cpu.setdefault(stage, []).append((time.thread_time_ns() - cpu) / 1000)
        return result

    def record(self, stage: str, cpu_us: float, wall_us: float) -> None:
        self.cpu.setdefault(stage, []).append(cpu_us)
        self.wall.setdefault(stage, []).append(wall_us)

    def rows(self) -> list[dict[str, Any]]:
        found = []
        for stage, cpu in self.cpu.items():
            ordered, wall = sorted(cpu), self.wall[stage]
            found.append({"stage": stage, "ops": len(cpu), "cpu_mean_us": sum(cpu) / len(cpu),
                          "cpu_p50_us": _percentile(ordered, 0.5), "cpu_p99_us": _percentile(ordered, 0.99),
                          "wall_mean_us": sum(wall) / len(wall)})
        return found


def _signed(credential: Credential, count: int, clock: StageClock | None) -> list[bytes]:
    template = parse_untrusted(SAMPLE.read_bytes())
    bodies = []
    for _ in range(count):
        if clock is None:
            bodies.append(sign_message(reissue(template), credential))
        else:
            bodies.append(clock.time("sender: sign (reissue + sign_message)",
                                     lambda: sign_message(reissue(template), credential)))
    return bodies


GATEWAY_STAGES = (
    "gateway: redelivery check (log lookup by the AMQP message_id)",
    "gateway: parse + validate (check_message)",
    "gateway: verify (signature, certificate, sender, freshness)",
    "gateway: authorise (AMQP user, catalog)",
    "gateway: replay check (log lookup by idMensaje)",
    "gateway: time-stamp (TSA, one token per message)",
    "gateway: log append (append_once, one commit)",
    "gateway: reply-deadline row (one commit)",
    "gateway: operational record (one commit)",
)
RECEIVER_STAGE = "receiver: verify_message + verify_token (as Adapter._verify)"
WHOLE_ADMIT = "whole Pipeline.admit (fresh message, SQLite log)"


def _stage_by_stage(clock: StageClock, parts: GatewayParts, trust: TrustStore, body: bytes,
                    routing: dict[str, str]) -> None:
    """What the gateway does to one new message (`Gateway._process`, `Pipeline.admit`, the bookkeeping after the
    routed publish), stage by stage, then what the receiving adapter checks."""
    pipeline, s = parts.pipeline, GATEWAY_STAGES

    amqp_message_id = read_header(parse_untrusted(body)).message_id  # the sender sets it; the gateway reads it

    def redelivery_check() -> None:  # as `Gateway._process`: nothing is found for a new message
        digest = hashlib.sha256(body).hexdigest()
        found = pipeline.log.find_many([amqp_message_id])[amqp_message_id]
        if any(r.message_sha256 == digest for r in found):
            raise RuntimeError("a fresh message was found in the log")

    clock.time(s[0], redelivery_check)
    message = clock.time(s[1], lambda: check_message(body, pipeline.language(), pipeline.limits))
    verified = clock.time(s[2], lambda: verify_message(message.root, trust, replay=None, window=pipeline.window))
    header = verified.header

    def authorise() -> None:
        if header.sender != ORCHESTRATOR:
            raise fault(FaultCode.AUTH_TRANSPORT_USER, transport_user=ORCHESTRATOR, claimed=header.sender)
        if pipeline.catalog is not None:
            pipeline.catalog.authorise(header, routed_request=pipeline.routed_request, platform_id=pipeline.platform_id)

    clock.time(s[3], authorise)
    replay = pipeline.replay
    if replay is not None and not clock.time(s[4], lambda: replay.first_seen(header.message_id, header.sent_at)):
        raise RuntimeError(f"the replay guard refused a fresh message {header.message_id}")
    token = clock.time(s[5], lambda: pipeline.tsa.stamp(hashlib.sha256(body).digest()))
    clock.time(s[6], lambda: pipeline.log.append_once(LogEntry(
        message=body, message_id=header.message_id, sender=header.sender, recipient=header.recipient,
        service=str(header.service), message_type=header.message_type.value, outcome="aceptado",
        token=token.der, routing=routing)))
    entry = pipeline.catalog.get(header.service.code, header.service.version) if pipeline.catalog else None
    within = entry.reply_within_seconds if entry is not None else None
    if within:
        clock.time(s[7], lambda: parts.deadlines.expect(header, within_seconds=within))
    now = dt.datetime.now(dt.UTC)
    clock.time(s[8], lambda: parts.records.add(OperationalRecord(
        message_id=header.message_id, hop="pasarela", sender=header.sender, recipient=header.recipient,
        service=str(header.service), received_at=now, completed_at=now, duration_ms=10.0,
        size_bytes=len(body), outcome="entregado", log_seq=None, attempt=0)))

    def receiver_verifies() -> None:
        verify_message(body, trust, window=None)
        verify_token(token.der, digest=hashlib.sha256(body).digest(), trust=trust)

    clock.time(RECEIVER_STAGE, receiver_verifies)


def _admit_in_batches(clock: StageClock, parts: GatewayParts, bodies: Sequence[bytes],
                      routing: dict[str, str]) -> None:
    """Whole `Pipeline.admit_batch` calls, per message, in batches of one (an idle or lightly loaded gateway),
    four, and the gateway's batch size (a busy one): the difference is what a batch costs whatever its size
    (the log transaction and its statements), which a lightly loaded gateway pays for every message."""
    try:
        from broker.gateway.pipeline import Arrival
    except ImportError:
        return
    admit_batch = getattr(parts.pipeline, "admit_batch", None)
    if admit_batch is None:
        return
    share = len(bodies) // 3
    largest = int(getattr(parts.gateway, "batch_size", 32))
    for size, chunk in ((1, bodies[:share]), (4, bodies[share:2 * share]), (largest, bodies[2 * share:])):
        for start in range(0, len(chunk) - size + 1, size):
            batch = [Arrival(body, ORCHESTRATOR, routing) for body in chunk[start:start + size]]
            cpu, wall = time.thread_time_ns(), time.perf_counter_ns()
            admit_batch(batch)
            clock.record(f"whole Pipeline.admit_batch of {size}, per message",
                         (time.thread_time_ns() - cpu) / 1000 / size, (time.perf_counter_ns() - wall) / 1000 / size)


def stages(directory: Path, pki: DevPKI, seconds: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the admission stages one after another on each of `stage_count` fresh messages, in this thread, then
    whole `Pipeline.admit` calls on as many other fresh messages (the pipeline `build_gateway` assembles)."""
    settings = Settings(**settings_for(directory, "stages", pki))
    parts = build_gateway(settings, EmbeddedTransport(GATEWAY, broker=EmbeddedBroker()))
    trust = pki.trust_store()
    count = stage_count(seconds)
    clock = StageClock()
    credential = pki.credential(ORCHESTRATOR)
    _signed(credential, 10, clock=None)  # warm-up of the signer
    bodies = _signed(credential, count, clock)
    whole_bodies = _signed(credential, count + 6 * count, clock=None)
    routing = {"cola": ingress_queue(ORCHESTRATOR), "usuarioAmqp": ORCHESTRATOR, "intento": "0"}
    try:
        for body in bodies[:WARM_UP]:  # lazy initialisation (schemas, caches, the database's pages)
            _stage_by_stage(StageClock(), parts, trust, body, routing)
        for body in bodies[WARM_UP:]:
            _stage_by_stage(clock, parts, trust, body, routing)
        for body in whole_bodies[:count]:
            clock.time(WHOLE_ADMIT, partial(parts.pipeline.admit, body, transport_user=ORCHESTRATOR, routing=routing))
        _admit_in_batches(clock, parts, whole_bodies[count:], routing)
    finally:
        parts.close()
    rows = clock.rows()
    gateway_rows = [r for r in rows if r["stage"].startswith("gateway:")]
    summary = {
        "stages: sum of the gateway stages, CPU ms": sum(r["cpu_mean_us"] for r in gateway_rows) / 1000,
        "stages: sum of the gateway stages, wall ms": sum(r["wall_mean_us"] for r in gateway_rows) / 1000,
    }
    return rows, summary


# -- the suite --------------------------------------------------------------------------------------------
def run(seconds: float) -> dict[str, Any]:
    quieten("WARNING")
    report: dict[str, Any] = {"load_average_1min_at_start": os.getloadavg()[0], "cpus": os.cpu_count(),
                              "queues": "quorum, persistent messages, publisher confirms in flight",
                              "prefetch (relay and gateway worker)": PREFETCH}
    measurements: list[Measurement] = []
    headline: dict[str, float | None] = {"raw_relay_msgs_per_s": None, "pipeline_msgs_per_s": None,
                                         "pipeline_ratio": None, "pipeline_p99_ms": None,
                                         "pipeline_2_workers_msgs_per_s": None, "pipeline_2_workers_ratio": None,
                                         "pipeline_2_workers_p99_ms": None}
    unavailable = rabbitmq_unavailable()
    with tempfile.TemporaryDirectory(prefix="gel-bench-relay-") as tmp, contextlib.ExitStack() as stack:
        directory = Path(tmp)
        pki = DevPKI(directory / "pki")
        pki.initialise(load_entities(ENTITIES_FILE))
        body = _signed(pki.credential(ORCHESTRATOR), 1, clock=None)[0]
        report["message bytes (signed verificarIdentidad request)"] = len(body)
        rows, summary = stages(directory, pki, seconds)
        report |= summary
        if unavailable is not None:
            print(f"{unavailable}: only the per-stage CPU figures are measured", file=sys.stderr)
            report["rabbitmq"] = f"not measured: {unavailable}"
        raw: RawRelay | None = None
        if unavailable is None:  # the node is shared: whatever fails is reported, the rest is kept
            try:
                raw = stack.enter_context(raw_relay(body))
                burst = raw.burst(raw_count(seconds))
                paced = raw.paced(burst.rate / 2, paced_count(burst.rate, seconds))
                report |= _path_report("raw relay", burst, paced)
                measurements.append(_measurement("raw relay: publish→consumed, paced at 50 %", paced.end_to_end_us))
                headline["raw_relay_msgs_per_s"] = burst.rate
            except Exception as exc:
                print(f"raw relay: not measured: {type(exc).__name__}: {exc}", file=sys.stderr)
                report["raw relay: not measured"] = f"{type(exc).__name__}: {exc}"
                raw = None
            try:
                found, measured, rate, paced = pipeline_path(directory, pki, seconds)
                report |= found
                measurements += measured
                headline["pipeline_msgs_per_s"] = rate
                headline["pipeline_p99_ms"] = _latency_ms(paced.end_to_end_us)["p99"]
            except Exception as exc:
                print(f"pipeline: not measured: {type(exc).__name__}: {exc}", file=sys.stderr)
                report["pipeline: not measured"] = f"{type(exc).__name__}: {exc}"
        full = headline["pipeline_msgs_per_s"]
        if raw is not None and full:
            try:  # the bus's own latency at the load the pipeline was measured at
                same = raw.paced(full / 2, paced_count(full, seconds))
                label = f"raw relay paced at the pipeline's 50 % ({full / 2:.0f} msg/s)"
                report[f"{label}: sender's worst lag behind schedule (ms)"] = same.max_lag_ms
                for name, value in _latency_ms(same.end_to_end_us).items():
                    report[f"{label}: latency {name} (ms)"] = value
                measurements.append(_measurement("raw relay: publish→consumed, at the pipeline's 50 % rate",
                                                 same.end_to_end_us))
            except Exception as exc:
                report["raw relay at the pipeline's rate: not measured"] = f"{type(exc).__name__}: {exc}"
        raw_rate = headline["raw_relay_msgs_per_s"]
        if raw_rate and full:
            headline["pipeline_ratio"] = full / raw_rate
        if unavailable is None:  # the deployment's default: `gel gateway` starts two worker processes
            try:
                found, measured, rate, paced = pipeline_path(directory, pki, seconds, workers=DEFAULT_WORKERS)
                report |= found
                measurements += measured
                headline["pipeline_2_workers_msgs_per_s"] = rate
                headline["pipeline_2_workers_p99_ms"] = _latency_ms(paced.end_to_end_us)["p99"]
                if raw_rate:
                    headline["pipeline_2_workers_ratio"] = rate / raw_rate
            except Exception as exc:
                report[f"pipeline, {DEFAULT_WORKERS} gateway workers: not measured"] = f"{type(exc).__name__}: {exc}"
    if raw is not None:
        report |= _raw_extras(raw)  # once the relay process has stopped and told its counts
    report["load_average_1min_at_end"] = os.getloadavg()[0]
    report["headline"] = headline
    report["stages"] = rows
    report["measurements"] = [m.to_dict() for m in measurements]
    return report
