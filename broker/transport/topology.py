"""The platform's RabbitMQ topology, derived from the entity registry: the one place that names it.

    entity A ──publish (user_id = A)──▶ gel.ingress (topic) ──#──▶ queue gel.ingress ──▶ gateway workers
    gateway ──publish──▶ gel.deliver (topic) ──<key of B>──▶ queue gel.entidad.<key of B> ──▶ adapter of B
    anything refused by a queue or over its delivery limit ──▶ gel.dlx (topic) ──#──▶ queue gel.dlq

Every queue is a quorum queue with a delivery limit and at-least-once dead-lettering (which RabbitMQ only
honours with `reject-publish` overflow). Each entity has one RabbitMQ user, named by its id, that may write
only to the ingress exchange and read only its own queue; RabbitMQ checks the `user_id` property against
that user, and the gateway checks it against the envelope's sender. The gateway's user (the `pasarela`
entity) owns the whole `gel.*` namespace.

The same description becomes a `Topology` to declare through a transport (tests, the embedded broker), a
RabbitMQ definitions document for `rabbitmqctl import_definitions` (deploy/rabbitmq/definitions.json), and
the per-entity permissions.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlparse, urlunparse

from broker.security.entities import Entity
from broker.transport.abc import Binding, ExchangeSpec, Permissions, QueueSpec, Topology

__all__ = [
    "DEAD_LETTER_EXCHANGE",
    "DEAD_LETTER_QUEUE",
    "DELIVERER_KIND",
    "DELIVERY_LIMIT",
    "DELIVER_EXCHANGE",
    "HEADER_NOTICE",
    "HEADER_TIMESTAMP",
    "INGRESS_EXCHANGE",
    "INGRESS_QUEUE",
    "MAX_QUEUE_LENGTH",
    "VHOST",
    "Permissions",
    "amqp_url_for",
    "entity_key",
    "entity_queue",
    "password_hash",
    "permissions_for",
    "platform_topology",
    "render_definitions",
]

VHOST = "gel"
INGRESS_EXCHANGE = "gel.ingress"
INGRESS_QUEUE = "gel.ingress"
DELIVER_EXCHANGE = "gel.deliver"
DEAD_LETTER_EXCHANGE = "gel.dlx"
DEAD_LETTER_QUEUE = "gel.dlq"
HEADER_TIMESTAMP = "x-gel-sello"
"""On every delivered message: the platform's RFC 3161 token over the exact bytes (base64)."""
HEADER_NOTICE = "x-gel-aviso"
"""On a delivered message of a deprecated service version: the catalog's warning (GEL-AUTHZ-DEPRECATED)."""
DELIVERY_LIMIT = 5
MAX_QUEUE_LENGTH = 1_000_000
DELIVERER_KIND = "pasarela"
"""The entity kind whose RabbitMQ user runs the gateway."""

_RABBITMQ_VERSION = "3.10.8"


def entity_key(entity_id: str) -> str:
    """The routing key of an entity: its id with dots (`CO/GOB/830121208` → `CO.GOB.830121208`)."""
    return entity_id.replace("/", ".")


def entity_queue(entity_id: str) -> str:
    return f"gel.entidad.{entity_key(entity_id)}"


def _quorum(*, dead_letter: bool = True) -> dict[str, Any]:
    arguments: dict[str, Any] = {"x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT,
                                 "x-overflow": "reject-publish"}
    if dead_letter:
        arguments |= {"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE, "x-dead-letter-strategy": "at-least-once"}
    return arguments


def platform_topology(entities: Iterable[Entity]) -> Topology:
    """Exchanges, queues and bindings for these entities (the gateway's own entity gets no inbox)."""
    inboxes = [e for e in entities if e.kind != DELIVERER_KIND]
    return Topology(
        exchanges=(ExchangeSpec(INGRESS_EXCHANGE), ExchangeSpec(DELIVER_EXCHANGE), ExchangeSpec(DEAD_LETTER_EXCHANGE)),
        queues=(
            QueueSpec(INGRESS_QUEUE, _quorum()),
            QueueSpec(DEAD_LETTER_QUEUE, _quorum(dead_letter=False)),
            *(QueueSpec(entity_queue(e.id), _quorum()) for e in inboxes),
        ),
        bindings=(
            Binding(INGRESS_EXCHANGE, INGRESS_QUEUE, "#"),
            Binding(DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, "#"),
            *(Binding(DELIVER_EXCHANGE, entity_queue(e.id), entity_key(e.id)) for e in inboxes),
        ),
    )


def permissions_for(entity: Entity) -> Permissions:
    if entity.kind == DELIVERER_KIND:
        return Permissions(configure=r"^gel\..*", write=r"^gel\..*", read=r"^gel\..*")
    return Permissions(configure="^$", write=f"^{re.escape(INGRESS_EXCHANGE)}$",
                       read=f"^{re.escape(entity_queue(entity.id))}$")


def password_hash(password: str, *, salt: bytes | None = None) -> str:
    """RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt ‖ SHA-256(salt ‖ password)), 4-byte salt."""
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode("utf-8")).digest()).decode("ascii")


def render_definitions(entities: Iterable[Entity], *, vhost: str = VHOST,
                       passwords: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A definitions document for `rabbitmqctl import_definitions`.

    Without `passwords` the users carry no password hash: they cannot log in with a password until one is
    set (`gel topology apply` does, or an operator with `rabbitmqctl change_password`), which is what a
    document kept in the repository should say."""
    listed = list(entities)
    topology = platform_topology(listed)
    users, permissions = [], []
    for entity in listed:
        secret = (passwords or {}).get(entity.id)
        users.append({"name": entity.id, "password_hash": password_hash(secret) if secret else "",
                      "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": [], "limits": {}})
        granted = permissions_for(entity)
        permissions.append({"user": entity.id, "vhost": vhost, "configure": granted.configure,
                            "write": granted.write, "read": granted.read})
    return {
        "rabbit_version": _RABBITMQ_VERSION,
        "rabbitmq_version": _RABBITMQ_VERSION,
        "users": users,
        "vhosts": [{"name": vhost}],
        "permissions": permissions,
        "policies": [{
            "vhost": vhost, "name": "gel-colas-acotadas", "pattern": r"^gel\.", "apply-to": "queues",
            "priority": 0, "definition": {"max-length": MAX_QUEUE_LENGTH, "overflow": "reject-publish"},
        }],
        "exchanges": [{"name": e.name, "vhost": vhost, "type": e.type, "durable": e.durable, "auto_delete": False,
                       "internal": False, "arguments": {}} for e in topology.exchanges],
        "queues": [{"name": q.name, "vhost": vhost, "durable": q.durable, "auto_delete": False,
                    "arguments": dict(q.arguments)} for q in topology.queues],
        "bindings": [{"source": b.exchange, "vhost": vhost, "destination": b.queue, "destination_type": "queue",
                      "routing_key": b.routing_key, "arguments": {}} for b in topology.bindings],
    }


def amqp_url_for(base_url: str, *, user: str, password: str, vhost: str = VHOST) -> str:
    """`base_url`'s host and port with this user and vhost (entity ids contain `/`, so everything is quoted)."""
    parsed = urlparse(base_url)
    host = parsed.hostname or "127.0.0.1"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}:{parsed.port or 5672}"
    return urlunparse(parsed._replace(netloc=netloc, path="/" + quote(vhost, safe="")))
