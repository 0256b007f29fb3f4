"""Fonvivienda's handlers: the services whose answer is a list, a computation or a state change.

**consultarSubsidiosPrevios**: for each household member (request order), every subsidy the consolidated
information system records for them, whoever granted it (Fonvivienda or a caja), whatever its state today.

**calificarPostulacion**: a deterministic score from 0 to 1000 over the request's variables and the
parameters Fonvivienda keeps per year in SFV_PARAMETROS (the SMMLV, salario mínimo mensual legal vigente, and
the income cap in SMMLV, TOPE_INGRESOS_SMMLV), taken from the latest year on record up to the current one:

    ingresos      350 × max(0, 1 − ingresos / (TOPE_INGRESOS_SMMLV × SMMLV))    (0–350: lower income, more points)
    sisbén        max(0, base − 5 × (subgrupo − 1)), base A 250, B 200, C 130, D 0;   0 if not surveyed
    miembros      30 × min(integrantes, 5)                                         (30–150)
    ahorro        150 × min(1, ahorro previo / (10 × SMMLV))                        (0–150)
    discapacidad  50 if a member has a certified disability
    víctima       50 if the household is in the Registro Único de Víctimas

    puntaje = the sum, rounded half-up to two decimals (at most 350 + 250 + 150 + 150 + 50 + 50 = 1000).

Requirements (each unmet one is a causalRechazo, and then cumpleRequisitos is false; the score is still
given): the household's monthly income may not exceed TOPE_INGRESOS_SMMLV × SMMLV (INGRESOS_SUPERIORES), and
Sisbén group D is not eligible (SISBEN_NO_ELEGIBLE).

**asignarSubsidio**: the decision is written to SFV_ASIGNACIONES in one statement (assigned when the score
reaches the call's minimum, the value is within its cap and the pool still has a place and the money;
denied otherwise, with the reason in MOTIVO) and answered from the stored row. The radicado is the key: a
repeated request (a redelivery, or the orchestrator asking again) finds the first decision and changes
nothing, so a subsidy is never assigned twice nor charged twice to its pool. An application Fonvivienda has
not seen (radicated by the housing window, VUV-…) is registered first in SFV_POSTULACIONES when the request
carries its call, department, modality and head of household; without them it is not found.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from lxml import etree

from adapters.fonvivienda import legacy
from adapters.sdk.connectors import LegacyGarbage, LegacyNotFound
from adapters.sdk.mapping import COLOMBIA
from adapters.sdk.package import per_person
from adapters.sdk.runtime import HandlerContext, Incoming
from broker.gelxml.namespaces import DOCUMENTO, FINANCIERO, qname

__all__ = [
    "asignar_subsidio",
    "calificar_postulacion",
    "consultar_subsidios_previos",
    "evento_asignacion",
    "puntaje",
]

_PERSON = legacy.mapping("consultarSubsidiosPrevios.yaml")
_SUBSIDY = legacy.mapping("subsidioPrevio.yaml")
_SCORING = legacy.mapping("calificarPostulacion.yaml")
_ASSIGNMENT = legacy.mapping("asignarSubsidio.yaml")
_MODALITIES = next(rule.codes for rule in legacy.mapping("consultarDisponibilidadRecursos.yaml").solicitud.rules
                   if rule.legacy == "COD_MODALIDAD" and rule.codes is not None)
PLATFORM = "CO/PLAT/900000001"
"""The gateway's entity: an event addressed to it is fanned out to the catalog's subscribers."""

_SISBEN_BASE = {"A": 250, "B": 200, "C": 130, "D": 0}
_CENT = Decimal("0.01")


def _today() -> datetime:
    return datetime.now(COLOMBIA)


# consultarSubsidiosPrevios


def consultar_subsidios_previos(request: Incoming) -> etree._Element:
    assert request.payload is not None
    connector = legacy.connector()
    answer: etree._Element | None = None
    for asked in per_person(request.payload):
        params = _PERSON.solicitud.to_legacy(asked)
        person = _PERSON.respuesta.to_gel(params, validate=False)
        entry = person[0]  # svc:subsidiosPersona
        for subsidy in connector.call("subsidios_de_persona", params):
            entry.append(_SUBSIDY.respuesta.to_gel(subsidy, validate=False)[0][0])  # its svc:subsidioPrevio
        if answer is None:
            answer = person
        else:
            answer.append(entry)
    assert answer is not None, "the schema asks for at least one per:identificacion"
    return legacy.checked(answer)


# calificarPostulacion


def _flag(value: object) -> bool:
    return str(value).strip() in ("true", "1")


def _pesos(amount: Decimal) -> str:
    return "$" + f"{amount.quantize(Decimal(1), ROUND_HALF_UP):,}".replace(",", ".")


def puntaje(variables: Mapping[str, Any], smmlv: Decimal, income_cap_smmlv: Decimal) -> Decimal:
    """The score of the module's formula (variables as the calificarPostulacion mapping reads them)."""
    income, savings = Decimal(str(variables["INGRESOS"])), Decimal(str(variables["AHORRO"]))
    points = Decimal(350) * max(Decimal(0), 1 - income / (income_cap_smmlv * smmlv))
    group = str(variables.get("GRUPO_SISBEN") or "")
    if group:
        points += max(0, _SISBEN_BASE[group[0]] - 5 * (int(group[1:]) - 1))
    points += 30 * min(int(str(variables["MIEMBROS"])), 5)
    points += Decimal(150) * min(Decimal(1), savings / (10 * smmlv))
    points += 50 * _flag(variables["DISCAPACIDAD"]) + 50 * _flag(variables["VICTIMA"])
    return points.quantize(_CENT, ROUND_HALF_UP)


def _parameters(year: int) -> tuple[int, Decimal, Decimal]:
    connector = legacy.connector()
    rows = connector.call("parametros_calificacion", {"VIGENCIA": str(year)})
    if not rows:
        raise LegacyNotFound(connector.entity, what=f"los parámetros de calificación de la vigencia {year}")
    found = {str(row["PARAMETRO"]): Decimal(str(row["VALOR"])) for row in rows}
    missing = [name for name in ("SMMLV", "TOPE_INGRESOS_SMMLV") if name not in found]
    if missing:
        raise LegacyGarbage(connector.entity, detail=f"faltan los parámetros {', '.join(missing)} "
                                                     f"de la vigencia {rows[0]['VIGENCIA']}")
    return int(rows[0]["VIGENCIA"]), found["SMMLV"], found["TOPE_INGRESOS_SMMLV"]


def calificar_postulacion(request: Incoming) -> etree._Element:
    assert request.payload is not None
    variables = _SCORING.solicitud.to_legacy(request.payload)
    year, smmlv, cap = _parameters(_today().year)
    reasons: list[tuple[str, str]] = []
    income, limit = Decimal(str(variables["INGRESOS"])), cap * smmlv
    if income > limit:
        reasons.append(("INGRESOS_SUPERIORES",
                        f"Los ingresos mensuales del hogar ({_pesos(income)}) superan el tope de {cap:f} SMMLV "
                        f"({_pesos(limit)}) de la vigencia {year}."))
    if str(variables.get("GRUPO_SISBEN") or "").startswith("D"):
        reasons.append(("SISBEN_NO_ELEGIBLE",
                        f"El hogar está en el grupo {variables['GRUPO_SISBEN']} del Sisbén IV (no pobre, no "
                        "vulnerable); la convocatoria exige los grupos A, B o C."))
    answer = _SCORING.respuesta.to_gel(
        {"PUNTAJE": puntaje(variables, smmlv, cap), "CUMPLE": "false" if reasons else "true"}, validate=False)
    namespace = etree.QName(answer).namespace
    for code, text in reasons:
        reason = etree.SubElement(answer, qname(namespace, "causalRechazo"))
        etree.SubElement(reason, qname(namespace, "codCausalRechazo")).text = code
        etree.SubElement(reason, qname(namespace, "nomCausalRechazo")).text = text
    return legacy.checked(answer)


# asignarSubsidio


def asignar_subsidio(request: Incoming, context: HandlerContext) -> etree._Element:
    """Decide (once per radicado), answer, and announce a new decision to the catalog's subscribers: the event
    leaves in the same transaction as the answer; asking again repeats the answer, not the announcement."""
    assert request.payload is not None
    params = _ASSIGNMENT.solicitud.to_legacy(request.payload)
    today = _today().date()
    connector = legacy.connector()
    registering = params["COD_CONVOCATORIA"] is not None
    if registering:
        connector.call("registrar_postulacion", {**params, "FECHA": today.isoformat(),
                                                 "COD_MODALIDAD": _MODALITIES.legacy[str(params["MODALIDAD"])]})
    written = connector.call("registrar_decision", {**params, "FECHA": today.isoformat(), "ANIO": str(today.year)})
    decisions = connector.call("consultar_decision", {"RADICADO": params["RADICADO"]})
    if not decisions:  # registrar_decision found no application with that radicado
        what = f"la postulación con radicado {params['RADICADO']}"
        if registering:  # registrar_postulacion found no such call to register it in
            what = f"la convocatoria {params['COD_CONVOCATORIA']} de {what}"
        raise LegacyNotFound(connector.entity, what=what)
    answer = _ASSIGNMENT.respuesta.to_gel(decisions[0])
    if written and int(written[0].get("filas", 0)) > 0:  # a new decision, not the answer repeated
        context.emit(request.header.service, PLATFORM, evento_asignacion(str(params["RADICADO"]), answer),
                     chain_id=request.header.chain_id, radicado=str(params["RADICADO"]))
    return answer


def evento_asignacion(radicado: str, respuesta: etree._Element) -> etree._Element:
    """The `eventoAsignarSubsidio` for the subscribers (cajas, fiduciaria, oferentes) built from an answer to
    asignarSubsidio; addressed to the platform, which fans it out to the catalog's subscribers."""
    namespace = etree.QName(respuesta).namespace
    event = etree.Element(qname(namespace, "eventoAsignarSubsidio"),
                          nsmap={"asg": namespace, "fin": FINANCIERO, "doc": DOCUMENTO})
    etree.SubElement(event, qname(namespace, "radicado")).text = radicado
    etree.SubElement(event, qname(namespace, "asignado")).text = respuesta.findtext(qname(namespace, "asignado"))
    for tag in (qname(FINANCIERO, "valorPesos"), qname(DOCUMENTO, "actoAdministrativo")):
        found = respuesta.find(tag)
        if found is not None:
            event.append(copy.deepcopy(found))
    return legacy.checked(event)
