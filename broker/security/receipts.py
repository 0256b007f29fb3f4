"""Signed receipts (`acuse`): the receiver's proof that it got exactly this message, as AS4 receipts do.

A receipt is an ordinary signed GEL-XML message of type `acuse`, correlated to the message it
acknowledges and carrying the SHA-256 of that message's bytes as received. Whoever holds the original
message and the receipt can prove, with xmlsec1 alone, that the receiver acknowledged those bytes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from lxml import etree

from broker.gelxml.envelope import (
    Header,
    MessageType,
    build_message,
    message_digest,
    read_header,
    reply_header,
    serialize,
)
from broker.gelxml.faults import FaultCode, Location, default_namespace, fault
from broker.gelxml.namespaces import ACUSE, SHA256_URI, qname
from broker.gelxml.parsing import parse_untrusted
from broker.security.pki import Credential, TrustStore
from broker.security.signing import sign_element
from broker.security.verification import VerifiedMessage, verify_message

__all__ = ["build_receipt", "verify_receipt"]


def build_receipt(received: bytes, credential: Credential, *, duplicate: bool = False,
                  received_at: datetime | None = None, header: Header | None = None) -> bytes:
    """A receipt for the message `received` (its bytes as they arrived), signed by the receiver."""
    request = header or read_header(parse_untrusted(received))
    payload = etree.Element(qname(ACUSE, "acuse"), nsmap=default_namespace(ACUSE))
    etree.SubElement(payload, qname(ACUSE, "idMensajeRecibido")).text = request.message_id
    digest = etree.SubElement(payload, qname(ACUSE, "hashMensajeRecibido"))
    digest.text = message_digest(received)
    digest.set("algoritmo", SHA256_URI)
    moment = (received_at or datetime.now(UTC)).astimezone().replace(microsecond=0)
    etree.SubElement(payload, qname(ACUSE, "fechaHoraRecepcion")).text = moment.isoformat()
    etree.SubElement(payload, qname(ACUSE, "resultado")).text = "duplicado" if duplicate else "recibido"
    reply = reply_header(request, received, MessageType.RECEIPT)
    return serialize(sign_element(build_message(reply, payload), credential))


def verify_receipt(receipt: bytes, original: bytes, trust: TrustStore, *, now: datetime | None = None
                   ) -> VerifiedMessage:
    """Check that `receipt` is a valid signed acknowledgement of exactly `original`, by its recipient."""
    verified = verify_message(receipt, trust, window=None, now=now)
    sent = read_header(parse_untrusted(original))
    payload = verified.root.find(f"{{*}}cuerpo/{{{ACUSE}}}acuse")
    where = Location(xpath="/mensaje/cuerpo/acuse")
    if verified.header.message_type is not MessageType.RECEIPT or payload is None:
        raise fault(FaultCode.AUTH_RECEIPT_MISMATCH, location=where, detail="el mensaje no es un acuse")
    if verified.signer != sent.recipient:
        raise fault(FaultCode.AUTH_RECEIPT_MISMATCH, location=where,
                    detail=f"lo firmó {verified.signer}, no el destinatario {sent.recipient}")
    if payload.findtext(qname(ACUSE, "idMensajeRecibido")) != sent.message_id:
        raise fault(FaultCode.AUTH_RECEIPT_MISMATCH, location=where,
                    detail=f"acusa otro mensaje, no {sent.message_id}")
    if payload.findtext(qname(ACUSE, "hashMensajeRecibido")) != message_digest(original):
        raise fault(FaultCode.AUTH_RECEIPT_MISMATCH, location=where,
                    detail="el resumen acusado no coincide con los bytes del mensaje enviado")
    return verified
