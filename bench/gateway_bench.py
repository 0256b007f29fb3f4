"""The whole platform path: signed `verificarIdentidad` requests from the orchestrator to the Registraduría
through gateway workers (parse, validate, verify, authorise, replay check, time-stamp, log, route).

Signing is not timed: each scenario pre-signs its own messages under fresh idMensaje values (`reissue`) just
before it runs. A scenario publishes them to `gel.ingress` as the orchestrator (into its own ingress queue) and
times until the last one is consumed from the Registraduría's queue. Scenarios, side by side in one run, each with
a SQLite database of its own (one commit per log record, as in production on SQLite):

- embedded transport, one worker (`open_platform(..., "embedded")`);
- RabbitMQ, one worker; two workers as threads of one process (two `build_gateway` over two connections as the
  gateway's user, one database file); two worker processes (spawned, as `gel gateway --workers 2` does).

Figures per scenario: msg/s of the burst (first publish → last message consumed by the recipient); the
publish→receive latency of each burst message (mostly queueing behind the burst); publish→receive of
`ONE_AT_A_TIME` messages sent one by one on an idle platform (the path's own latency); and the time in the
gateway's handler per message (`Routed.elapsed_ms`: delivery handed to the handler → routed publish issued;
no queueing, no confirm). Gateway logging is quietened to WARNING, as for a benchmark.

RabbitMQ runs in a vhost of this run's own (`gel-bench-<random>`, the platform topology applied by
`apply_topology` with the node-wide credentials file, deleted afterwards); when it does not answer only the
embedded scenario is measured.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.gelxml_bench import ROOT
from bench.harness import Measurement
from bench.transport_bench import AMQP_URL, bench_vhost_name, delete_vhost, rabbitmq_unavailable, rabbitmqctl
from broker.gateway.gateway import Routed
from broker.gateway.local import open_platform
from broker.gateway.runtime import GatewayParts, build_gateway, gateway_amqp_url
from broker.gelxml.envelope import read_header, reissue
from broker.gelxml.parsing import parse_untrusted
from broker.logs import quieten
from broker.security.entities import load_entities
from broker.security.pki import DevPKI
from broker.security.signing import sign_message
from broker.settings import Settings
from broker.transport.abc import Delivery, OutgoingMessage, Transport, TransportError
from broker.transport.provisioning import apply_topology, load_credentials
from broker.transport.topology import INGRESS_EXCHANGE, entity_key, entity_queue, ingress_queue

if TYPE_CHECKING:
    from broker.transport.rabbitmq import RabbitMQTransport

GATEWAY = "CO/PLAT/900000001"
ORCHESTRATOR = "CO/PLAT/900000002"
REGISTRADURIA = "CO/GOB/899999040"
SAMPLE = ROOT / "schemas" / "samples" / "valid" / "verificarIdentidad-solicitud.xml"
ENTITIES_FILE = ROOT / "deploy" / "entities.yaml"
PREFETCH = 64
"""Per worker, the default of `gel gateway`."""
PUBLISH_BATCH = 100
WARM_UP = 5
ONE_AT_A_TIME = 30
LOGIN_ATTEMPTS = 3


def message_count(seconds: float) -> int:
    """Messages per burst: 1,000 at the default one second per figure."""
    return max(200, min(5_000, round(1_000 * seconds)))


def cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def _measurement(name: str, values_us: list[float]) -> Measurement:
    return Measurement(name=name, ops=len(values_us), mean_us=sum(values_us) / len(values_us),
                       p50_us=_percentile(values_us, 0.5), p99_us=_percentile(values_us, 0.99))


class Receiver:
    """The Registraduría's side: consume its queue, ack, note when each idMensaje arrived."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.arrived: dict[str, float] = {}
        self.duplicates = 0
        self._changed = threading.Condition()
        self._consumer = transport.consume(entity_queue(REGISTRADURIA), self._on_delivery, prefetch=100)

    def _on_delivery(self, delivery: Delivery) -> None:
        now = time.perf_counter()
        self.transport.ack(delivery)
        with self._changed:
            if delivery.message_id in self.arrived:
                self.duplicates += 1
            else:
                self.arrived[delivery.message_id or ""] = now
            self._changed.notify_all()

    def wait_for(self, ids: list[str], timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: all(i in self.arrived for i in ids), timeout=timeout)

    def close(self) -> None:
        self._consumer.cancel()


@dataclass
class Outcome:
    label: str
    count: int
    elapsed: float = 0.0
    received: int = 0
    burst_us: list[float] = field(default_factory=list)
    single_us: list[float] = field(default_factory=list)
    service_us: list[float] = field(default_factory=list)
    duplicates: int = 0
    cpu_busy: float | None = None
    """Share of all the machine's CPUs busy during the burst (this run, RabbitMQ and anything else)."""

    @property
    def rate(self) -> float:
        return self.received / self.elapsed if self.elapsed else 0.0

    def measurements(self) -> list[Measurement]:
        found = []
        if self.service_us:
            found.append(_measurement(f"{self.label}: time in the handler (admit → publish)", self.service_us))
        if self.burst_us:
            found.append(_measurement(f"{self.label}: publish→receive, burst of {self.count:,}", self.burst_us))
        if self.single_us:
            found.append(_measurement(f"{self.label}: publish→receive, one at a time", self.single_us))
        return found


def sign_stream(pki: DevPKI, count: int) -> list[OutgoingMessage]:
    """`count` requests under fresh idMensaje values, signed by the orchestrator, ready to publish."""
    template = parse_untrusted(SAMPLE.read_bytes())
    credential = pki.credential(ORCHESTRATOR)
    messages = []
    for _ in range(count):
        body = sign_message(reissue(template), credential)
        messages.append(OutgoingMessage(INGRESS_EXCHANGE, entity_key(ORCHESTRATOR), body,
                                        message_id=read_header(parse_untrusted(body)).message_id,
                                        user_id=ORCHESTRATOR))
    return messages


def drive(outcome: Outcome, pki: DevPKI, sender: Transport, receiver: Receiver, *, timeout: float) -> None:
    """Warm up, then messages one at a time (idle latency), then the timed burst."""
    singles = sign_stream(pki, WARM_UP + ONE_AT_A_TIME)
    burst = sign_stream(pki, outcome.count)
    for index, message in enumerate(singles):
        started = time.perf_counter()
        sender.publish_all([message])
        if not receiver.wait_for([message.message_id or ""], timeout=30):
            raise RuntimeError(f"{outcome.label}: a single message did not arrive within 30 s")
        if index >= WARM_UP:
            outcome.single_us.append((receiver.arrived[message.message_id or ""] - started) * 1e6)
    sent: dict[str, float] = {}
    cpu_before = cpu_jiffies()
    started = time.perf_counter()
    for start in range(0, len(burst), PUBLISH_BATCH):
        batch = burst[start:start + PUBLISH_BATCH]
        now = time.perf_counter()
        sent |= {m.message_id or "": now for m in batch}
        sender.publish_all(batch)
    ids = list(sent)
    complete = receiver.wait_for(ids, timeout=timeout)
    cpu_after = cpu_jiffies()
    if cpu_before is not None and cpu_after is not None and cpu_after[1] > cpu_before[1]:
        outcome.cpu_busy = (cpu_after[0] - cpu_before[0]) / (cpu_after[1] - cpu_before[1])
    arrivals = {i: receiver.arrived[i] for i in ids if i in receiver.arrived}
    outcome.received = len(arrivals)
    outcome.elapsed = (max(arrivals.values()) if complete else time.perf_counter()) - started
    outcome.burst_us = [(arrivals[i] - sent[i]) * 1e6 for i in arrivals]
    outcome.duplicates = receiver.duplicates
    if not complete:
        print(f"{outcome.label}: only {outcome.received} of {outcome.count} messages arrived in {timeout:.0f} s",
              file=sys.stderr)


def settings_for(directory: Path, name: str, pki: DevPKI, vhost: BenchVhost | None = None) -> dict[str, Any]:
    """Settings (as keyword arguments, to cross a process boundary) with a database of this scenario's own."""
    found: dict[str, Any] = {"certs_dir": pki.directory, "database_url": f"sqlite:///{directory / f'{name}.db'}",
                             "schemas_dir": ROOT / "schemas", "entities_file": ENTITIES_FILE, "amqp_url": AMQP_URL,
                             "catalog_file": ROOT / "deploy" / "catalog.yaml"}
    if vhost is not None:
        found |= {"rabbitmq_vhost": vhost.name, "rabbitmq_credentials_file": vhost.credentials_file}
    return found


def _service_collector(outcome: Outcome) -> Callable[[Routed], None]:
    lock = threading.Lock()

    def on_routed(item: Routed) -> None:
        with lock:
            outcome.service_us.append(item.elapsed_ms * 1000)

    return on_routed


def embedded_scenario(directory: Path, pki: DevPKI, count: int) -> Outcome:
    outcome = Outcome("embedded 1 worker", count)
    platform = open_platform(Settings(**settings_for(directory, "embedded", pki)), "embedded")
    try:
        receiver = Receiver(platform.transport(REGISTRADURIA))
        drive(outcome, pki, platform.transport(ORCHESTRATOR), receiver, timeout=max(60.0, count * 0.2))
        receiver.close()
        routed = platform.wait_routed(WARM_UP + ONE_AT_A_TIME + outcome.received, timeout=10)
        outcome.service_us = [r.elapsed_ms * 1000 for r in routed[WARM_UP:]]
    finally:
        platform.close()
    return outcome


def _stored_password_works(credentials_file: Path, user: str) -> bool | None:
    """Whether the node accepts `user` with the password stored in `credentials_file` (None: cannot tell)."""
    import pika
    from pika.exceptions import AMQPError, ProbableAccessDeniedError, ProbableAuthenticationError

    try:
        url = load_credentials(credentials_file, vhost="gel-bench-login-probe").url(AMQP_URL, user)
    except Exception:  # no file, or no password for `user` in it
        return False
    parameters = pika.URLParameters(url)
    parameters.connection_attempts, parameters.socket_timeout, parameters.blocked_connection_timeout = 1, 5, 5
    pika_log = logging.getLogger("pika")
    level = pika_log.level
    pika_log.setLevel(logging.CRITICAL)  # a refused login is an expected answer here, not an error to print
    try:
        pika.BlockingConnection(parameters).close()  # the probe vhost does not exist: normally refused below
        return True
    except ProbableAuthenticationError:
        return False
    except ProbableAccessDeniedError:  # logged in, then refused the (missing) vhost: the password is right
        return True
    except AMQPError as exc:
        return False if "ACCESS_REFUSED" in str(exc) else None
    finally:
        pika_log.setLevel(level)


def platform_users_in_use(credentials_file: Path) -> str | None:
    """Why the platform topology must not be applied now, or None.

    RabbitMQ users are node-wide and `apply_topology` sets their passwords to `credentials_file`'s. When the node
    holds other passwords for them (another checkout's test run or demo applied its own file) and one of those
    users has a connection open right now, applying would lock that run out (its next logins are refused)."""
    if _stored_password_works(credentials_file, GATEWAY) is not False:
        return None
    ids = {entity.id for entity in load_entities(ENTITIES_FILE)}
    listed = rabbitmqctl("list_connections", "user", "vhost").splitlines()
    connected = sorted({(parts[0], parts[1]) for line in listed if len(parts := line.split("\t")) >= 2
                        and parts[0] in ids})
    if not connected:
        return None
    user, vhost = connected[0]
    return (f"another run is connected as the platform's RabbitMQ users ({len(connected)} connections, e.g. {user} "
            f"on vhost {vhost}) with passwords other than {credentials_file}'s: applying the topology would reset "
            "them and lock it out; run again when it has finished")


@dataclass
class BenchVhost:
    """A vhost of this run's own with the platform topology, and the node-wide file of the users' passwords
    (RabbitMQ users are global to the node: the tests, the demo and this benchmark share one file)."""

    name: str
    credentials_file: Path
    relogins: int = 0

    def apply(self) -> None:
        """Apply the platform topology (which sets the node-wide users' passwords to this file's), unless that
        would lock out another run connected right now as those users with other passwords."""
        in_use = platform_users_in_use(self.credentials_file)
        if in_use is not None:
            raise RuntimeError(in_use)
        apply_topology(load_entities(ENTITIES_FILE), credentials_file=self.credentials_file, vhost=self.name)

    def connect(self, user: str, label: str) -> RabbitMQTransport:
        """Connect as `user`; should a concurrent run have reset the node-wide users' passwords, a refused login
        applies the topology again (the stored passwords) and retries."""
        from broker.transport.rabbitmq import RabbitMQTransport

        for attempt in range(LOGIN_ATTEMPTS):
            url = load_credentials(self.credentials_file, vhost=self.name).url(AMQP_URL, user)
            try:
                return RabbitMQTransport(url, user_label=label)
            except TransportError as exc:
                if "ACCESS_REFUSED" not in str(exc) or attempt == LOGIN_ATTEMPTS - 1:
                    raise
            self.relogins += 1
            print(f"login as {user} refused (its password was reset by another run): applying the topology "
                  "again", file=sys.stderr)
            self.apply()
        raise AssertionError("unreachable")


@contextlib.contextmanager
def platform_vhost(directory: Path) -> Iterator[BenchVhost]:
    """Apply the platform topology to a fresh `gel-bench-<random>` vhost; delete the vhost afterwards."""
    vhost = BenchVhost(bench_vhost_name(), Settings().rabbitmq_credentials_file)
    try:
        vhost.apply()
        yield vhost
    finally:
        delete_vhost(vhost.name)


def rabbitmq_thread_scenario(directory: Path, pki: DevPKI, vhost: BenchVhost, count: int, workers: int) -> Outcome:
    """`workers` gateway workers as threads of this process, each on its own connection, one database."""
    outcome = Outcome(f"rabbitmq {workers} threads" if workers > 1 else "rabbitmq 1 worker", count)
    settings = Settings(**settings_for(directory, outcome.label.replace(" ", "-"), pki, vhost))
    collect = _service_collector(outcome)
    opened: list[Transport] = []
    parts: list[GatewayParts] = []

    def connect(user: str, label: str) -> Transport:
        opened.append(vhost.connect(user, label))
        return opened[-1]

    try:
        sender = connect(ORCHESTRATOR, "gel-bench-orquestador")
        receiver_transport = connect(REGISTRADURIA, "gel-bench-registraduria")
        for index in range(workers):
            parts.append(build_gateway(settings, connect(GATEWAY, f"gel-bench-gateway-{index}"),
                                       on_routed=collect, prefetch=PREFETCH))
        for name in (ingress_queue(ORCHESTRATOR), entity_queue(REGISTRADURIA)):
            parts[0].gateway.transport.purge(name)  # whatever an earlier, failed scenario left behind
        for part in parts:
            part.gateway.start()
        receiver = Receiver(receiver_transport)
        drive(outcome, pki, sender, receiver, timeout=max(60.0, count * 0.2))
        receiver.close()
    finally:
        for part in parts:
            part.gateway.stop()  # bookkeeping (and with it `on_routed`) is finished when it returns
        for transport in opened:
            transport.close()
        for part in parts:
            part.close()
    outcome.service_us = outcome.service_us[WARM_UP:]
    return outcome


def _process_worker(index: int, settings_kwargs: dict[str, Any], ready: Any, stop: EventType, results: Any) -> None:
    """One gateway worker process, as `broker/commands/gateway.py`'s `_worker`, on this run's vhost."""
    from broker.transport.rabbitmq import RabbitMQTransport

    quieten("WARNING")
    service_us: list[float] = []
    settings = Settings(**settings_kwargs)
    try:
        transport = RabbitMQTransport(gateway_amqp_url(settings), user_label=f"gel-bench-gateway-process-{index}")
        parts = build_gateway(settings, transport, prefetch=PREFETCH,
                              on_routed=lambda item: service_us.append(item.elapsed_ms * 1000))
        parts.gateway.start()
    except Exception as exc:
        ready.put(f"worker {index}: {type(exc).__name__}: {exc}")
        raise
    ready.put(None)
    stop.wait()
    parts.gateway.stop()
    transport.close()
    parts.close()
    results.put(service_us)


def _await_ready(ready: Any, processes: Sequence[BaseProcess], *, timeout: float) -> None:
    """Wait for every worker process to report ready; fail fast when one reports an error or dies."""
    deadline = time.monotonic() + timeout
    waiting = len(processes)
    while waiting:
        try:
            failure = ready.get(timeout=1)
        except queue.Empty:
            dead = [p.exitcode for p in processes if not p.is_alive()]
            if dead:
                raise RuntimeError(f"a gateway worker process exited before it was ready (exit codes {dead})") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway worker processes not ready after {timeout:.0f} s") from None
            continue
        if failure is not None:
            raise RuntimeError(failure)
        waiting -= 1


def rabbitmq_process_scenario(directory: Path, pki: DevPKI, vhost: BenchVhost, count: int, workers: int) -> Outcome:
    """`workers` spawned processes competing on the ingress queue, one database file."""
    outcome = Outcome(f"rabbitmq {workers} processes", count)
    settings_kwargs = settings_for(directory, f"rabbitmq-{workers}-processes", pki, vhost)
    context = multiprocessing.get_context("spawn")
    ready, results, stop = context.Queue(), context.Queue(), context.Event()
    processes = [context.Process(target=_process_worker, name=f"gel-bench-gateway-{i}", daemon=True,
                                 args=(i, settings_kwargs, ready, stop, results))
                 for i in range(workers)]
    opened: list[Transport] = []
    try:
        purger = vhost.connect(GATEWAY, "gel-bench-purge")
        try:
            for name in (ingress_queue(ORCHESTRATOR), entity_queue(REGISTRADURIA)):
                purger.purge(name)
        finally:
            purger.close()
        for process in processes:
            process.start()
        sender = vhost.connect(ORCHESTRATOR, "gel-bench-orquestador")
        opened.append(sender)
        receiver_transport = vhost.connect(REGISTRADURIA, "gel-bench-registraduria")
        opened.append(receiver_transport)
        _await_ready(ready, processes, timeout=120)
        receiver = Receiver(receiver_transport)
        drive(outcome, pki, sender, receiver, timeout=max(60.0, count * 0.2))
        receiver.close()
        stop.set()
        for _ in processes:
            outcome.service_us.extend(results.get(timeout=60))
    finally:
        stop.set()
        for transport in opened:
            transport.close()
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
    return outcome


def run(seconds: float) -> dict[str, Any]:
    quieten("WARNING")
    count = message_count(seconds)
    outcomes: list[Outcome] = []
    report: dict[str, Any] = {"load_average_1min_at_start": os.getloadavg()[0], "cpus": os.cpu_count(),
                              "messages_per_burst": count, "prefetch_per_worker": PREFETCH,
                              "service": "verificarIdentidad v1.0, orquestador → Registraduría",
                              "database": "SQLite (WAL, synchronous=FULL), one commit per write"}
    unavailable = rabbitmq_unavailable()
    with tempfile.TemporaryDirectory(prefix="gel-bench-") as tmp:
        directory = Path(tmp)
        pki = DevPKI(directory / "pki")
        pki.initialise(load_entities(ENTITIES_FILE))
        outcomes.append(embedded_scenario(directory, pki, count))
        if unavailable is None:
            try:
                with platform_vhost(directory) as vhost:
                    for label, scenario in (
                            ("rabbitmq 1 worker", partial(rabbitmq_thread_scenario, workers=1)),
                            ("rabbitmq 2 threads", partial(rabbitmq_thread_scenario, workers=2)),
                            ("rabbitmq 2 processes", partial(rabbitmq_process_scenario, workers=2))):
                        try:
                            outcomes.append(scenario(directory, pki, vhost, count))
                        except Exception as exc:  # the node is shared: report what failed, keep the rest
                            print(f"{label}: not measured: {type(exc).__name__}: {exc}", file=sys.stderr)
                            report[f"{label}, not measured"] = f"{type(exc).__name__}: {exc}"
                    if vhost.relogins:
                        report["logins retried after a concurrent run reset the users' passwords"] = vhost.relogins
            except Exception as exc:
                print(f"rabbitmq not measured: {type(exc).__name__}: {exc}", file=sys.stderr)
                report["rabbitmq"] = f"not measured: {type(exc).__name__}: {exc}"
        else:
            print(f"{unavailable}: measuring the embedded transport only", file=sys.stderr)
            report["rabbitmq"] = f"not measured: {unavailable}"
    rates = {o.label: o.rate for o in outcomes}
    for outcome in outcomes:
        report[f"{outcome.label}, msg/s"] = outcome.rate
        if outcome.cpu_busy is not None and outcome.rate:
            report[f"{outcome.label}, CPUs busy during the burst (%)"] = 100 * outcome.cpu_busy
            # the whole machine's CPU time per message: a scenario well above the others shared the CPUs
            report[f"{outcome.label}, machine CPU ms per message"] = (
                1000 * outcome.cpu_busy * (os.cpu_count() or 1) / outcome.rate)
        if outcome.received < outcome.count:
            report[f"{outcome.label}, incomplete"] = f"{outcome.received} of {outcome.count} arrived"
        if outcome.duplicates:
            report[f"{outcome.label}, duplicate deliveries"] = outcome.duplicates
    one = rates.get("rabbitmq 1 worker")
    if one and rates.get("embedded 1 worker"):
        for label, key in (("rabbitmq 2 threads", "2 worker threads / 1 worker"),
                           ("rabbitmq 2 processes", "2 worker processes / 1 worker")):
            if label in rates:
                report[key] = rates[label] / one
        report["rabbitmq / embedded, 1 worker"] = one / rates["embedded 1 worker"]
    report["load_average_1min_at_end"] = os.getloadavg()[0]
    report["measurements"] = [m.to_dict() for o in outcomes for m in o.measurements()]
    return report
