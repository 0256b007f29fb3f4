"""Shared fixtures. Tests that need a real service or tool skip with a reason when it is absent, and
fail instead when GEL_REQUIRE_SERVICES=1 (as in CI)."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest
import sqlalchemy as sa

from broker.gelxml import SchemaRegistry, load_registry
from broker.security.entities import EntityRegistry, load_entities
from broker.security.pki import DevPKI

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"
SAMPLES = SCHEMAS / "samples"
ENTITIES_FILE = ROOT / "deploy" / "entities.yaml"
REQUIRE_SERVICES = os.environ.get("GEL_REQUIRE_SERVICES") == "1"
POSTGRES_URL = os.environ.get("GEL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
AMQP_URL = os.environ.get("GEL_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Chaos restarts the shared RabbitMQ and PostgreSQL: it runs after every other test."""
    items.sort(key=lambda item: item.get_closest_marker("chaos") is not None)


def unavailable(reason: str) -> None:
    """Skip, or fail when services are required."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (GEL_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def _answers(url: str, default_port: int) -> bool:
    parsed = urlparse(url.replace("+psycopg", ""))
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=1):
            return True
    except OSError:
        return False


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed (make test installs it with apt-get)")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def registry() -> SchemaRegistry:
    return load_registry(SCHEMAS)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    if not _answers(POSTGRES_URL, 5432):
        unavailable(f"PostgreSQL does not answer at {POSTGRES_URL}")
    return POSTGRES_URL


@pytest.fixture(scope="session")
def amqp_url() -> str:
    if not _answers(AMQP_URL, 5672):
        unavailable(f"RabbitMQ does not answer at {AMQP_URL}")
    return AMQP_URL


@pytest.fixture
def xmllint() -> str:
    return require_tool("xmllint")


@pytest.fixture
def xmlsec1() -> str:
    return require_tool("xmlsec1")


@pytest.fixture
def openssl() -> str:
    return require_tool("openssl")


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


@pytest.fixture(scope="session")
def entities() -> EntityRegistry:
    return load_entities(ENTITIES_FILE)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory, entities: EntityRegistry) -> DevPKI:
    """A development PKI (ECDSA P-256) with a certificate for every registered entity, shared by the session.

    Tests that revoke or re-issue certificates must use `fresh_pki` instead, so they do not leak state.
    """
    pki = DevPKI(tmp_path_factory.mktemp("pki"))
    pki.initialise(entities)
    return pki


@pytest.fixture
def fresh_pki(tmp_path: Path, entities: EntityRegistry) -> DevPKI:
    pki = DevPKI(tmp_path / "pki")
    pki.initialise(entities)
    return pki


def _database_url(server_url: str, name: str) -> str:
    parsed = urlparse(server_url)
    return urlunparse(parsed._replace(path=f"/{name}"))


@contextmanager
def postgres_databases(server_url: str, names: Sequence[str]) -> Iterator[list[str]]:
    """Fresh PostgreSQL databases on the server of `server_url`, yielded as URLs and dropped afterwards."""
    admin = sa.create_engine(_database_url(server_url, "postgres"), isolation_level="AUTOCOMMIT",
                             poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as connection:
            for name in names:
                connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield [_database_url(server_url, name) for name in names]
    finally:
        with suppress(sa.exc.SQLAlchemyError), admin.connect() as connection:
            for name in names:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh platform database: a SQLite file, or a PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gel.db'}"
        return
    with postgres_databases(request.getfixturevalue("postgres_url"), [f"gel_prueba_{uuid.uuid4().hex[:10]}"]) as [url]:
        yield url
