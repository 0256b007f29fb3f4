"""Raw transport throughput (no gateway): 1 KB persistent messages through a topic exchange to a quorum queue.

RabbitMQ, in a vhost of this run's own (`gel-bench-<random>`, deleted afterwards), against the embedded
transport, side by side:

- publishing with confirms kept in flight (`publish_all` of 500) against one blocking round trip per message
  (`publish(m).result()`), each for about `seconds`;
- consuming a fixed backlog of `CONSUME_COUNT` messages with manual acks at prefetch 1 against prefetch 100
  (mean: drain time per message; p50/p99: gaps between deliveries).

If RabbitMQ (or `rabbitmqctl`) does not answer, only the embedded transport is measured.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlparse, urlunparse

from bench.harness import Measurement, measure
from broker.logs import quieten
from broker.settings import Settings
from broker.transport.abc import Binding, Delivery, ExchangeSpec, OutgoingMessage, QueueSpec, Topology, Transport
from broker.transport.embedded import EmbeddedBroker, EmbeddedTransport
from broker.transport.factory import rabbitmq_answers

AMQP_URL = os.environ.get("GEL_AMQP_URL", Settings.model_fields["amqp_url"].default)
EXCHANGE = "bench.topic"
QUEUE = "bench.quorum"
ROUTING_KEY = "bench.mensaje"
BODY = bytes(range(256)) * 4  # 1 KB
PUBLISH_BATCH = 500
CONSUME_COUNT = 5_000
TOPOLOGY = Topology(
    exchanges=(ExchangeSpec(EXCHANGE, "topic"),),
    queues=(QueueSpec(QUEUE, {"x-queue-type": "quorum"}),),
    bindings=(Binding(EXCHANGE, QUEUE, "bench.#"),),
)


def rabbitmq_unavailable(url: str = AMQP_URL) -> str | None:
    """Why RabbitMQ cannot be measured here, or None when it answers and `rabbitmqctl` is installed."""
    if not rabbitmq_answers(url, timeout=1.0):
        return f"RabbitMQ does not answer at {urlparse(url).hostname}:{urlparse(url).port or 5672}"
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl is not installed (a vhost of the benchmark's own cannot be created)"
    return None


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def bench_vhost_name() -> str:
    return f"gel-bench-{uuid.uuid4().hex[:8]}"


def delete_vhost(vhost: str, *, attempts: int = 20, wait: float = 3.0) -> None:
    """Delete this run's vhost, retrying while the shared node is briefly down (other runs restart it)."""
    failure = ""
    for _ in range(attempts):
        try:
            rabbitmqctl("delete_vhost", vhost)
            return
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            if "does not exist" in str(exc):
                return
            failure = str(exc)
        time.sleep(wait)
    print(f"vhost {vhost} was not deleted ({failure}): run rabbitmqctl delete_vhost {vhost}", file=sys.stderr)


@contextlib.contextmanager
def bench_vhost() -> Iterator[str]:
    """A vhost of this run's own (the node is shared) where guest may do anything, deleted afterwards."""
    vhost = bench_vhost_name()
    try:
        rabbitmqctl("add_vhost", vhost)
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield vhost
    finally:
        delete_vhost(vhost)


def url_with_vhost(base_url: str, vhost: str) -> str:
    """`base_url` (its user, password, host, port) on another vhost."""
    return urlunparse(urlparse(base_url)._replace(path="/" + quote(vhost, safe="")))


def message() -> OutgoingMessage:
    return OutgoingMessage(exchange=EXCHANGE, routing_key=ROUTING_KEY, body=BODY, message_id=str(uuid.uuid4()),
                           content_type="application/octet-stream")


def per_message(m: Measurement, batch: int, name: str) -> Measurement:
    """A measurement of whole batches expressed per message (p50/p99 are of per-batch averages)."""
    return Measurement(name=name, ops=m.ops * batch, mean_us=m.mean_us / batch, p50_us=m.p50_us / batch,
                       p99_us=m.p99_us / batch)


def drain(transport: Transport, count: int, prefetch: int, *, timeout: float = 120.0) -> Measurement:
    """Consume `count` messages with manual acks at `prefetch`; per-message gaps between deliveries."""
    stamps: list[float] = []
    done = threading.Event()

    def handler(delivery: Delivery) -> None:
        transport.ack(delivery)
        stamps.append(time.perf_counter())
        if len(stamps) >= count:
            done.set()

    started = time.perf_counter()
    consumer = transport.consume(QUEUE, handler, prefetch=prefetch)
    finished = done.wait(timeout)
    consumer.cancel()
    if not finished:
        raise RuntimeError(f"only {len(stamps)} of {count} messages consumed in {timeout:.0f} s at prefetch {prefetch}")
    elapsed = stamps[count - 1] - started
    gaps = sorted((b - a) * 1e6 for a, b in zip([started, *stamps[:count - 1]], stamps[:count], strict=True))
    return Measurement(name=f"consume + ack, prefetch {prefetch} ({count:,} msgs)", ops=count,
                       mean_us=elapsed * 1e6 / count, p50_us=gaps[len(gaps) // 2],
                       p99_us=gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))])


def measure_transport(label: str, transport: Transport, seconds: float) -> tuple[list[Measurement], dict[str, float]]:
    """The four figures on one transport whose topology is declared and whose queue is empty."""
    batch = [message() for _ in range(PUBLISH_BATCH)]
    single = message()
    in_flight = per_message(measure("", lambda: transport.publish_all(batch), seconds=seconds, batch=1),
                            PUBLISH_BATCH, f"{label}: publish, confirms in flight (batches of {PUBLISH_BATCH})")
    blocking = measure(f"{label}: publish, one blocking confirm per message",
                       lambda: transport.publish(single).result(timeout=30), seconds=seconds, batch=20)
    consumed: list[Measurement] = []
    for prefetch in (1, 100):
        transport.purge(QUEUE)
        for start in range(0, CONSUME_COUNT, PUBLISH_BATCH):
            transport.publish_all(batch[:min(PUBLISH_BATCH, CONSUME_COUNT - start)])
        drained = drain(transport, CONSUME_COUNT, prefetch)
        consumed.append(Measurement(f"{label}: {drained.name}", drained.ops, drained.mean_us, drained.p50_us,
                                    drained.p99_us))
    transport.purge(QUEUE)
    rates = {
        f"{label} publish in flight, msg/s": 1e6 / in_flight.mean_us,
        f"{label} publish blocking, msg/s": 1e6 / blocking.mean_us,
        f"{label} publish in flight / blocking": blocking.mean_us / in_flight.mean_us,
        f"{label} consume prefetch 1, msg/s": 1e6 / consumed[0].mean_us,
        f"{label} consume prefetch 100, msg/s": 1e6 / consumed[1].mean_us,
        f"{label} consume prefetch 100 / prefetch 1": consumed[0].mean_us / consumed[1].mean_us,
    }
    return [in_flight, blocking, *consumed], rates


def run(seconds: float) -> dict[str, Any]:
    quieten("WARNING")
    results: list[Measurement] = []
    report: dict[str, Any] = {"load_average_1min_at_start": os.getloadavg()[0], "message_bytes": len(BODY),
                              "queue": "quorum, durable, persistent messages", "consume_backlog": CONSUME_COUNT}
    unavailable = rabbitmq_unavailable()
    if unavailable is None:
        from broker.transport.rabbitmq import RabbitMQTransport

        try:
            with bench_vhost() as vhost:
                rabbit = RabbitMQTransport(url_with_vhost(AMQP_URL, vhost), user_label="gel-bench-transport")
                try:
                    rabbit.declare(TOPOLOGY)
                    measured, rates = measure_transport("rabbitmq", rabbit, seconds)
                    results += measured
                    report |= rates
                finally:
                    rabbit.close()
        except Exception as exc:  # the node is shared: report what failed, keep the embedded figures
            unavailable = f"{type(exc).__name__}: {exc}"
            print(f"rabbitmq not measured: {unavailable}", file=sys.stderr)
            report["rabbitmq"] = f"not measured: {unavailable}"
    else:
        print(f"{unavailable}: measuring the embedded transport only", file=sys.stderr)
        report["rabbitmq"] = f"not measured: {unavailable}"
    embedded = EmbeddedTransport("guest", broker=EmbeddedBroker())
    try:
        embedded.declare(TOPOLOGY)
        measured, rates = measure_transport("embedded", embedded, seconds)
        results += measured
        report |= rates
    finally:
        embedded.close()
    if "rabbitmq publish in flight, msg/s" in report:
        report["embedded / rabbitmq, publish in flight"] = (report["embedded publish in flight, msg/s"]
                                                            / report["rabbitmq publish in flight, msg/s"])
    report["load_average_1min_at_end"] = os.getloadavg()[0]
    report["measurements"] = [m.to_dict() for m in results]
    return report
