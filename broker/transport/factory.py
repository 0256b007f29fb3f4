"""Choose the transport from the settings: RabbitMQ when configured or answering, else the embedded one."""

from __future__ import annotations

import socket
from urllib.parse import unquote, urlparse

from broker.settings import Settings
from broker.transport.abc import Transport

__all__ = ["connect", "rabbitmq_answers", "transport_kind"]


def rabbitmq_answers(url: str, timeout: float = 0.5) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 5672), timeout=timeout):
            return True
    except OSError:
        return False


def transport_kind(settings: Settings) -> str:
    """'rabbitmq' or 'embedded', as GEL_TRANSPORT says (auto: RabbitMQ when it answers)."""
    if settings.transport == "auto":
        return "rabbitmq" if rabbitmq_answers(settings.amqp_url) else "embedded"
    return settings.transport


def connect(settings: Settings, *, url: str | None = None, label: str | None = None) -> Transport:
    """A RabbitMQ transport on `url` (default GEL_AMQP_URL), or an embedded one when that is the choice."""
    if transport_kind(settings) == "rabbitmq":
        from broker.transport.rabbitmq import RabbitMQTransport

        return RabbitMQTransport(url or settings.amqp_url, user_label=label)
    from broker.transport.embedded import EmbeddedTransport

    user = unquote(urlparse(url).username or "") if url else "guest"
    return EmbeddedTransport(user or "guest")
