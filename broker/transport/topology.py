"""The platform's RabbitMQ topology, derived from the entity registry: the one place that names it.

    entity A ──publish (user_id = A, key of A)──▶ gel.ingress (topic) ──<key of A>──▶ queue gel.entrada.<key of A> ─┐
    entity B ──publish (user_id = B, key of B)──▶ gel.ingress (topic) ──<key of B>──▶ queue gel.entrada.<key of B> ─┤
                                                         gateway workers (one channel, one consumer per queue) ◀─┘
    gateway ──publish──▶ gel.deliver (topic) ──<key of B>──▶ queue gel.entidad.<key of B> ──▶ adapter of B
    anything refused by a queue or over its delivery limit ──▶ gel.dlx (topic) ──#──▶ queue gel.dlq

Ingress is one queue per sending entity, so one entity's flood waits in its own queue while the gateway keeps
taking the others' messages (each queue has its own prefetch window on the gateway's channel): the usual
RabbitMQ answer to a noisy tenant. Each ingress queue is bounded (`INGRESS_MAX_LENGTH`, `reject-publish`):
past it RabbitMQ nacks the flooder's publishes, which stay in its outbox and are retried, so it gets
back-pressure and nothing is lost. A topic permission on `gel.ingress` lets an entity publish only with its
own routing key, so it cannot fill another entity's ingress queue.

Every queue is a quorum queue with a delivery limit and at-least-once dead-lettering (which RabbitMQ only
honours with `reject-publish` overflow). Each entity has one RabbitMQ user, named by its id, that may write
only to the ingress exchange (with its own routing key) and read only its own queue; RabbitMQ checks the
`user_id` property against that user, and the gateway checks it against the envelope's sender. The gateway's
user (the `pasarela` entity) owns the whole `gel.*` namespace and has no ingress queue of its own.

The same description becomes a `Topology` to declare through a transport (tests, the embedded broker), a
RabbitMQ definitions document for `rabbitmqctl import_definitions` (deploy/rabbitmq/definitions.json), and
the per-entity permissions and topic permissions. The gateway consumes the ingress queues of the registry it
started with: a newly registered entity needs `gel topology apply` and a gateway restart.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
    "INGRESS_MAX_LENGTH",
    "INGRESS_QUEUES",
    "MAX_QUEUE_LENGTH",
    "VHOST",
    "Permissions",
    "TopicPermissions",
    "amqp_url_for",
    "entity_key",
    "entity_queue",
    "ingress_publishers",
    "ingress_queue",
    "ingress_queues",
    "password_hash",
    "permissions_for",
    "platform_topology",
    "render_definitions",
    "topic_permissions_for",
]

VHOST = "gel"
INGRESS_EXCHANGE = "gel.ingress"
INGRESS_QUEUES = "gel.entrada.*"
"""The ingress queues taken together (what the gateway consumes), as operators read it."""
DELIVER_EXCHANGE = "gel.deliver"
DEAD_LETTER_EXCHANGE = "gel.dlx"
DEAD_LETTER_QUEUE = "gel.dlq"
HEADER_TIMESTAMP = "x-gel-sello"
"""On every delivered message: the platform's RFC 3161 token over the exact bytes (base64)."""
HEADER_NOTICE = "x-gel-aviso"
"""On a delivered message of a deprecated service version: the catalog's warning (GEL-AUTHZ-DEPRECATED)."""
DELIVERY_LIMIT = 5
MAX_QUEUE_LENGTH = 1_000_000
"""Every `gel.*` queue (the `gel-colas-acotadas` policy); RabbitMQ applies the lower of a policy and an argument."""
INGRESS_MAX_LENGTH = 50_000
"""Messages one entity may have waiting on ingress; past it RabbitMQ nacks its publishes (`reject-publish`)."""
DELIVERER_KIND = "pasarela"
"""The entity kind whose RabbitMQ user runs the gateway."""

_RABBITMQ_VERSION = "3.10.8"


def entity_key(entity_id: str) -> str:
    """The routing key of an entity: its id with dots (`CO/GOB/830121208` → `CO.GOB.830121208`)."""
    return entity_id.replace("/", ".")


def entity_queue(entity_id: str) -> str:
    """The entity's inbox: what the gateway routes to it."""
    return f"gel.entidad.{entity_key(entity_id)}"


def ingress_queue(entity_id: str) -> str:
    """The entity's ingress queue: what it published and the gateway has not taken yet."""
    return INGRESS_QUEUES.replace("*", entity_key(entity_id))


def _members(entities: Iterable[Entity]) -> list[Entity]:
    """The entities with an inbox and an ingress queue: all but the gateway's own."""
    return [e for e in entities if e.kind != DELIVERER_KIND]


def ingress_queues(entities: Iterable[Entity]) -> tuple[str, ...]:
    """Every ingress queue of these entities, in registry order: what the gateway consumes."""
    return tuple(ingress_publishers(entities))


def ingress_publishers(entities: Iterable[Entity]) -> dict[str, str]:
    """Each ingress queue and the one entity whose publishes reach it (its topic permission allows only its own
    routing key), so the queue names the publisher even of a message without `user_id`."""
    return {ingress_queue(e.id): e.id for e in _members(entities)}


@dataclass(frozen=True, slots=True)
class TopicPermissions:
    """RabbitMQ's topic authorisation of a user on one topic exchange: regexes over the routing key of a
    publish (`write`) and of a binding (`read`)."""

    exchange: str
    write: str
    read: str


def _quorum(*, dead_letter: bool = True, max_length: int | None = None) -> dict[str, Any]:
    arguments: dict[str, Any] = {"x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT,
                                 "x-overflow": "reject-publish"}
    if dead_letter:
        arguments |= {"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE, "x-dead-letter-strategy": "at-least-once"}
    if max_length is not None:
        arguments["x-max-length"] = max_length
    return arguments


def platform_topology(entities: Iterable[Entity]) -> Topology:
    """Exchanges, queues and bindings for these entities (the gateway's own entity gets no queues)."""
    members = _members(entities)
    return Topology(
        exchanges=(ExchangeSpec(INGRESS_EXCHANGE), ExchangeSpec(DELIVER_EXCHANGE), ExchangeSpec(DEAD_LETTER_EXCHANGE)),
        queues=(
            QueueSpec(DEAD_LETTER_QUEUE, _quorum(dead_letter=False)),
            *(QueueSpec(ingress_queue(e.id), _quorum(max_length=INGRESS_MAX_LENGTH)) for e in members),
            *(QueueSpec(entity_queue(e.id), _quorum()) for e in members),
        ),
        bindings=(
            Binding(DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, "#"),
            *(Binding(INGRESS_EXCHANGE, ingress_queue(e.id), entity_key(e.id)) for e in members),
            *(Binding(DELIVER_EXCHANGE, entity_queue(e.id), entity_key(e.id)) for e in members),
        ),
    )


def permissions_for(entity: Entity) -> Permissions:
    if entity.kind == DELIVERER_KIND:
        return Permissions(configure=r"^gel\..*", write=r"^gel\..*", read=r"^gel\..*")
    return Permissions(configure="^$", write=f"^{re.escape(INGRESS_EXCHANGE)}$",
                       read=f"^{re.escape(entity_queue(entity.id))}$")


def topic_permissions_for(entity: Entity) -> tuple[TopicPermissions, ...]:
    """An entity publishes to ingress only with its own routing key, so only into its own ingress queue;
    the gateway's user has none (RabbitMQ then allows every routing key)."""
    if entity.kind == DELIVERER_KIND:
        return ()
    return (TopicPermissions(exchange=INGRESS_EXCHANGE, write=f"^{re.escape(entity_key(entity.id))}$", read="^$"),)


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
    users: list[dict[str, Any]] = []
    permissions: list[dict[str, Any]] = []
    topic_permissions: list[dict[str, str]] = []
    for entity in listed:
        secret = (passwords or {}).get(entity.id)
        users.append({"name": entity.id, "password_hash": password_hash(secret) if secret else "",
                      "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": [], "limits": {}})
        granted = permissions_for(entity)
        permissions.append({"user": entity.id, "vhost": vhost, "configure": granted.configure,
                            "write": granted.write, "read": granted.read})
        topic_permissions.extend({"user": entity.id, "vhost": vhost, "exchange": t.exchange, "write": t.write,
                                  "read": t.read} for t in topic_permissions_for(entity))
    return {
        "rabbit_version": _RABBITMQ_VERSION,
        "rabbitmq_version": _RABBITMQ_VERSION,
        "users": users,
        "vhosts": [{"name": vhost}],
        "permissions": permissions,
        "topic_permissions": topic_permissions,
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
