"""The GEL-XML envelope `mensaje`: read its header, build new messages, reach the payload."""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum

from lxml import etree

from broker.gelxml.faults import default_namespace
from broker.gelxml.namespaces import MENSAJE, SHA256_URI, qname
from broker.gelxml.parsing import parse_untrusted

__all__ = [
    "Header",
    "MessageType",
    "ServiceRef",
    "build_message",
    "message_digest",
    "new_header",
    "payload_of",
    "read_header",
    "reply_header",
    "serialize",
]

PROTOCOL_VERSION = "1.0"


class MessageType(StrEnum):
    REQUEST = "solicitud"
    RESPONSE = "respuesta"
    EVENT = "evento"
    RECEIPT = "acuse"
    FAULT = "falla"

    @property
    def is_reply(self) -> bool:
        return self in (MessageType.RESPONSE, MessageType.RECEIPT, MessageType.FAULT)


@dataclass(frozen=True, slots=True)
class ServiceRef:
    code: str
    version: str

    def __str__(self) -> str:
        return f"{self.code} v{self.version}"


@dataclass(frozen=True, slots=True)
class Header:
    """The `encabezado` of a message, with English attribute names for the Spanish elements."""

    message_id: str
    sent_at: datetime
    sender: str
    recipient: str
    service: ServiceRef
    message_type: MessageType
    correlation_id: str | None = None
    request_hash: str | None = None
    chain_id: str | None = None
    radicado: str | None = None
    user: str | None = None
    subject: str | None = None
    protocol_version: str = field(default=PROTOCOL_VERSION)


_M = {name: qname(MENSAJE, name) for name in (
    "mensaje", "encabezado", "cuerpo", "idMensaje", "fechaHoraEnvio", "entidadOrigen", "entidadDestino",
    "servicio", "codServicio", "versionServicio", "tipoMensaje", "idCorrelacion", "hashSolicitud",
    "idCadena", "radicado", "usuario", "asunto", "versionProtocolo",
)}

_OPTIONAL_FIELDS = (
    ("idCorrelacion", "correlation_id"),
    ("hashSolicitud", "request_hash"),
    ("idCadena", "chain_id"),
    ("radicado", "radicado"),
    ("usuario", "user"),
    ("asunto", "subject"),
)


def _children(parent: etree._Element) -> dict[str, str]:
    """Child element texts by local name in one pass (lxml's find() re-parses its path on every call)."""
    prefix = "{" + MENSAJE + "}"
    return {
        child.tag[len(prefix):]: (child.text or "").strip()
        for child in parent
        if isinstance(child.tag, str) and child.tag.startswith(prefix)
    }


def read_header(root: etree._Element) -> Header:
    """Read the header of a schema-valid `mensaje`."""
    enc = next((c for c in root if c.tag == _M["encabezado"]), None)
    if enc is None:
        raise ValueError("mensaje has no encabezado")
    service = next((c for c in enc if c.tag == _M["servicio"]), None)
    if service is None:
        raise ValueError("encabezado has no servicio")
    fields = _children(enc)
    service_fields = _children(service)
    optional = {attr: fields.get(name) for name, attr in _OPTIONAL_FIELDS}
    return Header(
        message_id=fields.get("idMensaje", ""),
        sent_at=datetime.fromisoformat(fields.get("fechaHoraEnvio", "")),
        sender=fields.get("entidadOrigen", ""),
        recipient=fields.get("entidadDestino", ""),
        service=ServiceRef(service_fields.get("codServicio", ""), service_fields.get("versionServicio", "")),
        message_type=MessageType(fields.get("tipoMensaje") or ""),
        protocol_version=fields.get("versionProtocolo") or PROTOCOL_VERSION,
        **optional,
    )


def payload_of(root: etree._Element) -> etree._Element | None:
    """The single payload element inside `cuerpo`, or None when there is none."""
    body = root.find(_M["cuerpo"])
    if body is None:
        return None
    for child in body:
        if isinstance(child.tag, str):
            return child
    return None


def _now() -> datetime:
    return datetime.now(UTC).astimezone()


def new_header(
    *,
    sender: str,
    recipient: str,
    service: ServiceRef,
    message_type: MessageType = MessageType.REQUEST,
    chain_id: str | None = None,
    radicado: str | None = None,
    user: str | None = None,
    subject: str | None = None,
) -> Header:
    """A header for a new message: fresh idMensaje, sent now."""
    return Header(
        message_id=str(uuid.uuid4()),
        sent_at=_now().replace(microsecond=0),
        sender=sender,
        recipient=recipient,
        service=service,
        message_type=message_type,
        chain_id=chain_id,
        radicado=radicado,
        user=user,
        subject=subject,
    )


def reply_header(request: Header, request_bytes: bytes, message_type: MessageType) -> Header:
    """The header answering `request`: reversed parties, correlated, carrying the request's hash."""
    return replace(
        new_header(
            sender=request.recipient,
            recipient=request.sender,
            service=request.service,
            message_type=message_type,
            chain_id=request.chain_id,
            radicado=request.radicado,
        ),
        correlation_id=request.message_id,
        request_hash=message_digest(request_bytes),
    )


def reissue(message: etree._Element, *, answering: bytes | None = None) -> etree._Element:
    """A copy of `message` sent now under a fresh idMensaje; `answering` (a request's bytes) also sets
    idCorrelacion and hashSolicitud to that request's. Used to send a stored or sample message again."""
    header = read_header(message)
    fresh = replace(header, message_id=str(uuid.uuid4()), sent_at=_now().replace(microsecond=0))
    if answering is not None:
        request = read_header(parse_untrusted(answering))
        fresh = replace(fresh, correlation_id=request.message_id, request_hash=message_digest(answering))
    payload = payload_of(message)
    if payload is None:
        raise ValueError("mensaje has no payload to reissue")
    return build_message(fresh, payload)


def message_digest(data: bytes) -> str:
    """Base64 SHA-256 of a message as sent: the value of `hashSolicitud` and of receipts."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def build_message(header: Header, payload: etree._Element) -> etree._Element:
    """A new `mensaje` element holding `payload` (which is copied, not moved)."""
    root = etree.Element(_M["mensaje"], nsmap=default_namespace(MENSAJE))
    enc = etree.SubElement(root, _M["encabezado"])

    def put(name: str, value: str | None) -> etree._Element | None:
        if value is None:
            return None
        node = etree.SubElement(enc, _M[name])
        node.text = value
        return node

    put("idMensaje", header.message_id)
    put("fechaHoraEnvio", header.sent_at.isoformat())
    put("entidadOrigen", header.sender)
    put("entidadDestino", header.recipient)
    service = etree.SubElement(enc, _M["servicio"])
    etree.SubElement(service, _M["codServicio"]).text = header.service.code
    etree.SubElement(service, _M["versionServicio"]).text = header.service.version
    put("tipoMensaje", header.message_type.value)
    put("idCorrelacion", header.correlation_id)
    hash_node = put("hashSolicitud", header.request_hash)
    if hash_node is not None:
        hash_node.set("algoritmo", SHA256_URI)
    put("idCadena", header.chain_id)
    put("radicado", header.radicado)
    put("usuario", header.user)
    put("asunto", header.subject)
    put("versionProtocolo", header.protocol_version)
    body = etree.SubElement(root, _M["cuerpo"])
    body.append(_copy(payload))
    return root


def _copy(element: etree._Element) -> etree._Element:
    return etree.fromstring(etree.tostring(element))


def serialize(root: etree._Element) -> bytes:
    """UTF-8 bytes with an XML declaration: the form messages travel in."""
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
