"""Fixtures of the security suite: the hostile corpus's kit, and the integration suite's RabbitMQ vhost for
the modules marked `rabbitmq`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from broker.gateway.local import LocalPlatform, open_platform
from broker.security.entities import EntityRegistry
from broker.settings import Settings
from broker.transport.provisioning import Credentials
from tests.conftest import ENTITIES_FILE, ROOT
from tests.integration.conftest import rabbitmq_platform
from tests.security.attacks import Kit
from tests.security.harness import WATCHED, Range

__all__ = ["kit", "rabbitmq_platform", "shooting", "start_platform"]

CATALOG_FILE = ROOT / "deploy" / "catalog.yaml"


@pytest.fixture(scope="session")
def kit(tmp_path_factory: pytest.TempPathFactory, entities: EntityRegistry) -> Kit:
    """The platform PKI with the attacker's revoked, expired and otherwise unusable certificates."""
    return Kit.prepare(tmp_path_factory.mktemp("hostil"), entities)


@contextmanager
def start_platform(kit: Kit, database: Path, *, credentials: Credentials | None = None) -> Iterator[LocalPlatform]:
    """A gateway trusting the kit's PKI, on RabbitMQ when `credentials` of a vhost are given, else embedded."""
    settings = Settings(certs_dir=kit.pki.directory, database_url=f"sqlite:///{database}",
                        schemas_dir=ROOT / "schemas", entities_file=ENTITIES_FILE, catalog_file=CATALOG_FILE)
    platform = open_platform(settings, "rabbitmq" if credentials is not None else "embedded", credentials=credentials)
    try:
        yield platform
    finally:
        platform.close()


@pytest.fixture
def shooting(target: Range) -> Range:
    """The module's `target` platform with empty queues (whatever a failed test left behind is gone)."""
    target.drain(*WATCHED)
    target.drain_dead_letters()
    return target
