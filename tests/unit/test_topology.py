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
    INGRESS_MAX_LENGTH,
    MAX_QUEUE_LENGTH,
    amqp_url_for,
    entity_key,
    entity_queue,
    ingress_queue,
    ingress_queues,
    permissions_for,
    platform_topology,
    render_definitions,
    topic_permissions_for,
)

COLSUBSIDIO = "CO/CCF/860007336"


def test_the_committed_definitions_are_the_registry_rendered(entities: EntityRegistry) -> None:
    assert DEFINITIONS_FILE.read_text(encoding="utf-8") == definitions_text(entities), (
        "deploy/rabbitmq/definitions.json is stale: run gel topology render")


def test_every_entity_but_the_gateway_has_a_dead_lettered_quorum_inbox_and_ingress(entities: EntityRegistry) -> None:
    topology = platform_topology(entities)
    queues = {q.name: q for q in topology.queues}
    for entity in entities:
        if entity.kind == "pasarela":
            assert entity_queue(entity.id) not in queues and ingress_queue(entity.id) not in queues
            continue
        for name in (entity_queue(entity.id), ingress_queue(entity.id)):
            arguments = queues[name].arguments
            assert arguments["x-queue-type"] == "quorum"
            assert arguments["x-dead-letter-exchange"] == DEAD_LETTER_EXCHANGE
            assert arguments["x-dead-letter-strategy"] == "at-least-once"
            assert arguments["x-overflow"] == "reject-publish", "at-least-once dead-lettering needs reject-publish"
            assert arguments["x-delivery-limit"] >= 1
        assert queues[ingress_queue(entity.id)].arguments["x-max-length"] == INGRESS_MAX_LENGTH < MAX_QUEUE_LENGTH
    assert len(topology.queues) == 1 + 2 * (len(entities) - 1)
    routes = {(b.exchange, b.routing_key): b.queue for b in topology.bindings}
    assert routes[(DELIVER_EXCHANGE, "CO.CCF.860007336")] == entity_queue(COLSUBSIDIO)
    assert routes[(INGRESS_EXCHANGE, "CO.CCF.860007336")] == ingress_queue(COLSUBSIDIO)
    assert ingress_queue(COLSUBSIDIO) == "gel.entrada.CO.CCF.860007336"
    assert not any(b.exchange == INGRESS_EXCHANGE and "#" in b.routing_key for b in topology.bindings), (
        "no catch-all ingress queue: one entity's flood would wait in front of everyone")
    assert ingress_queues(entities) == tuple(ingress_queue(e.id) for e in entities if e.kind != "pasarela")


def test_an_entity_may_write_only_to_ingress_and_read_only_its_own_queue(entities: EntityRegistry) -> None:
    granted = permissions_for(entities.get(COLSUBSIDIO))  # type: ignore[arg-type]
    queues = [q.name for q in platform_topology(entities).queues]
    assert [q for q in queues if re.search(granted.read, q)] == [entity_queue(COLSUBSIDIO)], (
        "not even its own ingress queue: only the gateway takes from ingress")
    assert re.search(granted.write, INGRESS_EXCHANGE)
    assert not re.search(granted.write, DELIVER_EXCHANGE) and not re.search(granted.write, "gel.ingress.x")
    assert not any(re.search(granted.configure, name) for name in [*queues, INGRESS_EXCHANGE, DELIVER_EXCHANGE])


def test_an_entity_may_publish_to_ingress_only_with_its_own_routing_key(entities: EntityRegistry) -> None:
    [topic] = topic_permissions_for(entities.get(COLSUBSIDIO))  # type: ignore[arg-type]
    assert topic.exchange == INGRESS_EXCHANGE
    keys = [entity_key(e.id) for e in entities]
    assert [k for k in keys if re.search(topic.write, k)] == [entity_key(COLSUBSIDIO)]
    assert not re.search(topic.write, entity_key(COLSUBSIDIO) + ".x") and not re.search(topic.write, "CO.CCFx860007336")
    assert not re.search(topic.read, "#")
    assert topic_permissions_for(entities.of_kind("pasarela")[0]) == (), "the gateway keeps every routing key"
    rendered = render_definitions(entities, vhost="v")["topic_permissions"]
    assert len(rendered) == len(entities) - 1
    assert {"user": COLSUBSIDIO, "vhost": "v", "exchange": INGRESS_EXCHANGE, "write": topic.write,
            "read": topic.read} in rendered


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
