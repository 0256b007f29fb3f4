"""The RabbitMQ topology derived from the entity registry: names, permissions, definitions document."""

from __future__ import annotations

import json
import re
from typing import Any

import pika

from broker.commands.topology import DEFINITIONS_FILE, definitions_text
from broker.security.entities import EntityRegistry
from broker.transport.topology import (
    DEAD_LETTER_EXCHANGE,
    DELIVER_EXCHANGE,
    INGRESS_EXCHANGE,
    INGRESS_QUEUE,
    amqp_url_for,
    entity_queue,
    permissions_for,
    platform_topology,
    render_definitions,
)

COLSUBSIDIO = "CO/CCF/860007336"


def test_the_committed_definitions_are_the_registry_rendered(entities: EntityRegistry) -> None:
    assert DEFINITIONS_FILE.read_text(encoding="utf-8") == definitions_text(entities), (
        "deploy/rabbitmq/definitions.json is stale: run gel topology render")


def test_every_entity_but_the_gateway_has_a_dead_lettered_quorum_queue(entities: EntityRegistry) -> None:
    topology = platform_topology(entities)
    queues = {q.name: q for q in topology.queues}
    for entity in entities:
        if entity.kind == "pasarela":
            assert entity_queue(entity.id) not in queues
            continue
        arguments = queues[entity_queue(entity.id)].arguments
        assert arguments["x-queue-type"] == "quorum"
        assert arguments["x-dead-letter-exchange"] == DEAD_LETTER_EXCHANGE
        assert arguments["x-dead-letter-strategy"] == "at-least-once"
        assert arguments["x-overflow"] == "reject-publish", "at-least-once dead-lettering needs reject-publish"
        assert arguments["x-delivery-limit"] >= 1
    routes = {(b.exchange, b.routing_key): b.queue for b in topology.bindings}
    assert routes[(DELIVER_EXCHANGE, "CO.CCF.860007336")] == entity_queue(COLSUBSIDIO)
    assert routes[(INGRESS_EXCHANGE, "#")] == INGRESS_QUEUE


def test_an_entity_may_write_only_to_ingress_and_read_only_its_own_queue(entities: EntityRegistry) -> None:
    granted = permissions_for(entities.get(COLSUBSIDIO))  # type: ignore[arg-type]
    queues = [q.name for q in platform_topology(entities).queues]
    assert [q for q in queues if re.search(granted.read, q)] == [entity_queue(COLSUBSIDIO)]
    assert re.search(granted.write, INGRESS_EXCHANGE)
    assert not re.search(granted.write, DELIVER_EXCHANGE) and not re.search(granted.write, "gel.ingress.x")
    assert not any(re.search(granted.configure, name) for name in [*queues, INGRESS_EXCHANGE, DELIVER_EXCHANGE])


def test_definitions_without_passwords_carry_no_hash_and_with_them_a_salted_one(entities: EntityRegistry) -> None:
    def hash_of(definitions: dict[str, Any]) -> str:
        return str(next(u["password_hash"] for u in definitions["users"] if u["name"] == COLSUBSIDIO))

    bare = render_definitions(entities)
    assert {u["password_hash"] for u in bare["users"]} == {""}
    first = render_definitions(entities, passwords={COLSUBSIDIO: "s3creto"})
    second = render_definitions(entities, passwords={COLSUBSIDIO: "s3creto"})
    assert hash_of(first) and hash_of(first) != hash_of(second), "each render salts anew"
    json.dumps(first)


def test_the_amqp_url_of_an_entity_round_trips_through_pika() -> None:
    url = amqp_url_for("amqp://guest:guest@rabbit.example:5673/%2F", user=COLSUBSIDIO, password="a/b:c@d",
                       vhost="gel")
    parameters = pika.URLParameters(url)
    assert parameters.credentials.username == COLSUBSIDIO
    assert parameters.credentials.password == "a/b:c@d"
    assert (parameters.host, parameters.port, parameters.virtual_host) == ("rabbit.example", 5673, "gel")
