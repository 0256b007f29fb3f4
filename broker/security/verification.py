"""Verification: who signed this message, and may we believe it?

The order is deliberate. The signature's *shape* is checked first (one ds:Signature, last child of
`mensaje`, one Reference URI="" with exactly the enveloped + exclusive C14N transforms, our algorithms):
anything else is a wrapping attempt. Then the certificate (chain to a trusted root, validity, CRL,
key usage), then the cryptography: the fixed-profile fast path (`broker.security.xmldsig`), or signxml,
the reference implementation, when `engine="signxml"`. Only the content reported as signed is used
afterwards, so a header smuggled outside the signed tree is never read. Freshness and replay are checked
last, after the sender is proven, so forged messages cannot poison the replay cache.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree
from signxml import SignatureConfiguration, XMLVerifier
from signxml.algorithms import DigestAlgorithm
from signxml.exceptions import InvalidDigest, InvalidSignature, SignXMLException

from broker.gelxml.envelope import Header, read_header
from broker.gelxml.faults import FaultCode, Location, fault, source_line
from broker.gelxml.parsing import DEFAULT_LIMITS, ParseLimits, parse_untrusted
from broker.security import xmldsig
from broker.security.pki import TrustStore, entity_id_of, subject_label
from broker.security.signing import DS, SIGNATURE_METHODS, Engine

__all__ = [
    "MemoryReplayGuard",
    "ReplayGuard",
    "VerifiedMessage",
    "check_certificate",
    "verify_message",
    "verify_signature",
]

_ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
_SIGNATURE_URIS = {m.value for m in SIGNATURE_METHODS.values()}
_EXPECT = SignatureConfiguration(
    require_x509=True,
    expect_references=1,
    signature_methods=frozenset(SIGNATURE_METHODS.values()),
    digest_algorithms=frozenset({DigestAlgorithm.SHA256}),
)
_SIG_PATH = Location(xpath="/mensaje/ds:Signature")


@dataclass(frozen=True, slots=True)
class VerifiedMessage:
    """A message whose signature verified: the signed content only, and who signed it."""

    root: etree._Element
    header: Header
    signer: str
    certificate: x509.Certificate
    signature: etree._Element


class ReplayGuard(Protocol):
    def first_seen(self, message_id: str, sent_at: datetime) -> bool:
        """Record `message_id`; False when it was already recorded."""
        ...


class MemoryReplayGuard:
    """In-process replay memory. An id is kept for twice the freshness window after it was first seen;
    by then any copy of it is refused as stale anyway."""

    def __init__(self, window: timedelta, *, max_entries: int = 1_000_000) -> None:
        self.window = window
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_seen(self, message_id: str, sent_at: datetime) -> bool:
        now = time.monotonic()
        with self._lock:
            if message_id in self._seen:
                return False
            self._seen[message_id] = now
            horizon = now - 2 * self.window.total_seconds()
            while self._seen and (len(self._seen) > self.max_entries or next(iter(self._seen.values())) < horizon):
                self._seen.popitem(last=False)
            return True


def _ds(name: str) -> str:
    return f"{{{DS}}}{name}"


def _signature_shape(root: etree._Element) -> etree._Element:
    """The one acceptable ds:Signature, or a fault naming what is wrong with its placement."""
    signatures = list(root.iter(_ds("Signature")))
    if not signatures:
        raise fault(FaultCode.AUTH_UNSIGNED, location=Location(xpath="/mensaje"))
    if len(signatures) > 1:
        raise fault(FaultCode.AUTH_SIGNATURE_LOCATION, location=_SIG_PATH,
                    detail=f"hay {len(signatures)} firmas en el documento")
    signature = signatures[0]
    children = [c for c in root if isinstance(c.tag, str)]
    if signature.getparent() is not root or children[-1] is not signature:
        raise fault(FaultCode.AUTH_SIGNATURE_LOCATION, location=Location(line=source_line(signature)),
                    detail="la firma no es el último hijo de mensaje")
    references = signature.findall(f"{_ds('SignedInfo')}/{_ds('Reference')}")
    if len(references) != 1 or references[0].get("URI") != "":
        uris = ", ".join(repr(r.get("URI")) for r in references) or "ninguna"
        raise fault(FaultCode.AUTH_SIGNATURE_LOCATION, location=_SIG_PATH,
                    detail=f"las referencias firmadas son {uris}")
    transforms = [t.get("Algorithm") for t in references[0].iterfind(f"{_ds('Transforms')}/{_ds('Transform')}")]
    if transforms != [_ENVELOPED, _EXC_C14N]:
        raise fault(FaultCode.AUTH_SIGNATURE_LOCATION, location=_SIG_PATH,
                    detail="las transformaciones deben ser enveloped-signature y exc-c14n")
    method = signature.find(f"{_ds('SignedInfo')}/{_ds('SignatureMethod')}")
    digest = references[0].find(_ds("DigestMethod"))
    if method is None or method.get("Algorithm") not in _SIGNATURE_URIS or digest is None \
            or digest.get("Algorithm") != _SHA256:
        raise fault(FaultCode.AUTH_BAD_SIGNATURE, location=_SIG_PATH,
                    detail="algoritmo no admitido; use ECDSA-SHA256 o RSA-SHA256 con resumen SHA-256")
    return signature


def _outside_the_signed_element(root: etree._Element) -> None:
    """Refuse a processing instruction before or after `mensaje`. The signature covers `mensaje` only, but a
    standard verifier (xmlsec1) digests the whole document for URI="", PIs outside the root included: such a
    PI is unsigned content that the recipient would still get and process (an xml-stylesheet, say)."""
    for sibling in (*root.itersiblings(preceding=True), *root.itersiblings()):
        if isinstance(sibling, etree._ProcessingInstruction):
            raise fault(FaultCode.AUTH_BAD_SIGNATURE, location=Location(line=source_line(sibling)),
                        detail=f"la instrucción de procesamiento <?{sibling.target!s}?> está fuera de mensaje "
                               "y la firma no la cubre")


@dataclass(frozen=True, slots=True)
class _Signer:
    """What a signer certificate says regardless of the trust store and the instant: read once per certificate."""

    certificate: x509.Certificate
    entity: str | None
    label: str
    cannot_sign: str | None
    """Why its key usage forbids signing messages, or None."""


_SIGNERS: dict[str, _Signer] = {}
_SIGNERS_MAX = 4096
"""Signers by the KeyInfo certificate text: a platform has one certificate or two per entity, and each message
carries its sender's, so parsing it and reading its extensions once per certificate saves ~100 µs a message."""


def _usage_problem(certificate: x509.Certificate) -> str | None:
    try:
        if certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return "es un certificado de autoridad de certificación"
    except x509.ExtensionNotFound:
        pass
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return "no declara keyUsage"
    if not (usage.digital_signature or usage.content_commitment):
        return "su keyUsage no incluye digitalSignature ni nonRepudiation"
    return None


def _describe(certificate: x509.Certificate) -> _Signer:
    """Read everything the checks use now: cryptography parses lazily, and a malformed field must be a fault here."""
    _ = (certificate.subject, certificate.issuer, certificate.public_key(), certificate.not_valid_before_utc,
         certificate.not_valid_after_utc, certificate.serial_number)
    return _Signer(certificate, entity_id_of(certificate), subject_label(certificate), _usage_problem(certificate))


def _signer_of(signature: etree._Element) -> _Signer:
    nodes = signature.findall(f"{_ds('KeyInfo')}/{_ds('X509Data')}/{_ds('X509Certificate')}")
    if len(nodes) != 1:
        raise fault(FaultCode.AUTH_NO_CERTIFICATE, location=_SIG_PATH,
                    detail=f"se esperaba un certificado y hay {len(nodes)}")
    text = "".join((nodes[0].text or "").split())
    known = _SIGNERS.get(text)
    if known is not None:
        return known
    try:
        signer = _describe(x509.load_der_x509_certificate(base64.b64decode(text)))
    except Exception as exc:  # the certificate is the sender's bytes: whatever cryptography cannot read in it
        raise fault(FaultCode.AUTH_NO_CERTIFICATE, location=_SIG_PATH,
                    detail=f"certificado ilegible: {type(exc).__name__}: {exc}") from None
    if len(_SIGNERS) >= _SIGNERS_MAX:
        _SIGNERS.clear()
    _SIGNERS[text] = signer
    return signer


def check_certificate(certificate: x509.Certificate, trust: TrustStore, at: datetime) -> None:
    """Chain, validity period, revocation and key usage of a signer certificate at instant `at`."""
    _check_signer(_describe(certificate), trust, at)


def _check_signer(signer: _Signer, trust: TrustStore, at: datetime) -> None:
    certificate, subject = signer.certificate, signer.label
    if trust.issuer_of(certificate) is None:
        raise fault(FaultCode.AUTH_UNTRUSTED, location=_SIG_PATH, subject=subject)
    if at < certificate.not_valid_before_utc:
        raise fault(FaultCode.AUTH_NOT_YET_VALID, location=_SIG_PATH, subject=subject,
                    not_before=certificate.not_valid_before_utc.isoformat())
    if at > certificate.not_valid_after_utc:
        raise fault(FaultCode.AUTH_EXPIRED, location=_SIG_PATH, subject=subject,
                    not_after=certificate.not_valid_after_utc.isoformat())
    revoked = trust.revocation_of(certificate)
    if revoked is not None and revoked.revocation_date_utc <= at:  # a signature made before stays evidence
        raise fault(FaultCode.AUTH_REVOKED, location=_SIG_PATH, subject=subject,
                    serial=format(certificate.serial_number, "x"),
                    revoked_at=revoked.revocation_date_utc.isoformat())
    if signer.cannot_sign is not None:
        raise fault(FaultCode.AUTH_KEY_USAGE, location=_SIG_PATH, subject=subject, detail=signer.cannot_sign)


def verify_signature(root: etree._Element, trust: TrustStore, *, at: datetime | None = None,
                     engine: Engine = "fast") -> tuple[etree._Element, x509.Certificate, etree._Element]:
    """Check shape, certificate and signature; return (signed content, certificate, ds:Signature)."""
    signed, signer, signature = _verify_signature(root, trust, at=at, engine=engine)
    return signed, signer.certificate, signature


def _verify_signature(root: etree._Element, trust: TrustStore, *, at: datetime | None,
                      engine: Engine) -> tuple[etree._Element, _Signer, etree._Element]:
    now = at or datetime.now(UTC)
    signature = _signature_shape(root)
    _outside_the_signed_element(root)
    signer = _signer_of(signature)
    _check_signer(signer, trust, now)
    if engine == "signxml":
        return _verify_with_signxml(root, signer.certificate), signer, signature
    try:
        signed = xmldsig.verify(root, signature, signer.certificate)
    except xmldsig.SignatureError as exc:
        raise fault(FaultCode.AUTH_BAD_SIGNATURE, location=_SIG_PATH, detail=_reason(exc)) from None
    return signed, signer, signature


def _verify_with_signxml(root: etree._Element, certificate: x509.Certificate) -> etree._Element:
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    try:
        result = XMLVerifier().verify(root, x509_cert=pem, expect_config=_EXPECT)
    except (SignXMLException, ValueError, TypeError, etree.Error) as exc:  # untrusted input: every failure refuses
        raise fault(FaultCode.AUTH_BAD_SIGNATURE, location=_SIG_PATH, detail=_reason(exc)) from None
    signed = result.signed_xml if not isinstance(result, list) else None
    if signed is None or signed.tag != root.tag:
        raise fault(FaultCode.AUTH_SIGNATURE_LOCATION, location=_SIG_PATH,
                    detail="la referencia no cubre el mensaje completo")
    return signed


def _reason(exc: Exception) -> str:
    if isinstance(exc, InvalidDigest | xmldsig.DigestMismatch):
        return "el resumen del contenido firmado no coincide"
    if isinstance(exc, InvalidSignature | xmldsig.SignatureValueMismatch):
        return "el valor de la firma no corresponde a la clave del certificado"
    if isinstance(exc, xmldsig.OutsideProfile):
        return f"la firma no sigue el perfil admitido: {exc}"
    return f"firma ilegible: {exc}"


def verify_message(message: bytes | etree._Element, trust: TrustStore, *, replay: ReplayGuard | None = None,
                   window: timedelta | None = timedelta(seconds=300), now: datetime | None = None,
                   limits: ParseLimits = DEFAULT_LIMITS, engine: Engine = "fast") -> VerifiedMessage:
    """Authenticate a message; raise `GelFault` with a GEL-AUTH-* or GEL-DUP-* code when it fails.

    `now` is the instant certificates must be valid at (for evidence checked years later, pass the time
    stamp's time); `window=None` skips the freshness check, `replay=None` the duplicate check.
    """
    root = parse_untrusted(message, limits) if isinstance(message, bytes) else message
    instant = now or datetime.now(UTC)
    signed, signer, signature = _verify_signature(root, trust, at=instant, engine=engine)
    certificate = signer.certificate
    header = read_header(signed)
    if signer.entity != header.sender:
        raise fault(FaultCode.AUTH_SENDER_MISMATCH, location=Location(xpath="/mensaje/encabezado/entidadOrigen"),
                    claimed=header.sender, signer=signer.entity or signer.label)
    if window is not None and abs(instant - header.sent_at) > window:
        raise fault(FaultCode.DUP_STALE, location=Location(xpath="/mensaje/encabezado/fechaHoraEnvio"),
                    sent=header.sent_at.isoformat(), window=int(window.total_seconds()),
                    now=instant.replace(microsecond=0).isoformat())
    if replay is not None and not replay.first_seen(header.message_id, header.sent_at):
        raise fault(FaultCode.DUP_REPLAY, location=Location(xpath="/mensaje/encabezado/idMensaje"),
                    message_id=header.message_id)
    return VerifiedMessage(root=signed, header=header, signer=header.sender, certificate=certificate,
                           signature=signature)
