"""Queue depths on /metrics: read from a real RabbitMQ vhost with the platform topology, and a scrape that
still answers quickly (with `gel_cola_disponible 0`) when RabbitMQ cannot be read."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from broker.api import create_app
from broker.api.auth import create_token
from broker.settings import Settings
from broker.transport.abc import Delivery, OutgoingMessage
from broker.transport.provisioning import Credentials
from broker.transport.rabbitmq import RabbitMQTransport
from broker.transport.topology import (
    DELIVER_EXCHANGE,
    INGRESS_EXCHANGE,
    INGRESS_QUEUES,
    entity_key,
    entity_queue,
    ingress_queue,
)
from tests.conftest import ENTITIES_FILE
from tests.integration.api_kit import REGISTRADURIA, SISBEN, bearer

GATEWAY = "CO/PLAT/900000001"


def scrape(settings: Settings) -> tuple[int, str, float]:
    token = create_token(settings.api_tokens_file, role="operador", entity=None, name="Mesa de operación")
    with TestClient(create_app(settings)) as client:
        started = time.monotonic()
        answer = client.get("/metrics", headers=bearer(token))
        return answer.status_code, answer.text, time.monotonic() - started


def settings_for(folder: Path, **overrides: object) -> Settings:
    return Settings(database_url=f"sqlite:///{folder / 'gel.db'}",
                    orchestrator_database_url=f"sqlite:///{folder / 'orq.db'}",
                    api_tokens_file=folder / "api-tokens.json", entities_file=ENTITIES_FILE, **overrides)


def sample(text: str, family: str, queue: str) -> float | None:
    found = re.search(rf'^{family}{{cola="{re.escape(queue)}"}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else None


@pytest.fixture
def gateway_connection(rabbitmq_platform: tuple[str, Credentials]) -> Iterator[RabbitMQTransport]:
    base_url, credentials = rabbitmq_platform
    transport = RabbitMQTransport(credentials.url(base_url, GATEWAY), user_label="test-metricas")
    yield transport
    transport.close()


@pytest.mark.rabbitmq
def test_the_depth_of_every_platform_queue_is_exported(
        tmp_path: Path, rabbitmq_platform: tuple[str, Credentials], gateway_connection: RabbitMQTransport) -> None:
    base_url, credentials = rabbitmq_platform
    gateway_connection.publish_all([OutgoingMessage(
        exchange=DELIVER_EXCHANGE, routing_key=entity_key(REGISTRADURIA), body=f"<m>{n}</m>".encode(),
        message_id=f"metricas-{n}") for n in range(3)])
    sisben = RabbitMQTransport(credentials.url(base_url, SISBEN), user_label="test-metricas-sisben")
    sisben.publish_all([OutgoingMessage(exchange=INGRESS_EXCHANGE, routing_key=entity_key(SISBEN), body=b"<m/>",
                                        user_id=SISBEN) for _ in range(2)])
    held: list[Delivery] = []
    consumer = sisben.consume(entity_queue(SISBEN), held.append)
    settings = settings_for(tmp_path, amqp_url=base_url, transport="rabbitmq", rabbitmq_vhost=credentials.vhost,
                            rabbitmq_credentials_file=Settings().rabbitmq_credentials_file)
    try:
        deadline = time.monotonic() + 10
        text = ""
        while time.monotonic() < deadline:
            status, text, _ = scrape(settings)
            assert status == 200
            if sample(text, "gel_cola_mensajes", entity_queue(REGISTRADURIA)) == 3.0 and sample(
                    text, "gel_cola_consumidores", entity_queue(SISBEN)) == 1.0:
                break
            time.sleep(0.2)
        operator, own = liveness(settings, None), liveness(settings, SISBEN)
        gateway_consumer = gateway_connection.consume([ingress_queue(REGISTRADURIA)], lambda d: None)
        try:
            working = {c["entidad"]: c for c in liveness(settings, None)["conexiones"]}
        finally:
            gateway_consumer.cancel()
    finally:
        consumer.cancel()
        sisben.close()
        gateway_connection.purge(ingress_queue(SISBEN))
    assert "gel_cola_disponible 1.0" in text
    assert sample(text, "gel_cola_mensajes", entity_queue(REGISTRADURIA)) == 3.0
    assert sample(text, "gel_cola_consumidores", entity_queue(REGISTRADURIA)) == 0.0
    assert sample(text, "gel_cola_consumidores", entity_queue(SISBEN)) == 1.0
    assert sample(text, "gel_cola_mensajes", ingress_queue(SISBEN)) == 2.0, "each entity's ingress, by queue"
    assert sample(text, "gel_cola_mensajes", ingress_queue(REGISTRADURIA)) == 0.0
    assert sample(text, "gel_cola_consumidores", ingress_queue(SISBEN)) == 0.0
    assert sample(text, "gel_cola_mensajes", entity_queue(GATEWAY)) is None, "the gateway has no inbox"
    assert sample(text, "gel_cola_mensajes", ingress_queue(GATEWAY)) is None, "nor an ingress queue"
    assert sample(text, "gel_cola_mensajes", "gel.ingress") is None, "no shared ingress queue any more"
    assert operator["colas_leidas"]
    connections = {c["entidad"]: c for c in operator["conexiones"]}
    assert connections[SISBEN]["en_linea"] and connections[SISBEN]["cola"] == entity_queue(SISBEN)
    assert not connections[REGISTRADURIA]["en_linea"] and connections[REGISTRADURIA]["mensajes_en_cola"] == 3
    assert connections[GATEWAY]["cola"] == INGRESS_QUEUES and not connections[GATEWAY]["en_linea"]
    assert connections[GATEWAY]["mensajes_en_cola"] == 2, "the gateway's backlog: every ingress queue together"
    assert working[GATEWAY]["en_linea"] and working[GATEWAY]["consumidores"] == 1, (
        "the gateway is up as soon as it consumes ingress")
    assert [c["entidad"] for c in own["conexiones"]] == [SISBEN], "an entity sees only its own connection"


def liveness(settings: Settings, entity: str | None) -> dict[str, object]:
    """/api/salud as an operator (entity None) or as an entity: who is connected to its queue."""
    token = create_token(settings.api_tokens_file, role="entidad" if entity else "operador", entity=entity,
                         name="Salud")
    with TestClient(create_app(settings)) as client:
        answer = client.get("/api/salud", headers=bearer(token))
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


@pytest.mark.parametrize("transport", ["rabbitmq", "auto"])
def test_an_unreachable_rabbitmq_leaves_the_endpoint_answering(tmp_path: Path, transport: str) -> None:
    status, text, took = scrape(settings_for(tmp_path, amqp_url="amqp://guest:guest@127.0.0.1:1/%2F",
                                             transport=transport))
    assert status == 200 and took < 3.0
    assert "gel_cola_disponible 0.0" in text and "gel_cola_mensajes" not in text
    assert "gel_cadenas" in text, "the rest of the metrics are still there"


def test_a_rabbitmq_that_never_answers_costs_the_scrape_at_most_the_budget(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        status, text, took = scrape(settings_for(tmp_path, amqp_url=f"amqp://guest:guest@127.0.0.1:{port}/%2F",
                                                 transport="rabbitmq"))
    assert status == 200 and took < 3.5
    assert "gel_cola_disponible 0.0" in text and "gel_cola_consumidores" not in text


def test_on_the_embedded_transport_no_depths_are_claimed(tmp_path: Path) -> None:
    status, text, took = scrape(settings_for(tmp_path, transport="embedded"))
    assert status == 200 and took < 1.0
    assert "gel_cola_disponible 0.0" in text and "gel_cola_mensajes" not in text
