"""One presentation of a case to its citizen: /api/seguimiento returns `tracking.citizen_view` and the
/seguimiento page renders the very same view (state, result, legal deadline, holders, stages, facts), with
no internal id and nothing of the case's data."""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from broker.api import create_app
from broker.api.queries import Stores
from broker.api.tracking import citizen_view, find_case
from broker.gelxml import SchemaRegistry
from broker.settings import Settings
from tests.conftest import ENTITIES_FILE
from tests.integration.api_kit import DOC_A, DOC_B, SECRET_A, SECRET_B, SISBEN, _chains


@dataclass(frozen=True)
class Cases:
    settings: Settings
    instance_a: str
    radicado_a: str
    instance_b: str
    radicado_b: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, registry: SchemaRegistry) -> Cases:
    """Two cases moved by the orchestrator runtime: A finished (Registraduría answered), B waiting on the Sisbén."""
    folder = tmp_path_factory.mktemp("seguimiento")
    settings = Settings(database_url=f"sqlite:///{folder / 'gel.db'}",
                        orchestrator_database_url=f"sqlite:///{folder / 'orq.db'}",
                        api_tokens_file=folder / "api-tokens.json", entities_file=ENTITIES_FILE)
    return Cases(settings, *_chains(registry, settings.orchestrator_database_url))


@pytest.fixture(scope="module")
def client(world: Cases) -> Iterator[TestClient]:
    with TestClient(create_app(world.settings)) as started:
        yield started


def as_json(client: TestClient, radicado: str, document: str) -> dict[str, Any]:
    answer = client.get("/api/seguimiento", params={"radicado": radicado, "documento": document})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def as_page(client: TestClient, radicado: str, document: str) -> str:
    answer = client.post("/seguimiento", data={"radicado": radicado, "documento": document})
    assert answer.status_code == 200, answer.text
    return html.unescape(answer.text)


def field(page: str, term: str) -> str | None:
    found = re.search(rf"<dt>{term}</dt><dd[^>]*>([^<]*)</dd>", page)
    return found.group(1) if found else None


def test_a_running_case_reads_the_same_on_the_page_and_in_the_api(client: TestClient, world: Cases) -> None:
    view = as_json(client, world.radicado_b, DOC_B)
    assert view["estado"] == "En trámite" and not view["terminado"] and view["resultado"] is None
    assert view["etapas"] == ["Consulta a la entidad"]
    assert view["entidades_a_cargo"] == ["Departamento Nacional de Planeación - SISBEN"]
    started = dt.datetime.fromisoformat(view["radicado_el"])
    deadline = dt.datetime.fromisoformat(view["fecha_limite"])
    assert started.utcoffset() == deadline.utcoffset() == dt.timedelta(hours=-5)
    assert dt.timedelta(days=9) < deadline - started <= dt.timedelta(days=11) and not view["vencido"]
    page = as_page(client, world.radicado_b, DOC_B)
    assert field(page, "Estado") == view["estado"] and field(page, "Etapa actual") == "Consulta a la entidad"
    assert field(page, "Lo tiene ahora") == view["entidades_a_cargo"][0]
    assert field(page, "Fecha límite prevista") == deadline.strftime("%d/%m/%Y")
    assert view["hechos"] and all(fact["texto"] in page for fact in view["hechos"])
    assert "Resultado" not in page and "Terminado el" not in page


def test_a_finished_case_reads_the_same_on_the_page_and_in_the_api(client: TestClient, world: Cases) -> None:
    view = as_json(client, world.radicado_a, DOC_A)
    assert view["estado"] == "Finalizado" and view["terminado"] and view["resultado"] == "Listo"
    assert view["entidades_a_cargo"] == view["etapas"] == [] and not view["vencido"]
    assert view["terminado_el"] and view["hechos"][-1]["texto"] == "El trámite terminó."
    page = as_page(client, world.radicado_a, DOC_A)
    assert field(page, "Estado") == "Finalizado" and field(page, "Resultado") == "Listo"
    assert field(page, "Terminado el") == dt.datetime.fromisoformat(view["terminado_el"]).strftime("%d/%m/%Y %H:%M")
    assert "Fecha límite prevista" not in page and "Lo tiene ahora" not in page
    assert all(fact["texto"] in page for fact in view["hechos"])


@pytest.mark.parametrize("case", ["a", "b"])
def test_the_citizen_learns_nothing_else(client: TestClient, world: Cases, case: str) -> None:
    radicado, document = (world.radicado_a, DOC_A) if case == "a" else (world.radicado_b, DOC_B)
    internal = (world.instance_a, world.instance_b, "respuesta-a", SISBEN,
                "CO/GOB/", "CO/PLAT/", SECRET_A, SECRET_B, DOC_A, DOC_B, "VIGENTE")
    for text in (client.get("/api/seguimiento", params={"radicado": radicado, "documento": document}).text,
                 as_page(client, radicado, document)):
        assert not [secret for secret in internal if secret in text]


def test_the_view_says_when_the_legal_deadline_has_passed(world: Cases) -> None:
    stores = Stores(world.settings)
    try:
        running = find_case(stores.orchestrator, world.radicado_b, DOC_B)
        finished = find_case(stores.orchestrator, world.radicado_a, DOC_A)
        assert running is not None and finished is not None
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
        assert citizen_view(stores, running, later).vencido
        assert not citizen_view(stores, finished, later).vencido, "a finished case is not overdue"
        assert not citizen_view(stores, running).vencido
    finally:
        stores.close()
