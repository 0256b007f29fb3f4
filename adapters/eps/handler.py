"""autorizarServicio: EPS Sanitas decides on an IPS's request for health services.

The authorisation rule, applied in this order:

1. The patient must be an active affiliate of the EPS (its own `usuarios` table); otherwise NEGADA.
2. Every requested CUPS procedure must be one the EPS covers within the Plan de Beneficios en Salud
   (`cups.incluido_pbs`); otherwise NEGADA, naming the procedure.
3. A high-cost procedure (`cups.alto_costo`) requested outside the emergency room with NO_PRIORITARIA
   priority goes to medical audit first: PENDIENTE_AUDITORIA.
4. Otherwise APROBADA, valid for 90 days, each procedure up to the EPS's maximum per request
   (`cups.max_cantidad`), with the patient's fee for this year (`cuotas`):
   - subsidised regime: EXENTO (0);
   - contributory regime, hospital care: the contributor (COTIZANTE) is EXENTO; a beneficiary pays a COPAGO,
     the band's percentage of the procedures' reference value, capped per event;
   - contributory regime, outpatient or emergency care: the band's CUOTA_MODERADORA.

The decision is recorded once per request (keyed by the GEL idMensaje), so a redelivered or re-handled
request gets the same authorisation number; NEGADA and PENDIENTE_AUDITORIA get a number too.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from lxml import etree

from adapters.anla.support import OwnConnector, checked, sub, text_of, today
from adapters.sdk.runtime import Incoming
from broker.gelxml.namespaces import ENTIDAD, FINANCIERO, GEL_PREFIX, PERSONAL, qname

__all__ = ["VALIDITY_DAYS", "autorizar_servicio"]

LEGACY = OwnConnector(Path(__file__).with_name("adapter.yaml"))
AUS = GEL_PREFIX + "Salud/AutorizarServicio/1.0"
VALIDITY_DAYS = 90
_STATES = {"A": ("APROBADA", "Aprobada"), "N": ("NEGADA", "Negada"),
           "P": ("PENDIENTE_AUDITORIA", "Pendiente de auditoría médica")}
_FEES = {"CUOTA_MODERADORA": "Cuota moderadora", "COPAGO": "Copago", "EXENTO": "Exento"}
_PESO = Decimal(1)


def _q(local: str) -> str:
    return qname(AUS, local)


def _requested(payload: etree._Element) -> list[tuple[str, str, int]]:
    """(CUPS, name as requested, quantity) of each servicioSolicitado."""
    return [(node.findtext(_q("codCups"), "").strip(), node.findtext(_q("nomCups"), "").strip(),
             int(node.findtext(_q("cantidad"), "1"))) for node in payload.iterfind(_q("servicioSolicitado"))]


def _decide(payload: etree._Element, doc_type: str, number: str, day: date) -> dict[str, Any]:
    """The legacy record of the decision (estado, vigencia_hasta, servicios, tipo_cuota, valor_cuota, motivo)."""
    denied: dict[str, Any] = {"estado": "N", "vigencia": None, "servicios": None, "tipo_cuota": None,
                              "valor_cuota": None}
    users = LEGACY.call("usuario", tipo=doc_type, numero=number)
    if not users or users[0]["estado"] != "ACTIVO":
        state = f" (estado {users[0]['estado']})" if users else ""
        return {**denied, "motivo": f"El usuario {doc_type} {number} no registra afiliación activa en EPS "
                                    f"Sanitas{state}."}
    user = users[0]
    requested = _requested(payload)
    procedures: dict[str, Mapping[str, Any]] = {}
    for cups, name, _quantity in requested:
        found = LEGACY.one("procedimiento", cups=cups)
        if found is None or not found["incluido_pbs"]:
            label = found["descripcion"] if found else name
            return {**denied, "motivo": f"El procedimiento {cups} ({label}) no está incluido en el Plan de "
                                        "Beneficios en Salud que cubre la EPS."}
        procedures[cups] = found
    scope = text_of(payload, _q("codAmbito"))
    priority = text_of(payload, _q("prioridad"))
    costly = [cups for cups, _n, _c in requested if procedures[cups]["alto_costo"]]
    if costly and scope != "URGENCIAS" and priority == "NO_PRIORITARIA":
        listed = ", ".join(f"{c} ({procedures[c]['descripcion']})" for c in costly)
        return {**denied, "estado": "P", "motivo": f"Procedimiento de alto costo que requiere auditoría médica "
                                                   f"previa: {listed}."}
    granted = [(cups, min(quantity, int(procedures[cups]["max_cantidad"]))) for cups, _name, quantity in requested]
    band, year = str(user["rango_ibc"]), day.year

    def fee(concept: str) -> Decimal:
        found = LEGACY.one("cuota", concepto=concept, rango=band, vigencia=year)
        assert found is not None
        return Decimal(str(found["valor"]))

    if user["regimen"] == "SUBSIDIADO" or (scope == "HOSPITALARIO" and user["tipo_usuario"] == "COTIZANTE"):
        kind, value = "EXENTO", Decimal(0)
    elif scope == "HOSPITALARIO":
        total = sum((Decimal(int(procedures[c]["valor_referencia"])) * q for c, q in granted), Decimal(0))
        kind = "COPAGO"
        value = min(total * fee("COPAGO_PORCENTAJE") / 100, fee("COPAGO_TOPE_EVENTO")).quantize(
            _PESO, rounding=ROUND_HALF_UP)
    else:
        kind, value = "CUOTA_MODERADORA", fee("CUOTA_MODERADORA")
    return {"estado": "A", "vigencia": (day + timedelta(days=VALIDITY_DAYS)).isoformat(),
            "servicios": ";".join(f"{c}x{q}" for c, q in granted), "tipo_cuota": kind,
            "valor_cuota": f"{value.quantize(Decimal('0.01')):f}", "motivo": None}


def autorizar_servicio(request: Incoming) -> etree._Element:
    entity, payload = request.header.recipient, request.payload
    assert payload is not None
    doc_type = text_of(payload, qname(PERSONAL, "identificacion"), qname(PERSONAL, "codTipoDocumento")) or ""
    number = text_of(payload, qname(PERSONAL, "identificacion"), qname(PERSONAL, "numDocumento")) or ""
    request_id = request.header.message_id
    record = LEGACY.one("autorizacion_de_solicitud", id_solicitud=request_id)
    if record is None:
        day = today()
        decision = _decide(payload, doc_type, number, day)
        LEGACY.call("registrar_autorizacion", prefijo=day.strftime("%Y%m%d"), fecha=day.isoformat(),
                    id_solicitud=request_id, tipo=doc_type, numero=number,
                    ips=text_of(payload, qname(ENTIDAD, "entidad"), qname(ENTIDAD, "nit"), qname(ENTIDAD, "numNit")),
                    diagnostico=text_of(payload, _q("diagnostico"), _q("codCie10")), **decision)
        record = LEGACY.one("autorizacion_de_solicitud", id_solicitud=request_id)
        assert record is not None

    root = etree.Element(_q("salidaAutorizarServicio"), nsmap={"aus": AUS, "per": PERSONAL, "fin": FINANCIERO})
    identification = sub(root, qname(PERSONAL, "identificacion"))
    sub(identification, qname(PERSONAL, "codTipoDocumento"), doc_type)
    sub(identification, qname(PERSONAL, "numDocumento"), number)
    sub(root, _q("numAutorizacion"), record["num_autorizacion"])
    code, name = _STATES[str(record["estado"])]
    sub(root, _q("codEstadoAutorizacion"), code)
    sub(root, _q("nomEstadoAutorizacion"), name)
    if record["vigencia_hasta"]:
        sub(root, _q("fechaVigenciaHasta"), record["vigencia_hasta"])
    for item in filter(None, str(record["servicios"] or "").split(";")):
        cups, _, quantity = item.partition("x")
        granted = sub(root, _q("servicioAutorizado"))
        sub(granted, _q("codCups"), cups)
        sub(granted, _q("cantidad"), quantity)
    if record["tipo_cuota"]:
        fee = sub(root, _q("cuotaRecuperacion"))
        sub(fee, _q("codTipoCuota"), record["tipo_cuota"])
        sub(fee, _q("nomTipoCuota"), _FEES[str(record["tipo_cuota"])])
        sub(fee, qname(FINANCIERO, "valorPesos"), record["valor_cuota"])
    if record["motivo"]:
        sub(root, _q("motivoNegacion"), record["motivo"])
    return checked(root, entity)
