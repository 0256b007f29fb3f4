"""ANLA's act-issuing services, as handlers over its SQL database (the operations are in adapter.yaml).

Each act is issued once per expediente and type (auto de inicio, concepto técnico, resolución): the first
request writes it with the next number of its series (`AUTO-2026-08735`, `CT-2026-01588`,
`RES-2026-00942`), dated today, and its text as the attached document; asking again — a redelivery, a
restarted adapter, another chain step — returns the act already issued, unchanged. The document is attached
last, so an act left without it by a crash is completed by the next request. A publication in the Gaceta
Ambiental is likewise once per act (`GA-2026-0413`).

Rules (ANLA's, as its system applies them):

- auto de inicio: the payment support must be the expediente's liquidation reference, the radicado must be
  the expediente's, and the payment must appear in the bank reconciliation; otherwise the caller receives
  GEL-ADAPTER-NOT_FOUND naming what is missing (an unpaid charge blocks the auto);
- concepto técnico: needs the auto de inicio; the project is viable unless it overlaps protected areas;
  a viable concept proposes the sector's obligation templates (plus consulta previa when required);
- resolución: needs a concept of the same expediente; it grants the licence when the concept is viable and
  denies it otherwise (the proposed decision is recorded, it does not override the concept); a granted
  licence is valid for the sector's useful life;
- boletín: publishes the given act of an existing expediente with its extract.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

from lxml import etree

from adapters.anla.support import (
    OwnConnector,
    acto_administrativo,
    checked,
    document_digest,
    long_date,
    month_name,
    sub,
    text_of,
    today,
)
from adapters.sdk.connectors.base import LegacyNotFound
from adapters.sdk.runtime import Incoming
from broker.gelxml.namespaces import DOCUMENTO, FINANCIERO, GEL_PREFIX, qname

__all__ = ["emitir_concepto_tecnico", "expedir_auto_inicio", "expedir_resolucion", "publicar_boletin"]

LEGACY = OwnConnector(Path(__file__).with_name("adapter.yaml"))

EAI = GEL_PREFIX + "Ambiental/ExpedirAutoInicio/1.0"
ECT = GEL_PREFIX + "Ambiental/EmitirConceptoTecnico/1.0"
EXR = GEL_PREFIX + "Ambiental/ExpedirResolucion/1.0"
PBO = GEL_PREFIX + "Ambiental/PublicarBoletin/1.0"
VITAL = "https://vital.anla.gov.co/expedientes"
GACETA = "https://www.anla.gov.co/gaceta-ambiental/"

# act type -> number prefix, document file stem
_SERIES = {"AUTO": ("AUTO", "Auto"), "CONCEPTO": ("CT", "Concepto-Tecnico"), "RESOLUCION": ("RES", "Resolucion")}
_DECISIONS = {"OTORGAR": ("Otorgar la licencia ambiental", "Resolución de otorgamiento de licencia ambiental"),
              "NEGAR": ("Negar la licencia ambiental", "Resolución que niega la licencia ambiental")}


def _q(namespace: str, local: str) -> str:
    return qname(namespace, local)


def _required(payload: etree._Element, *steps: str) -> str:
    value = text_of(payload, *steps)
    assert value is not None, "the schema makes it mandatory"
    return value


def _flag(payload: etree._Element, *steps: str) -> bool:
    return _required(payload, *steps) in ("true", "1")


def _expediente(number: str) -> dict[str, Any]:
    found = LEGACY.one("expediente", expediente=number)  # one: true, so a missing one is LegacyNotFound
    assert found is not None
    return found


def _issue(expediente: Mapping[str, Any], kind: str, name: str, *, viable: bool | None = None,
           decision: str | None = None, years: int | None = None, support: str | None = None) -> dict[str, Any]:
    """The expediente's act of `kind`: the one already issued, or a new one with the next number."""
    day = today()
    prefix, _stem = _SERIES[kind]
    LEGACY.call("expedir_acto", prefijo=prefix, anio=day.year, expediente=expediente["num_expediente"], tipo=kind,
                nom_tipo=name, fecha=day.isoformat(), viable=None if viable is None else int(viable),
                decision=decision, vigencia=years, soporte=support)
    act = LEGACY.one("acto_de_expediente", expediente=expediente["num_expediente"], tipo=kind)
    assert act is not None, "expedir_acto wrote it or it was there"
    return act


def _attach(act: dict[str, Any], expediente: Mapping[str, Any], text: Callable[[Mapping[str, Any]], str]
            ) -> dict[str, Any]:
    """Attach the text of a newly issued act as its document (an act issued before keeps its own)."""
    if act.get("archivo"):
        return act
    _prefix, year, consecutive = str(act["num_acto"]).split("-")
    _kind_prefix, stem = _SERIES[str(act["tipo_acto"])]
    file = f"{stem}-{consecutive}-{year}-{expediente['num_expediente']}.txt"
    body = text(act).encode("utf-8")
    LEGACY.call("adjuntar_documento", num_acto=act["num_acto"], archivo=file, formato="text/plain", tamano=len(body),
                hash=document_digest(body), uri=f"{VITAL}/{expediente['num_expediente']}/actos/{file}",
                texto=body.decode("utf-8"))
    attached = LEGACY.one("acto_de_expediente", expediente=expediente["num_expediente"], tipo=act["tipo_acto"])
    assert attached is not None
    return attached


def _heading(act: Mapping[str, Any], title: str) -> str:
    return (f"AUTORIDAD NACIONAL DE LICENCIAS AMBIENTALES - ANLA\n{title} {act['num_acto']}\n"
            f"Bogotá D.C., {long_date(date.fromisoformat(str(act['fecha_acto'])))}\n\n")


def _payload(request: Incoming) -> etree._Element:
    assert request.payload is not None
    return request.payload


def expedir_auto_inicio(request: Incoming) -> etree._Element:
    entity, payload = request.header.recipient, _payload(request)
    number = _required(payload, _q(EAI, "numExpediente"))
    radicado = _required(payload, _q(EAI, "radicado"))
    reference = _required(payload, _q(EAI, "soportePago"), _q(FINANCIERO, "referenciaPago"))
    authorisation = _required(payload, _q(EAI, "soportePago"), _q(FINANCIERO, "numAutorizacion"))
    expediente = _expediente(number)
    if radicado != expediente["radicado"]:
        raise LegacyNotFound(entity, what=f"el radicado {radicado} en el expediente {number} (el expediente tiene "
                                          f"el radicado {expediente['radicado']})")
    if reference != expediente["ref_pago"]:
        raise LegacyNotFound(entity, what=f"la referencia de pago {reference} en el expediente {number} (su "
                                          f"liquidación tiene la referencia {expediente['ref_pago']})")
    if not LEGACY.call("pago_conciliado", referencia=reference, autorizacion=authorisation):
        raise LegacyNotFound(entity, what=f"el pago de la referencia {reference} con autorización {authorisation}: "
                                          "la conciliación bancaria no lo confirma y sin pago no se expide el auto de "
                                          "inicio")
    act = _issue(expediente, "AUTO", "Auto de inicio de trámite de licencia ambiental")

    def text(act: Mapping[str, Any]) -> str:
        return _heading(act, "AUTO") + (
            f"Por el cual se da inicio al trámite administrativo de solicitud de licencia ambiental para el "
            f"proyecto {expediente['nombre_proyecto']}, expediente {number}, radicado {radicado}.\n\n"
            f"DISPONE:\nARTÍCULO PRIMERO. Iniciar el trámite de licencia ambiental solicitado por "
            f"{expediente['solicitante']}, NIT {expediente['nit_solicitante']}, sector {expediente['sector']}.\n"
            f"ARTÍCULO SEGUNDO. Tener por pagado el servicio de evaluación: referencia {reference}, autorización "
            f"{authorisation}.\n\nComuníquese y cúmplase.\n")

    act = _attach(act, expediente, text)
    root = etree.Element(_q(EAI, "salidaExpedirAutoInicio"), nsmap={"eai": EAI, "doc": DOCUMENTO})
    acto_administrativo(root, act, "AUTO")
    return checked(root, entity)


def emitir_concepto_tecnico(request: Incoming) -> etree._Element:
    entity, payload = request.header.recipient, _payload(request)
    number = _required(payload, _q(ECT, "numExpediente"))
    inputs = (_q(ECT, "insumos"),)
    consulta_previa = _flag(payload, *inputs, _q(ECT, "requiereConsultaPrevia"))
    overlaps = _flag(payload, *inputs, _q(ECT, "traslapaAreasProtegidas"))
    documents = len(payload.findall(f"{inputs[0]}/{_q(ECT, 'documentos')}/{_q(DOCUMENTO, 'documentoAdjunto')}"))
    expediente = _expediente(number)
    if not LEGACY.call("acto_de_expediente", expediente=number, tipo="AUTO"):
        raise LegacyNotFound(entity, what=f"el auto de inicio del expediente {number}: sin él no se evalúa la "
                                          "solicitud ni se emite concepto técnico")
    act = _issue(expediente, "CONCEPTO", "Concepto técnico de evaluación", viable=not overlaps)
    if not act.get("archivo") and act["viable"]:
        templates = LEGACY.call("plantillas_obligacion", sector=expediente["cod_sector"])
        chosen = [t for t in templates if t["condicion"] == "SIEMPRE"
                  or (t["condicion"] == "CONSULTA_PREVIA" and consulta_previa)]
        for order, template in enumerate(chosen, start=1):
            LEGACY.call("registrar_obligacion", num_acto=act["num_acto"], orden=order, texto=template["texto"])
    obligations = [str(row["texto"]) for row in LEGACY.call("obligaciones", num_acto=act["num_acto"])]

    def text(act: Mapping[str, Any]) -> str:
        verdict = ("es ambientalmente VIABLE" if act["viable"] else
                   "NO es ambientalmente viable: el área del proyecto se traslapa con áreas protegidas")
        listed = "".join(f"{n}. {o}\n" for n, o in enumerate(obligations, start=1)) or "Ninguna.\n"
        return _heading(act, "CONCEPTO TÉCNICO") + (
            f"Evaluación de la solicitud de licencia ambiental del proyecto {expediente['nombre_proyecto']}, "
            f"expediente {number}, con {documents} documentos del expediente.\n\nCONCLUSIÓN: el proyecto {verdict}.\n"
            f"\nOBLIGACIONES PROPUESTAS:\n{listed}")

    act = _attach(act, expediente, text)
    root = etree.Element(_q(ECT, "salidaEmitirConceptoTecnico"), nsmap={"ect": ECT, "doc": DOCUMENTO})
    acto_administrativo(root, act, "CONCEPTO")
    sub(root, _q(ECT, "viable"), bool(act["viable"]))
    listed = sub(root, _q(ECT, "obligaciones"))
    for obligation in obligations:
        sub(listed, _q(ECT, "obligacion"), obligation)
    return checked(root, entity)


def expedir_resolucion(request: Incoming) -> etree._Element:
    entity, payload = request.header.recipient, _payload(request)
    number = _required(payload, _q(EXR, "numExpediente"))
    concept_number = _required(payload, _q(DOCUMENTO, "numActo"))
    proposed = _required(payload, _q(EXR, "codDecisionPropuesta"))
    expediente = _expediente(number)
    concept = LEGACY.one("acto", num_acto=concept_number)
    if concept is None or concept["num_expediente"] != number or concept["tipo_acto"] != "CONCEPTO":
        raise LegacyNotFound(entity, what=f"el concepto técnico {concept_number} del expediente {number}")
    decision = "OTORGAR" if concept["viable"] else "NEGAR"
    years = int(expediente["vida_util_anios"]) if decision == "OTORGAR" else None
    act = _issue(expediente, "RESOLUCION", _DECISIONS[decision][1], decision=decision, years=years,
                 support=concept_number)

    def text(act: Mapping[str, Any]) -> str:
        decided = str(act["decision"])
        validity = f" por {act['vigencia_anios']} años" if act["vigencia_anios"] else ""
        return _heading(act, "RESOLUCIÓN") + (
            f"Por la cual se decide la solicitud de licencia ambiental del proyecto {expediente['nombre_proyecto']}, "
            f"expediente {number}, con base en el concepto técnico {concept_number} (decisión propuesta: {proposed})."
            f"\n\nRESUELVE:\nARTÍCULO PRIMERO. {_DECISIONS[decided][0]}{validity} a {expediente['solicitante']}, "
            f"NIT {expediente['nit_solicitante']}.\n\nNotifíquese, comuníquese, publíquese y cúmplase.\n")

    act = _attach(act, expediente, text)
    root = etree.Element(_q(EXR, "salidaExpedirResolucion"), nsmap={"exr": EXR, "doc": DOCUMENTO})
    acto_administrativo(root, act, "RESOLUCION")
    sub(root, _q(EXR, "codDecision"), act["decision"])
    sub(root, _q(EXR, "nomDecision"), _DECISIONS[str(act["decision"])][0])
    if act["vigencia_anios"]:
        sub(root, _q(EXR, "vigenciaAnios"), act["vigencia_anios"])
    return checked(root, entity)


def publicar_boletin(request: Incoming) -> etree._Element:
    entity, payload = request.header.recipient, _payload(request)
    number = _required(payload, _q(PBO, "numExpediente"))
    act_number = _required(payload, _q(DOCUMENTO, "actoAdministrativo"), _q(DOCUMENTO, "numActo"))
    extract = _required(payload, _q(PBO, "extracto"))
    _expediente(number)
    day = today()
    LEGACY.call("publicar", anio=day.year, num_acto=act_number, expediente=number, fecha=day.isoformat(),
                uri_base=GACETA, mes=month_name(day), extracto=extract)
    publication = LEGACY.one("publicacion", num_acto=act_number)
    assert publication is not None
    if publication["num_expediente"] != number:
        raise LegacyNotFound(entity, what=f"el acto {act_number} en el expediente {number} (la Gaceta Ambiental lo "
                                          f"publicó en el expediente {publication['num_expediente']})")
    root = etree.Element(_q(PBO, "salidaPublicarBoletin"), nsmap={"pbo": PBO})
    sub(root, _q(PBO, "numBoletin"), publication["num_boletin"])
    sub(root, _q(PBO, "fechaPublicacion"), publication["fecha_publicacion"])
    sub(root, _q(PBO, "uriPublicacion"), publication["uri"])
    return checked(root, entity)
