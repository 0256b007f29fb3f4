"""Integration fixtures: a RabbitMQ vhost of a module's own with the platform topology applied."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from broker.security.entities import EntityRegistry
from broker.settings import Settings
from broker.transport.provisioning import Credentials, apply_topology
from broker.transport.rabbitmq import RabbitMQTransport
from tests.conftest import require_tool


def rabbitmqctl(*args: str, attempts: int = 1) -> str:
    """rabbitmqctl; clean-up passes `attempts`, as the shared node may be restarting under another test."""
    for attempt in range(attempts):
        done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=120)
        if done.returncode == 0:
            break
        if attempt + 1 < attempts:
            time.sleep(1)
    assert done.returncode == 0, done.stderr or done.stdout
    return done.stdout


@pytest.fixture(scope="module")
def rabbitmq_platform(amqp_url: str, entities: EntityRegistry) -> Iterator[tuple[str, Credentials]]:
    """A vhost of this module's own with the platform topology, users and permissions applied. The
    passwords come from (and stay in) the configured credentials file: RabbitMQ users are node-wide, so a
    fresh password here would lock out whatever else (the demo, a benchmark) is connected as that entity."""
    require_tool("rabbitmqctl")
    vhost = f"gel-test-{uuid.uuid4().hex[:8]}"
    applied = apply_topology(entities, credentials_file=Settings().rabbitmq_credentials_file, vhost=vhost)
    try:
        yield amqp_url, applied.credentials
    finally:
        rabbitmqctl("delete_vhost", vhost)


Connect = Callable[[str], RabbitMQTransport]


@pytest.fixture
def connect(rabbitmq_platform: tuple[str, Credentials]) -> Iterator[Connect]:
    """Open connections to the module's vhost as any entity (quick reconnects); all closed after the test."""
    base_url, credentials = rabbitmq_platform
    opened: list[RabbitMQTransport] = []

    def make(user: str) -> RabbitMQTransport:
        opened.append(RabbitMQTransport(credentials.url(base_url, user), user_label=f"gel-test:{user}",
                                        reconnect_max_delay=1.0))
        return opened[-1]

    yield make
    for transport in opened:
        transport.close()
