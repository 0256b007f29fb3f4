"""The housing window (chains/vivienda-postulacion.yaml) end to end: cajas radicate households' applications
at the orchestrator, which drives the cross-checks, scoring, assignment and notification through the gateway;
every entity answers through its shipped adapter from its seeded legacy system."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from adapters.legacy.applications import ELIGIBLE, HousingApplication, housing_applications
from adapters.legacy.world import HOUSING
from broker.gelxml import MessageType, SchemaRegistry
from broker.security.pki import DevPKI
from tests.integration.chain_kit import ChainScene, chain_scene, inbox_requests

CAJAS = ("CO/CCF/860007336", "CO/CCF/860066942")
FONVIVIENDA = "CO/GOB/830121208"
COUNT = 10


@pytest.fixture(scope="module", params=["embedded", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def scene(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pki: DevPKI,
          registry: SchemaRegistry) -> Iterator[ChainScene]:
    folder = tmp_path_factory.mktemp(f"ventanilla-{request.param}")
    credentials = request.getfixturevalue("rabbitmq_platform")[1] if request.param == "rabbitmq" else None
    with chain_scene(request.param, folder, pki=pki, registry=registry, adapters=HOUSING,
                     credentials=credentials) as running:
        yield running


@pytest.fixture(scope="module")
def applications() -> list[HousingApplication]:
    return housing_applications(COUNT)


@pytest.fixture(scope="module")
def finished(scene: ChainScene, applications: list[HousingApplication]) -> dict[str, object]:
    for number, application in enumerate(applications):
        scene.request(CAJAS[number % 2], "radicarPostulacion", application.payload)
    rows = scene.wait_finished("vivienda-postulacion", COUNT, timeout=180)
    return {str(r.state["context"]["numDocumento"]): r for r in rows}


def test_every_application_ends_as_the_legacy_systems_say(finished: dict[str, object],
                                                          applications: list[HousingApplication]) -> None:
    assert len(finished) == COUNT
    outcomes = {a.doc_number: finished[a.doc_number].outcome for a in applications}  # type: ignore[attr-defined]
    for application in applications:
        outcome = outcomes[application.doc_number]
        if application.expected == ELIGIBLE:
            assert outcome == "asignado", application
        else:
            assert outcome in ("no_elegible", "no_asignado"), (application, outcome)
    assert "asignado" in outcomes.values() and "no_elegible" in outcomes.values()


def test_an_assigned_household_has_one_resolution_and_one_notification(scene: ChainScene,
                                                                       finished: dict[str, object]) -> None:
    assigned = [r for r in finished.values() if r.outcome == "asignado"]  # type: ignore[attr-defined]
    assert scene.world.housing is not None
    with closing(sqlite3.connect(scene.world.housing.fonvivienda_db)) as connection:
        for row in assigned:
            decisions = connection.execute("SELECT ESTADO, NUM_RESOLUCION FROM SFV_ASIGNACIONES WHERE RADICADO = ?",
                                           (row.radicado,)).fetchall()  # type: ignore[attr-defined]
            assert len(decisions) == 1 and decisions[0][0] == "ASIGNADO"
            assert row.summary == f"Subsidio asignado: Resolución {decisions[0][1]}"  # type: ignore[attr-defined]
    for row in finished.values():
        caja = "colsubsidio" if row.started_by == CAJAS[0] else "compensar"  # type: ignore[attr-defined]
        drops = scene.world.housing.colsubsidio_dir if caja == "colsubsidio" else scene.world.housing.compensar_dir
        files = list((Path(drops) / "salida").glob(f"*_{row.radicado}_*"))  # type: ignore[attr-defined]
        assert len(files) == 1, (row.radicado, files)  # type: ignore[attr-defined]


def test_a_failed_cross_check_is_notified_without_waiting_for_scoring(scene: ChainScene,
                                                                      finished: dict[str, object]) -> None:
    refused = [r for r in finished.values() if r.outcome == "no_elegible"]  # type: ignore[attr-defined]
    assert refused
    for row in refused:
        steps = [e["step"] for e in scene.node.orchestrator.store.history(row.id)  # type: ignore[attr-defined]
                 if e["kind"] == "solicitud_enviada"]
        if "calificar" not in steps:
            assert steps[-1] == "notificar_rechazo"
            return
    pytest.fail("every refusal waited for scoring")


def test_each_caja_got_its_radicados_and_each_step_was_asked_once(scene: ChainScene,
                                                                   finished: dict[str, object]) -> None:
    store = scene.node.orchestrator.store
    for row in finished.values():
        sent = [e for e in store.history(row.id) if e["kind"] == "solicitud_enviada"]  # type: ignore[attr-defined]
        assert len({e["step"] for e in sent}) == len(sent)
    database = scene.settings.orchestrator_database_url.removeprefix("sqlite:///")
    with closing(sqlite3.connect(database)) as connection:
        rows = connection.execute("SELECT message_id, instance, step FROM chain_messages").fetchall()
    recorded = {message: (instance, step) for message, instance, step in rows}
    folder = scene.world.folder / "almacenes"
    for name, service in (("registraduria", "verificarIdentidad"), ("snr", "consultarPropiedad"),
                          ("sisben", "consultarSisben"), ("fonvivienda", "asignarSubsidio")):
        received = inbox_requests(folder / f"{name}.db", service)
        steps = [recorded[m] for m in received]  # every request the provider got is one the orchestrator sent
        assert received and len(set(steps)) == len(steps)
    for caja, name in zip(CAJAS, ("colsubsidio", "compensar"), strict=True):
        with closing(sqlite3.connect(folder / f"{name}.db")) as connection:
            radicados = connection.execute("SELECT count(*) FROM adapter_inbox WHERE message_type = 'respuesta' "
                                           "AND service LIKE 'radicarPostulacion %'").fetchone()[0]
        assert radicados == sum(1 for r in finished.values() if r.started_by == caja)  # type: ignore[attr-defined]
    answers = [m for name in ("colsubsidio", "compensar") for m in scene.adapters[name].store.sent()
               if m.message_type == MessageType.RESPONSE.value]
    assert answers  # each caja answered the orchestrator's notificarResultado requests
