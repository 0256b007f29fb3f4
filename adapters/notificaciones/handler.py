"""notificarCiudadano: the citizen's e-mail, through the channel's mail connector (adapters/notificaciones/correo.py).

The radicado and idCadena of the payload (or, when absent, of the request's header) travel as X-GEL-*
headers of the e-mail, and its Message-ID is derived from the request's idMensaje: a retried or re-handled
request sends the same Message-ID, so a duplicate can be recognised downstream.
"""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from adapters.anla.support import OwnConnector, checked, sub, text_of
from adapters.sdk.runtime import Incoming
from broker.gelxml.namespaces import GEL_PREFIX, PERSONAL, UBICACION, qname

__all__ = ["notificar_ciudadano"]

LEGACY = OwnConnector(Path(__file__).with_name("adapter.yaml"))
NCI = GEL_PREFIX + "Notificaciones/NotificarCiudadano/1.0"
_NAME_PARTS = ("primerNombre", "segundoNombre", "primerApellido", "segundoApellido")


def _q(local: str) -> str:
    return qname(NCI, local)


def notificar_ciudadano(request: Incoming) -> etree._Element:
    entity, payload, header = request.header.recipient, request.payload, request.header
    assert payload is not None
    recipient = _q("destinatario")
    name = " ".join(part for part in (text_of(payload, recipient, qname(PERSONAL, "nombreCompleto"),
                                              qname(PERSONAL, local)) for local in _NAME_PARTS) if part)
    sent = LEGACY.one(
        "enviar_correo", entidad=entity, id_solicitud=header.message_id, nombre=name or None,
        destinatario=text_of(payload, recipient, qname(UBICACION, "correoElectronico")),
        asunto=text_of(payload, _q("asunto")), cuerpo=(payload.findtext(_q("cuerpo")) or "").strip(),
        radicado=text_of(payload, _q("radicado")) or header.radicado,
        id_cadena=text_of(payload, _q("idCadena")) or header.chain_id,
    )
    assert sent is not None
    root = etree.Element(_q("salidaNotificarCiudadano"), nsmap={"nci": NCI})
    sub(root, _q("aceptado"), True)
    sub(root, _q("idMensajeCorreo"), sent["id_mensaje_correo"])
    sub(root, _q("fechaHoraAceptacion"), sent["aceptado_en"])
    return checked(root, entity)
