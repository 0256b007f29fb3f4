"""Depths and consumers of the platform's RabbitMQ queues, read at request time: one short-lived AMQP
connection as the gateway's user on the platform's vhost, and a passive `queue.declare` per platform queue
(each entity's ingress queue and inbox, and the dead-letter queue; no management plugin needed). None when the
platform runs on the embedded transport (whose queues live in another process) or RabbitMQ cannot be read in
time."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

import pika
from pika.exceptions import ChannelClosedByBroker

from broker.logs import get_logger
from broker.security.entities import EntityRegistry
from broker.settings import Settings
from broker.transport.factory import rabbitmq_answers
from broker.transport.provisioning import ProvisioningError, load_credentials
from broker.transport.topology import DELIVERER_KIND, amqp_url_for, platform_topology

__all__ = ["QueueDepth", "queue_depths"]

QUEUE_TIMEOUT_S = 2.0
"""Socket, handshake and blocked-connection timeout of the scrape's AMQP connection."""
QUEUE_BUDGET_S = 2.5
"""The longest a scrape waits for the depths before exporting `gel_cola_disponible 0`."""

log = get_logger(component="api.colas")


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
    try:
        names = tuple(q.name for q in platform_topology(entities).queues)
        url = _monitor_url(settings, entities)
    except (OSError, ValueError) as exc:
        log.warning("queues.unavailable", reason=f"{type(exc).__name__}: {exc}")
        return None
    answer: queue.Queue[list[QueueDepth] | BaseException | None] = queue.Queue(maxsize=1)

    def read() -> None:
        try:
            if settings.transport == "auto" and not rabbitmq_answers(settings.amqp_url):
                answer.put(None)
                return
            answer.put(_read_depths(url, names))
        except Exception as exc:  # pika's connector errors are not all AMQPError; the scrape must not care
            answer.put(exc)

    threading.Thread(target=read, name="gel-colas", daemon=True).start()
    try:
        result = answer.get(timeout=QUEUE_BUDGET_S)
    except queue.Empty:
        log.warning("queues.unavailable", reason=f"RabbitMQ no respondió en {QUEUE_BUDGET_S} s")
        return None
    if isinstance(result, BaseException):
        log.warning("queues.unavailable", reason=f"{type(result).__name__}: {result}")
        return None
    return result
