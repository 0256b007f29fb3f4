"""The whole platform in one process: a gateway worker and one connection per entity, each authenticated as
that entity, over RabbitMQ (a vhost with the platform topology applied) or the embedded transport.

`gel demo` runs the housing window on it and the integration tests drive it; production runs the gateway
with `gel gateway` and each entity's adapter in its own process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from broker.gateway.gateway import Routed
from broker.gateway.runtime import GatewayParts, build_gateway, platform_entity
from broker.gelxml.envelope import read_header
from broker.gelxml.parsing import parse_untrusted
from broker.security.entities import load_entities
from broker.settings import Settings
from broker.transport.abc import Delivery, OutgoingMessage, Transport
from broker.transport.provisioning import Credentials, apply_topology
from broker.transport.topology import INGRESS_EXCHANGE, entity_key, entity_queue, platform_topology

__all__ = ["LocalPlatform", "open_platform"]

TransportKind = Literal["rabbitmq", "embedded"]


@dataclass
class LocalPlatform:
    kind: TransportKind
    parts: GatewayParts
    connect: Callable[[str], Transport]
    routed: list[Routed] = field(default_factory=list)
    _opened: dict[str, Transport] = field(default_factory=dict)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def transport(self, entity: str) -> Transport:
        """The connection of `entity` (opened on first use), authenticated as that entity."""
        if entity not in self._opened:
            self._opened[entity] = self.connect(entity)
        return self._opened[entity]

    def send(self, entity: str, body: bytes, *, user_id: str | None = None, anonymous: bool = False) -> None:
        """Publish `body` to ingress over `entity`'s connection (routing key: `entity`'s, as its topic
        permission demands, whatever sender the envelope claims) and wait for RabbitMQ's confirm."""
        header = read_header(parse_untrusted(body))
        self.transport(entity).publish_all([OutgoingMessage(
            exchange=INGRESS_EXCHANGE, routing_key=entity_key(entity), body=body,
            message_id=header.message_id, user_id=None if anonymous else user_id or entity,
        )])

    def receive(self, entity: str, *, timeout: float = 10.0) -> Delivery | None:
        """The next message in `entity`'s queue (acknowledged), or None after `timeout` seconds."""
        transport = self.transport(entity)
        delivery = transport.get(entity_queue(entity), timeout=timeout)
        if delivery is not None:
            transport.ack(delivery)
        return delivery

    def wait_routed(self, count: int, *, timeout: float = 15.0) -> list[Routed]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.routed) >= count, timeout=timeout)
            return list(self.routed)

    def close(self) -> None:
        self.parts.gateway.stop()
        for transport in self._opened.values():
            transport.close()
        self.parts.close()


def open_platform(settings: Settings, kind: TransportKind, *, vhost: str = "gel-demo",
                  credentials: Credentials | None = None, purge: bool = True) -> LocalPlatform:
    """Start a gateway worker on `kind`. On RabbitMQ the topology is applied to `vhost` (unless `credentials`
    from an earlier apply are given) and, with `purge`, its queues are emptied first."""
    entities = load_entities(settings.entities_file)
    gateway_id = platform_entity(settings)
    connect: Callable[[str], Transport]
    if kind == "embedded":
        from broker.transport.embedded import EmbeddedBroker, EmbeddedTransport

        broker = EmbeddedBroker()
        EmbeddedTransport(gateway_id, broker=broker).declare(platform_topology(entities))

        def connect(user: str) -> Transport:
            return EmbeddedTransport(user, broker=broker)
    else:
        from broker.transport.rabbitmq import RabbitMQTransport

        if credentials is None:
            credentials = apply_topology(entities, credentials_file=settings.rabbitmq_credentials_file,
                                         vhost=vhost).credentials
        granted = credentials

        def connect(user: str) -> Transport:
            return RabbitMQTransport(granted.url(settings.amqp_url, user), user_label=f"gel-local:{user}")

    changed = threading.Condition()
    routed: list[Routed] = []

    def on_routed(item: Routed) -> None:
        with changed:
            routed.append(item)
            changed.notify_all()

    gateway_transport = connect(gateway_id)
    if purge and kind == "rabbitmq":
        for queue in platform_topology(entities).queues:
            gateway_transport.purge(queue.name)
    parts = build_gateway(settings, gateway_transport, on_routed=on_routed)
    parts.gateway.start()
    return LocalPlatform(kind=kind, parts=parts, connect=connect, routed=routed,
                         _opened={gateway_id: gateway_transport}, _changed=changed)
