"""Transports: RabbitMQ (production) and an in-process stand-in with the same semantics."""

from broker.transport.abc import (
    Binding,
    Consumer,
    Delivery,
    ExchangeSpec,
    OutgoingMessage,
    PublishError,
    QueueSpec,
    Topology,
    Transport,
    TransportError,
)

__all__ = [
    "Binding",
    "Consumer",
    "Delivery",
    "ExchangeSpec",
    "OutgoingMessage",
    "PublishError",
    "QueueSpec",
    "Topology",
    "Transport",
    "TransportError",
]
