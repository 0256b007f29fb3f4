"""Schemathesis over the whole OpenAPI document with an operator token: no server error, and every response
matches its documented status, content type and schema. Lenient parsing (pydantic reads `0.5` as a
date) is accepted on purpose, so the negative-data-rejection check is left out; and a well-shaped publication
whose XSD breaks the GEL-XML conventions or names an unknown entity is rightly refused with a coded 422, which
no OpenAPI schema can express, so the positive-data-acceptance check is left out too."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from broker.api import create_app
from broker.api.queries import Stores
from broker.catalog.management import open_manager
from broker.gelxml import SchemaRegistry
from broker.security.pki import DevPKI
from broker.settings import Settings
from tests.integration.api_kit import bearer, populate

_placeholder = Path(tempfile.gettempdir())
app = create_app(Settings(database_url="sqlite://", orchestrator_database_url="sqlite://",
                          api_tokens_file=_placeholder / "gel-api-schema-sin-tokens.json"))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture(scope="module")
def operator_headers(tmp_path_factory: pytest.TempPathFactory, registry: SchemaRegistry,
                     pki: DevPKI) -> Iterator[dict[str, str]]:
    world = populate(tmp_path_factory.mktemp("api-schema"), registry, pki)
    app.state.settings, app.state.stores = world.settings, Stores(world.settings)
    app.state.catalog = open_manager(world.settings)
    yield bearer(world.tokens["operador"])
    app.state.stores.close()
    app.state.catalog.store.close()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi(case: schemathesis.Case, operator_headers: dict[str, str]) -> None:
    case.call_and_validate(headers=operator_headers, excluded_checks=[negative_data_rejection,
                                                                             positive_data_acceptance])
