"""Prometheus exposition, computed from the stores at scrape time (no state in the API process).

Queue depths come from RabbitMQ itself: one short-lived AMQP connection per scrape, as the gateway's user
on the platform's vhost, and a passive `queue.declare` per platform queue (no management plugin needed).
When RabbitMQ cannot be read in time, or the platform runs on the embedded transport (whose queues live
in another process), the depth families are left out and `gel_cola_disponible` is 0.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

import pika
from pika.exceptions import ChannelClosedByBroker
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from sqlalchemy import func, select

from broker.api.queries import Stores
from broker.gateway.records import operational_records as ops
from broker.logs import get_logger
from broker.security.entities import EntityRegistry
from broker.settings import Settings
from broker.transport.factory import rabbitmq_answers
from broker.transport.provisioning import ProvisioningError, load_credentials
from broker.transport.topology import DELIVERER_KIND, amqp_url_for, platform_topology

__all__ = ["QueueDepth", "queue_depths", "render_metrics"]

BUCKETS_MS = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0)
QUEUE_TIMEOUT_S = 2.0
"""Socket, handshake and blocked-connection timeout of the scrape's AMQP connection."""
QUEUE_BUDGET_S = 2.5
"""The longest a scrape waits for the depths before exporting `gel_cola_disponible 0`."""

log = get_logger(component="api.metrics")


@dataclass(frozen=True, slots=True)
class QueueDepth:
    queue: str
    ready: int
    consumers: int


def _monitor_url(settings: Settings, entities: EntityRegistry) -> str:
    """The gateway's RabbitMQ user (it may read every `gel.*` queue) on the platform's vhost; GEL_AMQP_URL's
    own user on that vhost when `gel topology apply` wrote no credentials."""
    gateway = entities.of_kind(DELIVERER_KIND)
    if gateway:
        try:
            credentials = load_credentials(settings.rabbitmq_credentials_file, vhost=settings.rabbitmq_vhost)
            return credentials.url(settings.amqp_url, gateway[0].id)
        except ProvisioningError:
            pass
    parsed = urlparse(settings.amqp_url)
    return amqp_url_for(settings.amqp_url, user=unquote(parsed.username or "guest"),
                        password=unquote(parsed.password or "guest"), vhost=settings.rabbitmq_vhost)


def _read_depths(url: str, names: tuple[str, ...]) -> list[QueueDepth]:
    parameters = pika.URLParameters(url)
    parameters.connection_attempts = 1
    parameters.socket_timeout = QUEUE_TIMEOUT_S
    parameters.stack_timeout = QUEUE_TIMEOUT_S
    parameters.blocked_connection_timeout = QUEUE_TIMEOUT_S
    parameters.client_properties = {"connection_name": "gel-api-metricas"}
    connection = pika.BlockingConnection(parameters)
    try:
        channel = connection.channel()
        found = []
        for name in names:
            try:
                declared = channel.queue_declare(name, passive=True).method
            except ChannelClosedByBroker:  # not declared on this vhost: nothing to count
                channel = connection.channel()
                continue
            found.append(QueueDepth(name, declared.message_count, declared.consumer_count))
        return found
    finally:
        if connection.is_open:
            connection.close()


def queue_depths(settings: Settings, entities: EntityRegistry) -> list[QueueDepth] | None:
    """Messages ready and consumers of every platform queue on RabbitMQ, or None on the embedded transport
    (GEL_TRANSPORT=embedded, or auto with no RabbitMQ answering) and when they cannot be read within
    `QUEUE_BUDGET_S` (the reading thread is then abandoned; its own timeouts end it)."""
    if settings.transport == "embedded":
        return None
    names = tuple(q.name for q in platform_topology(entities).queues)
    url = _monitor_url(settings, entities)
    answer: queue.Queue[list[QueueDepth] | BaseException | None] = queue.Queue(maxsize=1)

    def read() -> None:
        try:
            if settings.transport == "auto" and not rabbitmq_answers(settings.amqp_url):
                answer.put(None)
                return
            answer.put(_read_depths(url, names))
        except Exception as exc:  # pika's connector errors are not all AMQPError; the scrape must not care
            answer.put(exc)

    threading.Thread(target=read, name="gel-metricas-colas", daemon=True).start()
    try:
        result = answer.get(timeout=QUEUE_BUDGET_S)
    except queue.Empty:
        log.warning("metrics.queues_unavailable", reason=f"RabbitMQ no respondió en {QUEUE_BUDGET_S} s")
        return None
    if isinstance(result, BaseException):
        log.warning("metrics.queues_unavailable", reason=f"{type(result).__name__}: {result}")
        return None
    return result


class _PlatformCollector:
    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    def collect(self) -> Iterator[Metric]:
        yield from self._messages()
        yield from self._chains()
        yield from self._queues()

    def _messages(self) -> Iterator[Metric]:
        with self.stores.operational.connect() as connection:
            counts = connection.execute(select(ops.c.outcome, ops.c.fault_code, func.count())
                                        .group_by(ops.c.outcome, ops.c.fault_code)).all()
            durations = [float(d) for (d,) in connection.execute(select(ops.c.duration_ms)
                                                                 .where(ops.c.outcome == "entregado")).all()]
        messages = CounterMetricFamily("gel_mensajes", "Tramos de mensajes por resultado y código de falla.",
                                       labels=["resultado", "codigo_falla"])
        for outcome, code, count in counts:
            messages.add_metric([outcome, code or ""], count)
        yield messages
        buckets = [(str(bound), sum(1 for d in durations if d <= bound)) for bound in BUCKETS_MS]
        buckets.append(("+Inf", len(durations)))
        yield HistogramMetricFamily("gel_mensaje_duracion_ms", "Duración de los tramos entregados (ms).",
                                    buckets=buckets, sum_value=sum(durations))

    def _chains(self) -> Iterator[Metric]:
        store = self.stores.orchestrator
        chains = GaugeMetricFamily("gel_cadenas", "Instancias de cadena por cadena y estado.",
                                   labels=["cadena", "estado"])
        for (chain, status), count in sorted(store.counts().items()):
            chains.add_metric([chain, status], count)
        yield chains
        late = Counter(r.chain for r in store.search(late=True, limit=1_000_000))
        overdue = GaugeMetricFamily("gel_cadenas_vencidas", "Instancias que superaron el plazo legal.",
                                    labels=["cadena"])
        for chain, count in sorted(late.items()):
            overdue.add_metric([chain], count)
        yield overdue
        tasks = Counter(t.entity for t in store.tasks())
        open_tasks = GaugeMetricFamily("gel_tareas_abiertas", "Tareas humanas abiertas por entidad.",
                                       labels=["entidad"])
        for entity, count in sorted(tasks.items()):
            open_tasks.add_metric([entity], count)
        yield open_tasks

    def _queues(self) -> Iterator[Metric]:
        try:
            depths = queue_depths(self.stores.settings, self.stores.entities)
        except (OSError, ValueError) as exc:
            log.warning("metrics.queues_unavailable", reason=f"{type(exc).__name__}: {exc}")
            depths = None
        available = GaugeMetricFamily("gel_cola_disponible",
                                      "1 si se leyó la profundidad de las colas en RabbitMQ, 0 si no.")
        available.add_metric([], 1 if depths is not None else 0)
        yield available
        if depths is None:
            return
        ready = GaugeMetricFamily("gel_cola_mensajes", "Mensajes listos para entregar, por cola.", labels=["cola"])
        consumers = GaugeMetricFamily("gel_cola_consumidores", "Consumidores conectados, por cola.",
                                      labels=["cola"])
        for depth in depths:
            ready.add_metric([depth.queue], depth.ready)
            consumers.add_metric([depth.queue], depth.consumers)
        yield ready
        yield consumers


def render_metrics(stores: Stores) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_PlatformCollector(stores))
    return generate_latest(registry)
