"""The electronic health-service authorisation (chains/salud-autorizacion.yaml) end to end: the IPS starts a
case per patient, the orchestrator verifies rights with ADRES (the BDUA) and asks EPS Sanitas for the
authorisation through the gateway, each answering through its shipped adapter from its seeded legacy system.
The expected outcome of every case is read from the seed, not written down here."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import pytest

from adapters.legacy.seed_ambiental_salud import ADRES_PEOPLE, CUPS, FEES, BduaPerson, bdua_people
from adapters.legacy.world import SALUD
from broker.gelxml import SchemaRegistry
from broker.gelxml.namespaces import GEL_PREFIX
from broker.gelxml.validation import nit_check_digit
from broker.orchestrator.store import InstanceRow
from broker.security.pki import DevPKI
from tests.integration.chain_kit import ChainScene, chain_scene, only_chain

CHAIN = "salud-autorizacion"
IPS = "CO/IPS/860015536"
SANITAS = "EPS005"
AUS = GEL_PREFIX + "Salud/AutorizarServicio/1.0"
COLOMBIA = timezone(timedelta(hours=-5))
OTHER_IPS = ("CO/IPS/800149384", "Clínica Universitaria Colombia")
UNKNOWN_PERSON = "1000000001"
RIGHTS_TERM = 300  # seconds: the `deadline: 5m` of the rights step


@dataclass(frozen=True)
class Case:
    """A patient, what the IPS asks for and where it is to be provided."""

    number: str
    cups: tuple[str, ...]
    at: tuple[str, str] = (IPS, "Hospital Universitario San Ignacio")
    scope: str = "AMBULATORIO"


CASES = {
    "autorizado": Case("79845123", ("883512", "890380")),
    "remision": Case("1018456789", ("871121",), at=OTHER_IPS),
    "suspendido": Case("52987654", ("890280",)),
    "retirado": Case("80234567", ("903841",)),
    "no_registrado": Case(UNKNOWN_PERSON, ("890280",)),
    "otra_eps": Case("1065432198", ("871121",)),
    "fuera_del_plan": Case("79845123", ("862401",)),
    "alto_costo": Case("79845123", ("815401",)),
}


def today() -> date:
    return datetime.now(COLOMBIA).date()


def person(number: str) -> BduaPerson | None:
    return next((p for p in ADRES_PEOPLE if p.number == number), None)


def expected_outcome(case: Case) -> str:
    """What the seeded BDUA and EPS tables make of the case (the rule of adapters/eps/handler.py)."""
    found = person(case.number)
    if found is None:
        return "sin_derechos"
    in_force = found.since <= today() and (found.until is None or found.until >= today())
    if not in_force or found.state not in ("AC", "PL"):
        return "sin_derechos"
    if found.eps != SANITAS:
        return "otra_eps"
    procedures = {row[0]: row for row in CUPS}
    if not all(procedures[c][2] for c in case.cups):
        return "negado"
    if any(procedures[c][3] for c in case.cups) and case.scope != "URGENCIAS":
        return "pendiente_auditoria"
    return "autorizado" if case.at[0] == IPS else "remision"


def inputs(case: Case) -> dict[str, object]:
    nit = case.at[0].rsplit("/", 1)[1]
    services = [
        f'<aus:servicioSolicitado xmlns:aus="{AUS}"><aus:codCups>{code}</aus:codCups>'
        f"<aus:nomCups>{next(row[1] for row in CUPS if row[0] == code)}</aus:nomCups>"
        f"<aus:cantidad>1</aus:cantidad></aus:servicioSolicitado>" for code in case.cups]
    return {
        "tipoDocumento": "CC", "numDocumento": case.number, "fechaAtencion": today().isoformat(),
        "idIpsPrestadora": case.at[0], "nitIpsPrestadora": nit, "dvIpsPrestadora": str(nit_check_digit(nit)),
        "nomIpsPrestadora": case.at[1], "servicios": services, "codCie10": "M232",
        "nomCie10": "TRASTORNO DE MENISCO DEBIDO A DESGARRO O LESIÓN ANTIGUA", "codAmbito": case.scope,
        "prioridad": "NO_PRIORITARIA", "tipoDocumentoMedico": "CC", "numDocumentoMedico": "80123456",
        "primerNombreMedico": "ANDRÉS", "primerApellidoMedico": "ROJAS", "registroMedico": "1023456",
    }


@pytest.fixture(scope="module", params=["embedded", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def scene(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pki: DevPKI,
          registry: SchemaRegistry) -> Iterator[ChainScene]:
    folder = tmp_path_factory.mktemp(f"salud-{request.param}")
    credentials = request.getfixturevalue("rabbitmq_platform")[1] if request.param == "rabbitmq" else None
    chains = only_chain(folder, CHAIN)
    with chain_scene(request.param, folder, pki=pki, registry=registry, adapters=SALUD,
                     credentials=credentials, chains_dir=chains) as running:
        yield running


@pytest.fixture(scope="module")
def finished(scene: ChainScene) -> dict[str, InstanceRow]:
    assert UNKNOWN_PERSON not in {p.number for p in bdua_people()}
    started = {name: scene.node.orchestrator.start(CHAIN, inputs(case), started_by=IPS).id
               for name, case in CASES.items()}
    rows = {r.id: r for r in scene.wait_finished(CHAIN, len(CASES), timeout=60)}
    return {name: rows[instance] for name, instance in started.items()}


def test_every_case_ends_as_the_seeded_bdua_and_eps_say(finished: dict[str, InstanceRow]) -> None:
    outcomes = {name: row.outcome for name, row in finished.items()}
    assert outcomes == {name: expected_outcome(case) for name, case in CASES.items()}
    assert set(outcomes.values()) == {"autorizado", "remision", "sin_derechos", "otra_eps", "negado",
                                      "pendiente_auditoria"}
    assert all(row.status == "completada" for row in finished.values())


def test_the_rights_were_verified_well_within_their_five_minutes(scene: ChainScene,
                                                                  finished: dict[str, InstanceRow]) -> None:
    store = scene.node.orchestrator.store
    for name, row in finished.items():
        assert not row.late, name
        history = store.history(row.id)
        asked = next(e for e in history if e["kind"] == "solicitud_enviada" and e["step"] == "derechos")
        answer = next(e for e in history if e["step"] == "derechos"
                      and e["kind"] in ("respuesta_recibida", "falla"))
        took = (datetime.fromisoformat(answer["at"]) - datetime.fromisoformat(asked["at"])).total_seconds()
        assert took < RIGHTS_TERM / 10, (name, took)
        assert answer.get("tarde", False) is False and not any(e["kind"] == "plazo_vencido" for e in history)
        assert [e["step"] for e in history if e["kind"] == "solicitud_enviada"].count("derechos") == 1


def test_authorisations_are_recorded_by_the_eps_for_the_providing_ips(scene: ChainScene,
                                                                     finished: dict[str, InstanceRow]) -> None:
    fee = next(value for concept, band, value, year in FEES if concept == "CUOTA_MODERADORA" and band == "A"
               and year == today().year)
    assert scene.world.others is not None
    with closing(sqlite3.connect(scene.world.others.eps_db)) as eps:
        for name in ("autorizado", "remision", "fuera_del_plan", "alto_costo"):
            context = finished[name].state["context"]
            case = CASES[name]
            recorded = eps.execute("SELECT estado, num_doc, ips_nit, servicios, tipo_cuota, valor_cuota, motivo "
                                   "FROM autorizaciones WHERE num_autorizacion = ?",
                                   (context["numAutorizacion"],)).fetchall()
            assert len(recorded) == 1, name
            state, number, ips_nit, services, kind, value, reason = recorded[0]
            assert number == case.number and ips_nit == case.at[0].rsplit("/", 1)[1]
            assert state == {"autorizado": "A", "remision": "A", "fuera_del_plan": "N", "alto_costo": "P"}[name]
            if state == "A":
                assert services == ";".join(f"{c}x1" for c in case.cups)
                assert kind == "CUOTA_MODERADORA" and float(value) == context["valorCuota"] == float(fee)
                assert context["serviciosAutorizados"] == list(case.cups)
            else:
                assert reason == context["motivoNegacion"]


def test_summaries_tell_the_ips_what_to_do(finished: dict[str, InstanceRow]) -> None:
    authorised = finished["autorizado"].state["context"]
    assert finished["autorizado"].summary == (
        f"Autorización {authorised['numAutorizacion']} vigente hasta {authorised['fechaVigenciaHasta']}; "
        f"Cuota moderadora: ${authorised['valorCuota']}")
    assert finished["remision"].summary is not None
    assert finished["remision"].summary.startswith(f"Remisión a {OTHER_IPS[1]}: autorización ")
    assert finished["suspendido"].summary == (
        "Sin derechos: el paciente CC 52987654 su afiliación a EPS Sanitas S.A.S. está en estado Suspendido")
    assert finished["retirado"].summary == (
        "Sin derechos: el paciente CC 80234567 no registra afiliación vigente en la fecha de atención")
    assert finished["no_registrado"].summary == (
        f"Sin derechos: el paciente CC {UNKNOWN_PERSON} no está registrado en la BDUA")
    assert finished["otra_eps"].summary == ("El paciente está afiliado a Cooperativa de Salud Comunitaria - "
                                            "Coosalud EPS, que no autoriza por esta cadena")
    assert "862401" in (finished["fuera_del_plan"].summary or "")


def test_no_eps_request_for_a_patient_without_rights(scene: ChainScene, finished: dict[str, InstanceRow]) -> None:
    store = scene.node.orchestrator.store
    for name in ("suspendido", "retirado", "no_registrado", "otra_eps"):
        sent = [e["step"] for e in store.history(finished[name].id) if e["kind"] == "solicitud_enviada"]
        assert sent == ["derechos"], name
