"""`lint_definition`: a clean chain has no findings, and each rule fires exactly where it should."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from broker.catalog import Catalog, ServiceStatus, load_catalog
from broker.gelxml import SchemaRegistry
from broker.orchestrator.definition import definition_from_text
from broker.orchestrator.lint import Finding, LintCode, Severity, lint_definition, lint_file
from tests.conftest import ROOT

CATALOG = load_catalog(ROOT / "deploy" / "catalog.yaml")
CHAINS = sorted((ROOT / "chains").glob("*.yaml"))

Check = Callable[..., list[Finding]]

HEAD = """\
chain: prueba
version: 1
title: Cadena de prueba
inputs: [tipoDocumento, numDocumento, primerNombre, primerApellido]
"""

IDENTIDAD = """\
  - id: identidad
    call: {service: verificarIdentidad, version: "1.0", to: CO/GOB/899999040}
    request:
      - {gel: per:identificacion/per:codTipoDocumento, from: tipoDocumento}
      - {gel: per:identificacion/per:numDocumento, from: numDocumento}
      - {gel: per:nombreCompleto/per:primerNombre, from: primerNombre}
      - {gel: per:nombreCompleto/per:primerApellido, from: primerApellido}
    reply:
      - {ctx: estadoDocumento, gel: svc:codEstadoDocumento}
      - {ctx: coincide, gel: svc:coincidenciaNombre, as: boolean}
"""

SISBEN = """\
  - id: sisben
    call: {service: consultarSisben, version: "1.0", to: CO/GOB/899999011}
    retry: {attempts: 3}
    request:
      - {gel: per:identificacion/per:codTipoDocumento, from: tipoDocumento}
      - {gel: per:identificacion/per:numDocumento, from: numDocumento}
    reply:
      - {ctx: grupo, gel: svc:codGrupoSisben}
      - {ctx: encontrado, gel: svc:encontrado, as: boolean}
"""

CLEAN = HEAD + "steps:\n" + IDENTIDAD + """\
  - id: decidir
    choice: [{if: "estadoDocumento == 'VIGENTE' and coincide", next: sisben}]
    otherwise: rechazada
""" + SISBEN + """\
  - id: clasificar
    choice: [{if: "encontrado and grupo in ['A1', 'A2', 'B1']", next: aprobada}]
    otherwise: rechazada
  - {id: aprobada, end: aprobada, summary: "Radicado {radicado}: grupo {grupo}"}
  - {id: rechazada, end: rechazada, status: fallida, summary: "Documento {estadoDocumento}"}
"""


def chain(steps: str, head: str = HEAD) -> str:
    return head + "steps:\n" + textwrap.indent(textwrap.dedent(steps), "  ")


def codes(findings: list[Finding]) -> set[LintCode]:
    return {f.code for f in findings}


def only(findings: list[Finding], code: LintCode) -> Finding:
    matching = [f for f in findings if f.code == code]
    assert len(matching) == 1, [f.format() for f in findings]
    return matching[0]


def catalog_with(code: str, **changes: object) -> Catalog:
    entries = dict(CATALOG.entries)
    entries[(code, "1.0")] = replace(entries[(code, "1.0")], **changes)  # type: ignore[arg-type]
    return Catalog(entries=entries)


@pytest.fixture
def check(registry: SchemaRegistry) -> Check:
    def run(text: str, catalog: Catalog | None = CATALOG) -> list[Finding]:
        return lint_definition(definition_from_text(text, source="prueba.yaml"), registry=registry, catalog=catalog)
    return run


def test_every_code_is_a_stable_chain_lint_code() -> None:
    assert all(code.value == f"GEL-CHAIN-LINT-{code.name}" for code in LintCode)


def test_a_clean_definition_has_no_findings(check: Check) -> None:
    assert check(CLEAN) == []
    assert check(CLEAN, catalog=None) == []


# -- services ---------------------------------------------------------------------------------------------


def test_an_unknown_service_is_named_with_a_suggestion(check: Check) -> None:
    found = only(check(CLEAN.replace("service: consultarSisben", "service: consultarSisbem")),
                 LintCode.UNKNOWN_SERVICE)
    assert found.step == "sisben" and found.severity == Severity.ERROR and "consultarSisben" in found.message


def test_an_unknown_version_lists_the_published_ones(check: Check) -> None:
    findings = check(CLEAN.replace('consultarSisben, version: "1.0"', 'consultarSisben, version: "2.0"'))
    found = only(findings, LintCode.UNKNOWN_VERSION)
    assert "2.0" in found.message and "1.0" in found.message
    assert codes(findings) == {LintCode.UNKNOWN_VERSION}


def test_a_version_missing_from_the_catalog(check: Check) -> None:
    catalog = Catalog(entries={k: v for k, v in CATALOG.entries.items() if k[0] != "consultarSisben"})
    assert only(check(CLEAN, catalog), LintCode.NOT_IN_CATALOG).step == "sisben"


def test_a_retired_version_is_an_error_and_a_deprecated_one_a_warning(check: Check) -> None:
    retired = only(check(CLEAN, catalog_with("consultarSisben", status=ServiceStatus.RETIRED)), LintCode.RETIRED)
    assert retired.severity == Severity.ERROR and retired.step == "sisben"
    deprecated = check(CLEAN, catalog_with("consultarSisben", status=ServiceStatus.DEPRECATED))
    assert only(deprecated, LintCode.DEPRECATED).severity == Severity.WARNING


def test_a_call_the_orchestrator_may_not_make(check: Check) -> None:
    text = chain("""\
        - {id: derechos, call: {service: radicarSolicitudLicencia, version: "1.0", to: CO/PLAT/900000002}}
        - {id: fin, end: listo}
        """)
    assert only(check(text), LintCode.NOT_AUTHORISED).step == "derechos"
    assert check(text, catalog=None) == []


def test_a_call_to_an_entity_that_does_not_provide_the_service(check: Check) -> None:
    findings = check(CLEAN.replace("to: CO/GOB/899999011", "to: CO/GOB/899999040"))
    found = only(findings, LintCode.WRONG_PROVIDER)
    assert found.step == "sisben" and "CO/GOB/899999011" in found.message


def test_an_expression_to_is_checked_for_its_fields_not_its_provider(check: Check) -> None:
    undefined = check(CLEAN.replace("to: CO/GOB/899999011", "to: entidadSisben"))
    assert only(undefined, LintCode.UNDEFINED_FIELD).message.startswith("call.to usa el campo 'entidadSisben'")
    assert LintCode.WRONG_PROVIDER not in codes(undefined)
    defined = CLEAN.replace("to: CO/GOB/899999011", "to: entidadSisben").replace(
        "primerApellido]", "primerApellido, entidadSisben]")
    assert check(defined) == []
    assert only(check(CLEAN.replace("to: CO/GOB/899999011", "to: 'entidad +'")), LintCode.BAD_EXPRESSION)


def test_the_start_service_must_be_provided_by_the_orchestrator(check: Check) -> None:
    start = """\
start:
  service: {service}
  version: "1.0"
  capture:
    - {{ctx: numDocumento, gel: "svc:hogar/svc:jefeHogar/per:persona/per:identificacion/per:numDocumento"}}
  reply:
    - {{gel: svc:radicado, from: radicado}}
    - {{gel: svc:fechaHoraRadicacion, from: fechaHoraRadicacion}}
"""
    good = CLEAN.replace("steps:\n", start.format(service="radicarPostulacion") + "steps:\n")
    assert check(good) == []
    other = good.replace("service: radicarPostulacion", "service: radicarSolicitudLicencia")
    findings = check(other)
    assert LintCode.NOT_AUTHORISED not in codes(findings)
    assert only(findings, LintCode.BAD_CAPTURE).step is None
    bad = good.replace("service: radicarPostulacion", "service: verificarIdentidad")
    found = [f for f in check(bad) if f.code == LintCode.NOT_AUTHORISED]
    assert len(found) == 1 and found[0].step is None and "providers" in found[0].message


EVENT = """\
- id: asignacion
  event: {service: asignarSubsidio, version: "1.0", from: CO/GOB/830121208}
  capture:
    - {ctx: asignado, gel: svc:asignado, as: boolean}
    - {ctx: numActo, gel: ent:actoAdministrativo/doc:numActo}
- {id: decidir, choice: [{if: asignado, next: fin}], otherwise: negado}
- {id: fin, end: asignado, summary: "Acto {numActo}"}
- {id: negado, end: negado}
"""


def test_events_need_the_orchestrator_among_the_subscribers(check: Check) -> None:
    text = chain(EVENT.replace("ent:actoAdministrativo", "doc:actoAdministrativo"))
    subscribed = catalog_with("asignarSubsidio", subscribers=frozenset({"CO/PLAT/900000002"}))
    assert check(text, subscribed) == []
    assert only(check(text), LintCode.NOT_AUTHORISED).step == "asignacion"
    wrong = check(text.replace("from: CO/GOB/830121208", "from: CO/GOB/899999040"), subscribed)
    assert only(wrong, LintCode.WRONG_PROVIDER).step == "asignacion"


def test_event_captures_are_resolved_from_the_event_root(check: Check) -> None:
    found = only(check(chain(EVENT), catalog=None), LintCode.BAD_CAPTURE)
    assert "ent:actoAdministrativo" in found.message and "eventoAsignarSubsidio" in found.message


def test_an_event_step_on_a_service_without_events(check: Check) -> None:
    text = chain("""\
        - {id: pago, event: {service: registrarPago, version: "1.0", from: CO/PRIV/830006404}}
        - {id: fin, end: pagado}
        """)
    assert only(check(text, catalog=None), LintCode.NOT_AN_EVENT).step == "pago"


# -- payload paths --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "words"), [
    ("per:identificacion/per:numDocumento, from: numDocumento}\n      - {gel: per:nombre",
     "per:identificacion/per:numeroDocumento, from: numDocumento}\n      - {gel: per:nombre",
     ["per:numeroDocumento", "per:numDocumento"]),
    ("{gel: per:nombreCompleto/per:primerNombre", "{gel: nombreCompleto/per:primerNombre", ["prefijo"]),
    ("{gel: per:nombreCompleto/per:primerApellido, from: primerApellido}",
     "{gel: per:nombreCompleto, from: primerApellido}", ["compuesto"]),
], ids=["missing-element", "no-prefix", "composite"])
def test_request_paths_must_exist_in_the_request_schema(check: Check, old: str, new: str,
                                                          words: list[str]) -> None:
    assert old in CLEAN
    found = only(check(CLEAN.replace(old, new, 1)), LintCode.BAD_REQUEST_PATH)
    assert found.step == "identidad" and all(w in found.message for w in words), found.message


def test_each_copies_whole_elements(check: Check) -> None:
    text = chain("""\
        - id: persona
          call: {service: verificarIdentidad, version: "1.0", to: CO/GOB/899999040}
          request:
            - {gel: per:identificacion, each: documentos}
          reply:
            - {ctx: documentos, gel: per:identificacion, as: xml_list}
        - {id: fin, end: listo}
        """)
    assert check(text) == []


@pytest.mark.parametrize(("old", "new"), [
    ("gel: svc:codEstadoDocumento}", "gel: svc:estadoDocumento}"),
    ("gel: svc:codGrupoSisben}", "gel: svc:codGrupoSisben/svc:codigo}"),
    ("gel: svc:encontrado, as: boolean}", "gel: per:identificacion, as: boolean}"),
], ids=["missing-element", "below-a-leaf", "composite-as-text"])
def test_captures_must_exist_in_the_reply_schema(check: Check, old: str, new: str) -> None:
    found = only(check(CLEAN.replace(old, new)), LintCode.BAD_CAPTURE)
    assert found.severity == Severity.ERROR and new.split(",")[0].removeprefix("gel: ").rstrip("}") in found.message


def test_a_composite_element_may_be_captured_whole(check: Check) -> None:
    text = CLEAN.replace("gel: svc:encontrado, as: boolean}", "gel: svc:encontrado, as: boolean}\n"
                         "      - {ctx: documento, gel: per:identificacion, as: xml}")
    assert check(text) == []


# -- flow -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "key"), [
    ("next: sisben}", "next: sisbem}", "choice"),
    ("otherwise: rechazada\n", "otherwise: rechazo\n", "otherwise"),
    ("retry: {attempts: 3}", "retry: {attempts: 3}\n    on_fault: avisar", "on_fault"),
    ("retry: {attempts: 3}", "retry: {attempts: 3}\n    deadline: {within: 2h, then: escalar}", "deadline.then"),
    ("retry: {attempts: 3}", "retry: {attempts: 3}\n    next: clasificr", "next"),
], ids=["choice", "otherwise", "on_fault", "deadline", "next"])
def test_every_jump_must_name_a_step(check: Check, old: str, new: str, key: str) -> None:
    found = only(check(CLEAN.replace(old, new, 1)), LintCode.UNKNOWN_STEP)
    assert found.message.startswith(f"{key}:")


PARALLEL = """\
- id: cruces
  parallel:
    - - id: identidad
        call: {service: verificarIdentidad, version: "1.0", to: CO/GOB/899999040}
        request:
          - {gel: per:identificacion/per:numDocumento, from: numDocumento}
        reply: [{ctx: estadoDocumento, gel: svc:codEstadoDocumento}]
      - {id: vigente, choice: [{if: "estadoDocumento == 'VIGENTE'", next: BRANCH_TARGET}], otherwise: OUT_TARGET}
    - - id: sisben
        call: {service: consultarSisben, version: "1.0", to: CO/GOB/899999011}
        request:
          - {gel: per:identificacion/per:numDocumento, from: numDocumento}
        reply: [{ctx: grupo, gel: svc:codGrupoSisben}]
      - {id: anotar, set: {revisado: "True"}}
- {id: fin, end: completa, summary: "{grupo}"}
- {id: negado, end: negado, status: fallida}
"""


def parallel(branch_target: str = "fin", out_target: str = "negado") -> str:
    return chain(PARALLEL.replace("BRANCH_TARGET", branch_target).replace("OUT_TARGET", out_target))


def test_jumps_out_of_a_branch_to_an_enclosing_list_are_fine(check: Check) -> None:
    assert check(parallel()) == []


def test_a_jump_into_another_branch_is_refused(check: Check) -> None:
    found = only(check(parallel(branch_target="anotar")), LintCode.BAD_JUMP)
    assert found.step == "vigente" and "'anotar'" in found.message


def test_a_jump_from_outside_into_a_branch_is_refused(check: Check) -> None:
    text = parallel().replace("- {id: negado, end: negado, status: fallida}",
                              "- {id: negado, set: {motivo: \"'x'\"}, next: anotar}")
    assert only(check(text), LintCode.BAD_JUMP).step == "negado"


def test_duplicate_ids(check: Check) -> None:
    text = parallel().replace("id: anotar", "id: identidad")
    assert only(check(text), LintCode.DUPLICATE_ID).step == "identidad"


def test_unreachable_steps_and_not_their_branches(check: Check) -> None:
    text = CLEAN + """\
  - {id: huerfano, set: {x: "1"}, next: aprobada}
  - id: olvidado
    parallel:
      - [{id: a, wait: 1d}]
      - [{id: b, wait: 1d}]
"""
    unreachable = [f.step for f in check(text) if f.code == LintCode.UNREACHABLE]
    assert unreachable == ["huerfano", "olvidado"]


def test_a_choice_with_next_warns_that_next_is_ignored(check: Check) -> None:
    text = CLEAN.replace("    otherwise: rechazada\n", "    otherwise: rechazada\n    next: sisben\n", 1)
    found = only(check(text), LintCode.IGNORED_NEXT)
    assert found.step == "decidir" and found.severity == Severity.WARNING


def test_a_main_list_that_can_run_out_warns(check: Check) -> None:
    text = chain(IDENTIDAD.replace("  - id", "- id").replace("\n    ", "\n  "))
    found = only(check(text), LintCode.NO_END)
    assert found.severity == Severity.WARNING and found.step == "identidad"
    last_parallel = chain("""\
        - id: cruces
          parallel:
            - [{id: a, wait: 1d}]
            - [{id: b, wait: 1d}]
        """)
    assert only(check(last_parallel), LintCode.NO_END).step == "cruces"


def test_running_out_inside_a_branch_then_ending_is_fine(check: Check) -> None:
    assert LintCode.NO_END not in codes(check(parallel()))


# -- compensation ---------------------------------------------------------------------------------------------

MOVILIZAR = """\
- id: movilizar
  call: {service: movilizarSubsidio, version: "1.0", to: CO/FID/860525148}
COMPENSATE"""
COMPENSATE = """\
  compensate:
    call: {service: notificarCiudadano, version: "1.0", to: CO/PLAT/900000003}
"""


def movilizar(after: str, *, compensate: bool = False) -> str:
    return chain(MOVILIZAR.replace("COMPENSATE", COMPENSATE if compensate else "") + textwrap.dedent(after))


SISBEN_THEN_END = SISBEN.replace("  - id", "- id").replace("\n    ", "\n  ") + "- {id: fin, end: listo}\n"


def test_an_effect_followed_by_a_call_that_can_fail_wants_a_compensation(check: Check) -> None:
    found = only(check(movilizar(SISBEN_THEN_END)), LintCode.MISSING_COMPENSATION)
    assert found.step == "movilizar" and found.severity == Severity.WARNING and "'sisben'" in found.message
    assert check(movilizar(SISBEN_THEN_END, compensate=True)) == []


def test_a_failing_end_later_also_wants_a_compensation(check: Check) -> None:
    after = """\
        - {id: decidir, choice: [{if: "falla_codigo", next: mal}], otherwise: bien}
        - {id: bien, end: bien}
        - {id: mal, end: mal, status: fallida}
        """
    assert only(check(movilizar(after)), LintCode.MISSING_COMPENSATION).step == "movilizar"


def test_no_compensation_needed_when_nothing_later_can_fail(check: Check) -> None:
    assert check(movilizar("- {id: fin, end: listo}\n")) == []
    handled = SISBEN_THEN_END.replace("retry: {attempts: 3}", "retry: {attempts: 3}\n  on_fault: fin")
    assert check(movilizar(handled)) == []


def test_queries_have_no_effects_to_compensate(check: Check) -> None:
    assert LintCode.MISSING_COMPENSATION not in codes(check(CLEAN))


# -- fields ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "name"), [
    ("estadoDocumento == 'VIGENTE' and coincide", "estadoDocumento == 'VIGENTE' and coincidencia", "coincidencia"),
    ("from: tipoDocumento}", "from: tipoDoc}", "tipoDoc"),
    ("from: numDocumento}\n    reply:\n      - {ctx: grupo", "from: str(cedula)}\n    reply:\n      - {ctx: grupo",
     "cedula"),
], ids=["condition", "request-from", "request-expression"])
def test_undefined_fields(check: Check, old: str, new: str, name: str) -> None:
    assert old in CLEAN
    found = only(check(CLEAN.replace(old, new, 1)), LintCode.UNDEFINED_FIELD)
    assert f"'{name}'" in found.message and found.severity == Severity.ERROR


def test_each_and_set_read_fields_too(check: Check) -> None:
    text = chain("""\
        - {id: calcular, set: {total: "base * 2"}}
        - id: persona
          call: {service: verificarIdentidad, version: "1.0", to: CO/GOB/899999040}
          request: [{gel: per:identificacion, each: documentos}]
        - {id: fin, end: listo, summary: "Total {total}"}
        """)
    assert {(f.step, f.message.split("'")[1]) for f in check(text)} == {("calcular", "base"), ("persona", "documentos")}


def test_an_unknown_summary_placeholder_is_a_warning(check: Check) -> None:
    found = only(check(CLEAN.replace("grupo {grupo}", "grupo {grupoSisben:>3}")), LintCode.UNDEFINED_FIELD)
    assert found.severity == Severity.WARNING and found.step == "aprobada" and "grupo" in found.message


def test_every_kind_of_definition_counts(check: Check) -> None:
    text = chain("""\
        - {id: visita, task: {title: Visita, entity: CO/GOB/900467239, fields: [resultadoVisita]}}
        - {id: calcular, set: {puntaje: "len(resultadoVisita) + 1"}}
        - id: pago
          event: {service: asignarSubsidio, version: "1.0", from: CO/GOB/830121208}
          capture: [{ctx: asignado, gel: svc:asignado, as: boolean}]
        - id: decidir
          choice: [{if: "puntaje > 1 and asignado and radicado and falla_paso != 'x' and entrada", next: fin}]
          otherwise: fin
        - {id: fin, end: listo}
        """, head=HEAD.replace("inputs: [", "inputs: [entrada, "))
    assert codes(check(text, catalog=None)) == set()


# -- files ----------------------------------------------------------------------------------------------------


def test_a_file_that_does_not_load_is_one_finding(tmp_path: Path, registry: SchemaRegistry) -> None:
    path = tmp_path / "rota.yaml"
    path.write_text(HEAD + "steps:\n  - {id: a, wait: nunca}\n", encoding="utf-8")
    [found] = lint_file(path, registry=registry, catalog=CATALOG)
    assert found.code == LintCode.INVALID and found.step is None and "rota.yaml" in found.message
    [missing] = lint_file(tmp_path / "no-existe.yaml", registry=registry)
    assert missing.code == LintCode.INVALID


def test_a_clean_file_lints_clean(tmp_path: Path, registry: SchemaRegistry) -> None:
    path = tmp_path / "buena.yaml"
    path.write_text(CLEAN, encoding="utf-8")
    assert lint_file(path, registry=registry, catalog=CATALOG) == []


@pytest.mark.parametrize("path", CHAINS, ids=lambda p: p.name)
def test_every_shipped_chain_has_no_errors(path: Path, registry: SchemaRegistry) -> None:
    errors = [f.format() for f in lint_file(path, registry=registry, catalog=CATALOG) if f.severity == Severity.ERROR]
    assert errors == []
