"""Browser tests: the real app (the API with the dashboard's router) served by uvicorn in a thread, over
an orchestrator store filled by the orchestrator runtime itself and a few operational records, driven by
Debian's Chromium through Playwright. Screenshots go to GEL_E2E_SCREENSHOTS (default var/e2e-capturas/)."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.legacy.server import BackgroundServer, serve_background
from broker.gateway.records import OperationalRecord, OperationalRecords
from broker.gelxml import SchemaRegistry
from broker.gelxml.faults import FaultCode, falla
from broker.orchestrator.definition import load_library
from broker.orchestrator.engine import Engine, Send
from broker.orchestrator.runtime import Orchestrator
from broker.orchestrator.store import OrchestratorStore
from broker.orchestrator.testing import ManualClock, RecordingDispatcher
from broker.settings import Settings
from broker.storage import open_engine
from tests.conftest import ROOT, unavailable

CHROMIUM = Path(os.environ.get("GEL_CHROMIUM", "/usr/bin/chromium"))
CHAIN = "vivienda-postulacion"
CAJA = "CO/CCF/860007336"
DOCUMENT = "1020304050"


@dataclass(frozen=True)
class Cases:
    late: str
    assigned: str
    not_eligible: str
    running: str
    failed: str


@dataclass(frozen=True)
class Site:
    url: str
    operator_token: str
    entity_token: str
    cases: Cases
    screenshots: Path


class Filler:
    """Moves real instances of the housing chain through the runtime, under a clock the test sets."""

    def __init__(self, settings: Settings, registry: SchemaRegistry) -> None:
        self.outbox = RecordingDispatcher()
        self.clock = ManualClock(dt.datetime.now(dt.UTC))
        store = OrchestratorStore(open_engine(settings.orchestrator_database_url))
        self.library = load_library(settings.chains_dir)
        self.orchestrator = Orchestrator(store, Engine(registry), self.library, self.outbox, clock=self.clock)
        self.inputs: dict[str, Any] = dict(self.library[(CHAIN, 1)].simulation["inputs"])

    def start(self, at: dt.datetime, document: str = DOCUMENT) -> str:
        self.clock.now = at
        row = self.orchestrator.start(CHAIN, {**self.inputs, "numDocumento": document}, started_by=CAJA)
        return row.radicado

    def waiting(self, radicado: str, step: str) -> Send:
        row = self.orchestrator.store.get(radicado)
        assert row is not None
        tokens = row.state["tokens"].values()
        refs = {t["ref"] for t in tokens if t["step"] == step and t.get("phase") == "esperando_respuesta"}
        found = [s for s in self.outbox.sent if s.message_id in refs]
        assert found, f"{radicado} no espera respuesta en {step}"
        return found[-1]

    def answer(self, radicado: str, step: str, after: dt.timedelta, **values: Any) -> None:
        self.clock.now += after
        send = self.waiting(radicado, step)
        assert self.orchestrator.on_reply(correlation=send.message_id, fault_reply=False, payload=None,
                                          message_id=str(uuid.uuid4()), values=values)

    def refuse(self, radicado: str, step: str, after: dt.timedelta) -> None:
        self.clock.now += after
        send = self.waiting(radicado, step)
        payload = falla(FaultCode.AUTHZ_DENIED, caller="CO/PLAT/900000002", service=str(send.call.service),
                        version="1.0").to_xml()
        assert self.orchestrator.on_reply(correlation=send.message_id, fault_reply=True, payload=payload,
                                          message_id=str(uuid.uuid4()))

    def status(self, radicado: str) -> tuple[str, str | None, bool]:
        row = self.orchestrator.store.get(radicado)
        assert row is not None
        return row.status, row.outcome, row.late


CHECKS_OK: dict[str, dict[str, Any]] = {
    "identidad": {"estadoDocumento": "VIGENTE", "nombreCoincide": True},
    "propiedad": {"propiedades": ["false"]},
    "sisben": {"sisbenEncontrado": True, "codGrupoSisben": "C3"},
    "subsidios": {"estadosSubsidios": []},
    "recursos": {"recursosDisponibles": True},
}


def fill_cases(settings: Settings, registry: SchemaRegistry) -> Cases:
    filler = Filler(settings, registry)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    minutes = dt.timedelta(minutes=1)

    assigned = filler.start(now - dt.timedelta(days=12))
    for step, values in CHECKS_OK.items():
        filler.answer(assigned, step, 3 * minutes, **values)
    filler.answer(assigned, "calificar", dt.timedelta(days=4), puntaje=700, cumpleRequisitos=True)
    filler.answer(assigned, "asignar", dt.timedelta(days=5), asignado=True, valorAsignado=39000000,
                  numResolucion="FNV-0042-2026")
    filler.answer(assigned, "notificar_asignacion", dt.timedelta(hours=3))
    assert filler.status(assigned)[:2] == ("completada", "asignado")

    not_eligible = filler.start(now - dt.timedelta(days=3), document="52123456")
    filler.answer(not_eligible, "identidad", 2 * minutes, **CHECKS_OK["identidad"])
    filler.answer(not_eligible, "sisben", 1 * minutes, sisbenEncontrado=False)
    filler.answer(not_eligible, "notificar_rechazo", dt.timedelta(hours=2))
    assert filler.status(not_eligible)[:2] == ("completada", "no_elegible")

    failed = filler.start(now - dt.timedelta(days=2), document="79111222")
    filler.refuse(failed, "propiedad", 4 * minutes)
    assert filler.status(failed)[0] == "fallida"

    running = filler.start(now - dt.timedelta(minutes=20), document="1098765432")
    filler.answer(running, "identidad", 2 * minutes, **CHECKS_OK["identidad"])
    filler.answer(running, "sisben", 3 * minutes, **CHECKS_OK["sisben"])
    assert filler.status(running) == ("en_curso", None, False)

    late = filler.start(now - dt.timedelta(days=9), document="41222333")
    filler.answer(late, "identidad", 5 * minutes, **CHECKS_OK["identidad"])
    filler.answer(late, "sisben", 5 * minutes, **CHECKS_OK["sisben"])
    filler.answer(late, "subsidios", 5 * minutes, **CHECKS_OK["subsidios"])
    filler.answer(late, "recursos", 5 * minutes, **CHECKS_OK["recursos"])
    filler.clock.now = now - dt.timedelta(days=9) + dt.timedelta(hours=2)  # the SNR never answered within 1 h
    filler.orchestrator.fire_due_timers()
    assert filler.status(late) == ("en_curso", None, True)
    filler.clock.now = now
    filler.orchestrator.fire_due_timers()
    assert filler.status(running) == ("en_curso", None, False)
    filler.orchestrator.store.engine.dispose()
    return Cases(late=late, assigned=assigned, not_eligible=not_eligible, running=running, failed=failed)


def fill_records(settings: Settings) -> None:
    records = OperationalRecords(settings.database_url)
    this_hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    plan = [(1, 14, 1, 0), (2, 22, 2, 1), (3, 9, 0, 0), (5, 30, 3, 2)]  # hours ago, delivered, rejected, unanswered
    for hours_ago, delivered, rejected, unanswered in plan:
        outcomes = ["entregado"] * delivered + ["rechazado"] * rejected + ["sin_respuesta"] * unanswered
        for number, outcome in enumerate(outcomes):
            # every record of a group inside one clock hour, whatever the minute the test runs at
            done = this_hour - dt.timedelta(hours=hours_ago) + dt.timedelta(minutes=5 + number % 50)
            records.add(OperationalRecord(
                message_id=str(uuid.uuid4()), hop="entrega", sender="CO/PLAT/900000002", recipient="CO/GOB/899999040",
                service="verificarIdentidad v1.0", received_at=done - dt.timedelta(milliseconds=80),
                completed_at=done, duration_ms=80.0, size_bytes=2048, outcome=outcome,
                fault_code=None if outcome == "entregado" else "GEL-AUTHZ-DENIED"))
    records.close()


def deprecate(settings: Settings, code: str, version: str) -> None:
    from broker.catalog import ServiceStatus
    from broker.catalog.management import Actor, open_manager

    manager = open_manager(settings)
    manager.set_status(code, version, ServiceStatus.DEPRECATED, Actor(name="operador:Laura Méndez"))
    manager.store.close()


@pytest.fixture(scope="session")
def chromium() -> Path:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is not installed (deploy/dev/install-tools.sh installs Debian's chromium)")
    return CHROMIUM


@pytest.fixture(scope="session")
def screenshots() -> Path:
    folder = Path(os.environ.get("GEL_E2E_SCREENSHOTS") or ROOT / "var" / "e2e-capturas")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nCapturas de pantalla de las pruebas de navegador: {folder}")
    return folder


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory, registry: SchemaRegistry, chromium: Path,
         screenshots: Path) -> Iterator[Site]:
    from broker.api.app import create_app
    from broker.api.auth import create_token

    folder = tmp_path_factory.mktemp("tablero")
    settings = Settings(database_url=f"sqlite:///{folder / 'gel.db'}",
                        orchestrator_database_url=f"sqlite:///{folder / 'orquestador.db'}",
                        api_tokens_file=folder / "api-tokens.json", transport="embedded",
                        published_schemas_dir=folder / "publicados")
    operator = create_token(settings.api_tokens_file, role="operador", entity=None, name="Laura Méndez (operadora)")
    entity = create_token(settings.api_tokens_file, role="entidad", entity="CO/GOB/899999040", name="Registraduría")
    cases = fill_cases(settings, registry)
    fill_records(settings)
    deprecate(settings, "consultarSisben", "1.0")
    app = create_app(settings)
    server: BackgroundServer = serve_background(app, name="tablero")
    try:
        yield Site(url=server.url, operator_token=operator, entity_token=entity, cases=cases, screenshots=screenshots)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser(chromium: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), headless=True,
                                              args=["--no-sandbox", "--disable-gpu"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any, site: Site) -> Iterator[Any]:
    context = browser.new_context(base_url=site.url, locale="es-CO", timezone_id="America/Bogota",
                                  viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


def shoot(page: Any, site: Site, name: str) -> Path:
    path = site.screenshots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

