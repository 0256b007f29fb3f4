"""`gel chains simulate`: cases run through the real engine under a virtual clock, with the durations,
answers and faults the definition declares per scenario."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from broker.commands.simulate import simulate_command
from broker.gelxml import SchemaRegistry
from broker.orchestrator.definition import ChainDefinition, definition_from_text
from broker.orchestrator.simulation import (
    SCENARIO_UNKNOWN,
    SIMULATION_INVALID,
    SimulationError,
    SimulationReport,
    read_model,
    readable,
    simulate,
)
from broker.settings import get_settings

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0

CHAIN = """
chain: prueba-simulacion
version: 1
title: Subsidio de prueba
radicado: SIM
inputs: [numDocumento]
steps:
  - id: cruces
    title: Cruces con la Registraduría y el Sisbén
    parallel:
      - - id: identidad
          title: Verificar identidad
          call: {service: verificarIdentidad, version: "1.0", to: CO/GOB/899999040}
          request:
            - {gel: per:identificacion/per:codTipoDocumento, value: CC}
            - {gel: per:identificacion/per:numDocumento, from: numDocumento}
            - {gel: per:nombreCompleto/per:primerNombre, value: MARÍA}
            - {gel: per:nombreCompleto/per:primerApellido, value: GÓMEZ}
          reply:
            - {ctx: estadoDocumento, gel: svc:codEstadoDocumento}
          retry: {attempts: 8, initial: 1m, maximum: 10m}
          simulate:
            actual: {duration: 10d, handoffs: 1}
            nuevo:
              duration: 1m
              fault: {p: 0.25, code: GEL-ADAPTER-LEGACY_UNAVAILABLE, retryable: true}
            replies: [{set: {estadoDocumento: VIGENTE}}]
      - - id: sisben
          title: Consultar el Sisbén
          call: {service: consultarSisben, version: "1.0", to: CO/GOB/899999011}
          request:
            - {gel: per:identificacion/per:codTipoDocumento, value: CC}
            - {gel: per:identificacion/per:numDocumento, from: numDocumento}
          reply:
            - {ctx: codGrupoSisben, gel: svc:codGrupoSisben}
          simulate:
            actual: {duration: 20d..40d}
            nuevo: {duration: 10s..50s}
            replies:
              - {p: 0.7, set: {codGrupoSisben: A1}}
              - {p: 0.3, set: {codGrupoSisben: D5}}
  - id: decidir
    choice: [{if: 'codGrupoSisben in ["A1", "A2", "B1"]', next: visita}]
    otherwise: no_elegible
  - id: visita
    task: {title: Visita técnica, entity: CO/GOB/830121208, fields: [resultadoVisita]}
    simulate:
      actual: {duration: 15d, handoffs: 2}
      nuevo: {duration: 2d}
      replies: [{set: {resultadoVisita: aprobada}}]
  - {id: asignado, end: asignado}
  - {id: no_elegible, end: no_elegible}
simulation:
  scenarios:
    actual: {description: Papeles entre oficinas, handoff: 5d}
    nuevo: {description: Ventanilla única}
  inputs: {numDocumento: "1020304050"}
  figures:
    - {label: Asignación del subsidio, outcome: asignado, actual: "4,2 meses", nuevo: "1,2 meses"}
    - {label: Aviso de no elegibilidad, outcome: no_elegible, actual: 3 meses, nuevo: inmediato}
    - {label: Visita técnica, step: visita, actual: 25 días, nuevo: 2 días}
"""

EVENT_CHAIN = """
chain: prueba-pago
version: 1
title: Pago y espera
steps:
  - id: pago
    event: {service: registrarPago, version: "1.0", from: CO/PRIV/830006404}
    capture: [{ctx: valorPagado, gel: fin:valorPesos, as: number}]
    simulate:
      actual: {duration: 10d}
      nuevo: {duration: 1h}
      replies:
        - {p: 0.5, set: {valorPagado: 1000}}
        - {p: 0.5, set: {valorPagado: 10}}
  - {id: esperar, wait: 1d}
  - id: revisar
    choice: [{if: "valorPagado >= 1000", next: pagado}]
    otherwise: incompleto
  - {id: pagado, end: pagado}
  - {id: incompleto, end: incompleto}
simulation:
  scenarios: {actual: {}, nuevo: {}}
"""


def chain(text: str = CHAIN, **replacements: str) -> ChainDefinition:
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    return definition_from_text(text, source="prueba.yaml")


@pytest.fixture(scope="module")
def nuevo(registry: SchemaRegistry) -> SimulationReport:
    return simulate(chain(), cases=500, scenario="nuevo", registry=registry)


@pytest.fixture(scope="module")
def actual(registry: SchemaRegistry) -> SimulationReport:
    return simulate(chain(), cases=200, scenario="actual", registry=registry)


def test_outcomes_split_by_the_declared_probabilities(nuevo: SimulationReport) -> None:
    assert nuevo.unfinished == 0
    assert {o.outcome for o in nuevo.outcomes} == {"asignado", "no_elegible"}
    assert nuevo.share("asignado") == pytest.approx(0.7, abs=0.06)
    assert sum(o.count for o in nuevo.outcomes) == 500


def test_the_new_window_takes_the_declared_times(nuevo: SimulationReport) -> None:
    assigned, rejected = nuevo.outcome("asignado"), nuevo.outcome("no_elegible")
    assert assigned is not None and rejected is not None
    assert assigned.cycle.p50 > 2 * DAY and assigned.cycle.max < 2 * DAY + HOUR
    assert rejected.cycle.max < HOUR
    visit, sisben = nuevo.step("visita"), nuevo.step("sisben")
    assert visit is not None and visit.waits.mean == pytest.approx(2 * DAY)
    assert sisben is not None and 10 <= sisben.waits.p50 <= 50


def test_the_current_situation_is_longer_by_the_declared_steps_and_handoffs(
        actual: SimulationReport, nuevo: SimulationReport) -> None:
    assigned, rejected = actual.outcome("asignado"), actual.outcome("no_elegible")
    assert assigned is not None and rejected is not None
    # Sisbén (20–40 días) outlasts identity (10 días + one 5-day hand-off); the visit is 15 días + 2 hand-offs.
    assert assigned.cycle.p50 >= 45 * DAY and assigned.cycle.max <= 65 * DAY
    assert assigned.cycle.mean == pytest.approx(55 * DAY, abs=2.5 * DAY)
    assert rejected.cycle.mean == pytest.approx(30 * DAY, abs=3 * DAY)
    new_assigned = nuevo.outcome("asignado")
    assert new_assigned is not None
    assert assigned.cycle.mean - new_assigned.cycle.mean == pytest.approx(53 * DAY, abs=2.5 * DAY)
    identity, visit = actual.step("identidad"), actual.step("visita")
    assert identity is not None and identity.waits.mean == pytest.approx(15 * DAY)
    assert visit is not None and visit.waits.mean == pytest.approx(25 * DAY)
    assert actual.share("asignado") == pytest.approx(0.7, abs=0.1)


def test_figures_are_measured_beside_the_programs(actual: SimulationReport, nuevo: SimulationReport) -> None:
    assignment, notice, visit = nuevo.figures
    assert assignment.published == {"actual": "4,2 meses", "nuevo": "1,2 meses"}
    assert nuevo.measured(assignment) == nuevo.outcome("asignado").cycle  # type: ignore[union-attr]
    assert notice.published["nuevo"] == "inmediato"
    measured = actual.measured(visit)
    assert measured is not None and measured.mean == pytest.approx(25 * DAY)
    figures = nuevo.to_dict()["cifras"]
    assert figures[0]["programa"] == "1,2 meses" and figures[0]["simulado"]["p50"].endswith("días")


def test_a_retryable_simulated_fault_is_retried_and_the_case_still_finishes(nuevo: SimulationReport) -> None:
    assert 120 <= nuevo.faults_injected <= 215
    assert nuevo.retries == nuevo.faults_injected
    assert not nuevo.failures and nuevo.outcome("fallida") is None
    assert nuevo.sent == 2 * 500 + nuevo.retries


def test_retries_follow_the_engines_policy_until_they_run_out(registry: SchemaRegistry) -> None:
    definition = chain(**{"{p: 0.25, code": "{p: 1, code", "attempts: 8": "attempts: 3"})
    report = simulate(definition, cases=10, scenario="nuevo", registry=registry)
    assert report.failures == {"GEL-ADAPTER-LEGACY_UNAVAILABLE": 10}
    assert report.retries == 20 and report.faults_injected == 30
    failed = report.outcome("fallida")
    assert failed is not None and failed.status == "fallida"
    assert failed.cycle.max == pytest.approx(3 * MINUTE + 1 * MINUTE + 2 * MINUTE)


def test_the_same_seed_gives_the_same_report(registry: SchemaRegistry) -> None:
    def run(seed: int) -> dict[str, object]:
        data = simulate(chain(), cases=40, scenario="nuevo", seed=seed, registry=registry).to_dict()
        data.pop("duracion_s")
        return data
    first = run(7)
    assert run(7) == first
    assert run(8) != first


def test_events_arrive_with_their_values_and_waits_use_the_engines_timers(registry: SchemaRegistry) -> None:
    definition = definition_from_text(EVENT_CHAIN)
    new = simulate(definition, cases=250, scenario="nuevo", registry=registry)
    old = simulate(definition, cases=20, scenario="actual", registry=registry)
    assert new.unfinished == 0, "every case's wait falls due at the same moment, more than one batch of timers"
    assert {o.outcome for o in new.outcomes} == {"pagado", "incompleto"}
    assert new.share("pagado") == pytest.approx(0.5, abs=0.15)
    assert new.cycle.p50 == new.cycle.max == pytest.approx(HOUR + DAY)
    assert old.cycle.max == pytest.approx(11 * DAY)
    assert new.step("esperar").waits.mean == pytest.approx(DAY)  # type: ignore[union-attr]


@pytest.mark.parametrize(("replacements", "expected"), [
    ({"- {p: 0.3, set: {codGrupoSisben: D5}}": "- {p: 0.2, set: {codGrupoSisben: D5}}"}, ["paso sisben", "suman 0.9"]),
    ({"resultadoVisita: aprobada": "otroCampo: x"}, ["paso visita", "'otroCampo'"]),
    ({"nuevo: {duration: 10s..50s}": "nuvo: {duration: 10s..50s}"}, ["paso sisben", "'nuvo'"]),
    ({"description: Papeles entre oficinas, handoff: 5d": "description: Papeles"}, ["paso identidad", "handoff"]),
    ({"duration: 20d..40d": "duration: 40d..20d"}, ["paso sisben", "termina antes"]),
    ({"duration: 1m\n": "duration: pronto\n"}, ["paso identidad", "pronto"]),
    ({'inputs: {numDocumento: "1020304050"}': "inputs: {}"}, ["numDocumento"]),
    ({"outcome: asignado,": "outcome: aprobado,"}, ["'aprobado'"]),
    ({"{p: 0.25, code": "{p: 2, code"}, ["paso identidad", "entre 0 y 1"]),
])
def test_a_malformed_simulation_is_refused_in_spanish_naming_the_step(replacements: dict[str, str],
                                                                      expected: list[str]) -> None:
    with pytest.raises(SimulationError) as caught:
        read_model(chain(**replacements))
    assert caught.value.code == SIMULATION_INVALID
    assert all(part in str(caught.value) for part in expected), str(caught.value)


def test_an_unknown_scenario_is_refused(registry: SchemaRegistry) -> None:
    with pytest.raises(SimulationError) as caught:
        simulate(chain(), cases=1, scenario="futuro", registry=registry)
    assert caught.value.code == SCENARIO_UNKNOWN and "actual, nuevo" in str(caught.value)


def test_durations_read_in_their_most_readable_unit() -> None:
    assert readable(0) == "inmediato"
    assert readable(42) == "42 segundos"
    assert readable(90) == "1,5 minutos"
    assert readable(HOUR) == "1 hora"
    assert readable(20 * DAY) == "20 días"
    assert readable(4.2 * 30 * DAY) == "4,2 meses"


@pytest.fixture
def chains_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "prueba.yaml").write_text(CHAIN, encoding="utf-8")
    monkeypatch.setenv("GEL_CHAINS_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("simulate")(simulate_command)
    app.command("other")(lambda: None)
    return app


def test_the_command_prints_both_scenarios_beside_the_programs_figures(chains_dir: Path) -> None:
    result = CliRunner().invoke(cli(), ["simulate", "prueba-simulacion", "-n", "20", "--scenario", "ambos"])
    assert result.exit_code == 0, result.output
    for text in ("Tiempo de ciclo por resultado", "Frente a las cifras del programa", "Actual", "Nuevo",
                 "asignado", "Verificar identidad"):
        assert text in result.output


def test_the_command_gives_json(chains_dir: Path) -> None:
    result = CliRunner().invoke(cli(), ["simulate", "prueba-simulacion", "-n", "10", "-e", "ambos", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [s["escenario"] for s in data["escenarios"]] == ["actual", "nuevo"]
    assert data["escenarios"][1]["cifras"][0]["programa"] == "1,2 meses"


@pytest.mark.parametrize(("arguments", "code"), [
    (["simulate", "no-existe"], "GEL-CHAIN-UNKNOWN"),
    (["simulate", "prueba-simulacion", "--scenario", "futuro"], SCENARIO_UNKNOWN),
])
def test_the_command_refuses_an_unknown_chain_or_scenario(chains_dir: Path, arguments: list[str], code: str) -> None:
    result = CliRunner().invoke(cli(), arguments)
    assert result.exit_code == 2
    assert code in result.output


def test_the_shipped_chains_simulate_against_the_programs_figures(registry: SchemaRegistry) -> None:
    from broker.orchestrator.definition import load_definition

    chains = get_settings().chains_dir
    housing = load_definition(chains / "vivienda-postulacion.yaml")
    today, window = (simulate(housing, cases=60, scenario=s, registry=registry) for s in ("actual", "nuevo"))
    for report in (today, window):
        assert report.unfinished == 0 and not report.failures
    assigned_today, assigned_window = today.outcome("asignado"), window.outcome("asignado")
    refused_window = window.outcome("no_elegible")
    assert assigned_today is not None and assigned_window is not None and refused_window is not None
    assert assigned_window.cycle.p50 < assigned_today.cycle.p50 / 2
    assert refused_window.cycle.p50 < DAY  # a failed cross-check; failing the scoring takes its 10–20 days
    health = load_definition(chains / "salud-autorizacion.yaml")
    # Without the platform there are no platform timeouts: the old phone-and-fax times finish, slowly.
    old = simulate(health, cases=60, scenario="actual", registry=registry)
    new = simulate(health, cases=60, scenario="nuevo", registry=registry)
    assert old.failures == {} and new.failures == {}
    rights_new, rights_old = new.step("derechos"), old.step("derechos")
    assert rights_new is not None and rights_old is not None
    assert rights_new.waits.max < 5 * 60 < rights_old.waits.p50
    authorisation = new.step("autorizar")
    assert authorisation is not None and authorisation.waits.max < 2 * HOUR
