"""The platform time-stamping authority (RFC 3161) and XAdES-T style attachment of its tokens.

A token is a CMS SignedData over a TSTInfo (RFC 3161 §2.4.2), signed by the TSA certificate with the
signed attributes content-type, signing-time, message-digest and signingCertificateV2 (RFC 5035), and
always carrying the TSA certificate. `openssl ts -verify` accepts `TimeStampToken.response_der()`.

Verification reads a token with asn1crypto (the reference, any TSA) until one of its TSA's tokens has verified;
from then on that TSA's tokens are read by the same template the authority writes them with, and one is trusted
only if encoding what was read from it gives back its exact bytes (`verify_token`).

Batch stamping (as X-Road does) stamps the root of a SHA-256 Merkle tree once and gives each digest
its path to the root. Messages are stamped on their ds:SignatureValue (XAdES SignatureTimeStamp); the
token goes in an unreferenced ds:Object inside the ds:Signature, which the enveloped-signature
transform removes from the signed data, so the sender's signature stays valid.
"""

from __future__ import annotations

import base64
import collections
import datetime as dt
import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID
from lxml import etree

from broker.gelxml.faults import FaultCode, GelFault, fault
from broker.gelxml.parsing import parse_untrusted
from broker.security.pki import Credential, TrustStore, subject_label

__all__ = [
    "DEFAULT_POLICY",
    "DS",
    "XADES",
    "BatchTimeStamp",
    "TimeStampAuthority",
    "TimeStampInfo",
    "TimeStampToken",
    "attach_timestamp",
    "extract_timestamp",
    "merkle_root",
    "signature_value_digest",
    "timestamp_message",
    "verify_batch_stamp",
    "verify_message_timestamp",
    "verify_token",
]

XADES = "http://uri.etsi.org/01903/v1.3.2#"
DS = "http://www.w3.org/2000/09/xmldsig#"
DEFAULT_POLICY = "1.3.6.1.4.1.57264.1.1"
DIGEST_SIZE = 32
MAX_CLOCK_SKEW = dt.timedelta(minutes=5)
Side = Literal["L", "R"]


# -- values ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TimeStampToken:
    """An RFC 3161 TimeStampToken (CMS ContentInfo) with the TSTInfo fields callers need."""

    der: bytes
    gen_time: dt.datetime
    serial: int
    digest: bytes
    policy: str

    def response_der(self) -> bytes:
        """A DER TimeStampResp (status granted) wrapping this token: what `openssl ts -verify -in` reads."""
        response = tsp.TimeStampResp({
            "status": tsp.PKIStatusInfo({"status": "granted"}),
            "time_stamp_token": cms.ContentInfo.load(self.der),
        })
        return response.dump()

    @classmethod
    def from_der(cls, der: bytes) -> TimeStampToken:
        """Parse a token; anything that is not a SignedData over a TSTInfo is a TS_INVALID fault."""
        known = _recognise(der)
        if known is not None:
            fields = known.fields
            return cls(der=der, gen_time=fields.gen_time, serial=fields.serial, digest=fields.digest,
                       policy=known.encoder.policy)
        _, tst_info = _parse(der)
        return _token_of(der, tst_info)


@dataclass(frozen=True, slots=True)
class TimeStampInfo:
    """What a verified token asserts."""

    gen_time: dt.datetime
    serial: int
    policy: str
    tsa: str
    nonce: int | None = None


@dataclass(frozen=True, slots=True)
class BatchTimeStamp:
    """One digest of a batch: the token over the Merkle root and the path from the digest's leaf to it.

    Each path step is (side, sibling hash), side being where the sibling sits: "L" means
    parent = H(0x01 + sibling + node), "R" means parent = H(0x01 + node + sibling).
    """

    token: TimeStampToken
    digest: bytes
    path: tuple[tuple[str, bytes], ...]


# -- the authority -----------------------------------------------------------------------------
class TimeStampAuthority:
    """Signs RFC 3161 tokens with the TSA credential (EC P-256 or RSA)."""

    def __init__(self, credential: Credential, *, policy: str = DEFAULT_POLICY,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.credential = credential
        self.policy = policy
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        # asn1crypto re-encodes values it has handed out, so keep DER and parse a fresh copy per token
        self._certificate_der = credential.certificate.public_bytes(serialization.Encoding.DER)
        self._signing_certificate_der = _signing_certificate_v2(self._certificate()).dump()
        self._lock = threading.Lock()
        self._last_micros = 0
        self._instance = secrets.randbits(32)
        self._encoder: _TokenEncoder | None = None
        self._encoder = self._fast_encoder()

    def _certificate(self) -> asn1_x509.Certificate:
        return asn1_x509.Certificate.load(self._certificate_der)

    def _next_serial(self) -> int:
        """Microseconds since the epoch (strictly increasing per authority) joined to a random instance tag."""
        with self._lock:
            self._last_micros = max(time.time_ns() // 1000, self._last_micros + 1)
            return (self._last_micros << 32) | self._instance

    def stamp(self, digest: bytes, *, nonce: int | None = None) -> TimeStampToken:
        """A token over `digest`, the SHA-256 of the stamped data."""
        if len(digest) != DIGEST_SIZE:
            raise ValueError(f"se esperaba un resumen SHA-256 de {DIGEST_SIZE} bytes, llegaron {len(digest)}")
        gen_time = self._clock().astimezone(dt.UTC).replace(microsecond=0)
        serial = self._next_serial()
        if self._encoder is not None:
            der = self._encoder.token(digest, serial, gen_time, nonce, self._signature)
        else:
            der = self._reference_token(digest, serial, gen_time, nonce, self._signature)
        return TimeStampToken(der=der, gen_time=gen_time, serial=serial, digest=bytes(digest), policy=self.policy)

    def _signature(self, signed_attributes: bytes) -> tuple[bytes, str]:
        key = self.credential.private_key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(signed_attributes, ec.ECDSA(hashes.SHA256())), "sha256_ecdsa"
        return key.sign(signed_attributes, padding.PKCS1v15(), hashes.SHA256()), "sha256_rsa"

    def _reference_token(self, digest: bytes, serial: int, gen_time: dt.datetime, nonce: int | None,
                         sign: Callable[[bytes], tuple[bytes, str]]) -> bytes:
        """The token built value by value with asn1crypto: the reference the fast encoder must equal."""
        fields: dict[str, object] = {
            "version": "v1",
            "policy": self.policy,
            "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": digest},
            "serial_number": serial,
            "gen_time": gen_time,
            "accuracy": {"seconds": 1},
            "ordering": False,
            "tsa": asn1_x509.GeneralName({"directory_name": self._certificate().subject}),
        }
        if nonce is not None:
            fields["nonce"] = nonce
        content = tsp.TSTInfo(fields).dump()
        attributes = cms.CMSAttributes([
            cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
            cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": gen_time})]}),
            cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(content).digest()]}),
            cms.CMSAttribute({"type": "signing_certificate_v2", "values": [
                tsp.SigningCertificateV2.load(self._signing_certificate_der)]}),
        ])
        signature, algorithm = sign(attributes.dump())
        certificate = self._certificate()
        signer = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber({
                "issuer": certificate.issuer, "serial_number": certificate.serial_number,
            })}),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": attributes,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": algorithm}),
            "signature": signature,
        })
        signed_data = cms.SignedData({
            "version": "v3",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {"content_type": "tst_info", "content": core.ParsableOctetString(content)},
            "certificates": [self._certificate()],
            "signer_infos": [signer],
        })
        return cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()

    def _fast_encoder(self) -> _TokenEncoder | None:
        """The template encoder, if it reproduces the reference byte for byte (checked once, here)."""
        algorithm = _signature_algorithm_of(self.credential.private_key)
        encoder = _TokenEncoder(self._certificate_der, self.policy, algorithm)
        moment = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        for nonce in (None, 0x0123456789ABCDEF):
            def fixed(_attributes: bytes) -> tuple[bytes, str]:
                return b"\x30\x06\x02\x01\x01\x02\x01\x02", encoder.algorithm
            for serial in (1, 0x80, (1_700_000_000_000_000 << 32) | 0xFFFFFFFF):
                reference = self._reference_token(bytes(range(32)), serial, moment, nonce, fixed)
                if encoder.token(bytes(range(32)), serial, moment, nonce, fixed) != reference:
                    return None
        return encoder

    def stamp_batch(self, digests: Sequence[bytes]) -> list[BatchTimeStamp]:
        """Stamp many digests with one token over their Merkle root; each gets its path to the root."""
        if not digests:
            return []
        root, paths = _merkle(digests)
        token = self.stamp(root)
        return [BatchTimeStamp(token, bytes(d), path) for d, path in zip(digests, paths, strict=True)]


# -- the token layout: DER by template ---------------------------------------------------------
def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def _tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    return (bytes((tag, size)) if size < 0x80 else bytes((tag,)) + _length(size)) + content


def _unsigned(value: int) -> bytes:
    """The content octets of a DER INTEGER holding `value` >= 0."""
    return value.to_bytes(value.bit_length() // 8 + 1, "big", signed=False)


def _oid(dotted: str) -> bytes:
    return core.ObjectIdentifier(dotted).dump()


@dataclass(frozen=True, slots=True)
class _Slot:
    """A primitive element whose content changes from token to token."""

    name: str
    tag: int
    optional: bool = False


@dataclass(frozen=True, slots=True)
class _Fixed:
    """A whole element that depends on the TSA (its certificate, policy or key type) and not on the token."""

    name: str


@dataclass(frozen=True, slots=True)
class _Node:
    """A constructed element. A named one is kept whole when a token is read, and may be given ready-made
    when one is written."""

    tag: int
    parts: tuple[_Part, ...]
    name: str = ""


_Part: TypeAlias = bytes | _Slot | _Fixed | _Node  # bytes: a whole element, the same for every TSA
_SHA256 = algos.DigestAlgorithm({"algorithm": "sha256"}).dump()

_TST_INFO = _Node(0x30, (
    b"\x02\x01\x01", _Fixed("policy"),
    _Node(0x30, (_SHA256, _Slot("digest", 0x04))),
    _Slot("serial", 0x02), _Slot("gen_time", 0x18), tsp.Accuracy({"seconds": 1}).dump(),
    _Slot("nonce", 0x02, optional=True), _Fixed("tsa_name"),
), name="tst_info")

_SIGNED_ATTRIBUTES = _Node(0xA0, (
    cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}).dump(),
    _Node(0x30, (_oid("1.2.840.113549.1.9.5"), _Node(0x31, (_Slot("signing_time", 0x17),)))),
    _Node(0x30, (_oid("1.2.840.113549.1.9.4"), _Node(0x31, (_Slot("message_digest", 0x04),)))),
    _Fixed("signing_certificate"),
), name="signed_attributes")

_TOKEN = _Node(0x30, (
    _oid("1.2.840.113549.1.7.2"),
    _Node(0xA0, (_Node(0x30, (
        b"\x02\x01\x03", _tlv(0x31, _SHA256),
        _Node(0x30, (_oid("1.2.840.113549.1.9.16.1.4"), _Node(0xA0, (_Node(0x04, (_TST_INFO,)),)))),
        _Node(0xA0, (_Fixed("certificate"),)),
        _Node(0x31, (_Node(0x30, (
            b"\x02\x01\x01", _Fixed("sid"), _SHA256, _SIGNED_ATTRIBUTES, _Fixed("signature_algorithm"),
            _Slot("signature", 0x04),
        )),)),
    )),)),
))
"""Every token of our TSA, the one description of its layout: a ContentInfo of SignedData v3 over a TSTInfo
(the nonce optional), signed attributes content-type, signing-time, message-digest and signingCertificateV2,
the TSA certificate, one SignerInfo v1 by issuer and serial number."""


def _bind(part: _Part, fixed: Mapping[str, bytes]) -> _Part:
    """`part` with the TSA's fixed parts filled in and every element without a slot encoded once."""
    if isinstance(part, bytes | _Slot):
        return part
    if isinstance(part, _Fixed):
        return fixed[part.name]
    children: list[_Part] = []
    for child in (_bind(c, fixed) for c in part.parts):
        last = children[-1] if children else None
        if isinstance(child, bytes) and isinstance(last, bytes):
            children[-1] = last + child
        else:
            children.append(child)
    if not part.name and all(isinstance(c, bytes) for c in children):
        return _tlv(part.tag, b"".join(c for c in children if isinstance(c, bytes)))
    return _Node(part.tag, tuple(children), part.name)


def _encode(part: _Part, slots: Mapping[str, bytes | None], built: Mapping[str, bytes]) -> bytes:
    """A part bound by `_bind`, with the slots' contents and the named elements already encoded."""
    if isinstance(part, bytes):
        return part
    if isinstance(part, _Slot):
        content = slots[part.name]
        return b"" if content is None else _tlv(part.tag, content)
    if isinstance(part, _Fixed):
        raise TypeError(f"parte sin vincular: {part.name}")
    ready = built.get(part.name) if part.name else None
    if ready is not None:
        return ready
    return _tlv(part.tag, b"".join([_encode(child, slots, built) for child in part.parts]))


class _Mismatch(Exception):
    """The bytes do not follow `_TOKEN`'s shape."""


def _header(der: bytes, at: int, end: int) -> tuple[int, int, int]:
    """The tag of the element at `at`, where its content starts and where it ends."""
    if at + 2 > end:
        raise _Mismatch
    tag, first = der[at], der[at + 1]
    at += 2
    if first >= 0x80:
        count = first & 0x7F
        if not 0 < count <= 4 or at + count > end:
            raise _Mismatch
        first = int.from_bytes(der[at:at + count], "big")
        at += count
    if at + first > end:
        raise _Mismatch
    return tag, at, at + first


def _decode(part: _Part, der: bytes, at: int, end: int, found: dict[str, bytes]) -> int:
    """Read `part` from der[at:end] into `found` (a slot's content, a fixed or named element whole) and return
    where it ends. Fixed parts are only delimited here: `_TokenEncoder.render` checks them."""
    if isinstance(part, bytes):
        if at + len(part) > end or not der.startswith(part, at):
            raise _Mismatch
        return at + len(part)
    if isinstance(part, _Slot) and part.optional and (at >= end or der[at] != part.tag):
        return at
    tag, start, stop = _header(der, at, end)
    if isinstance(part, _Fixed):
        found[part.name] = der[at:stop]
        return stop
    if tag != part.tag:
        raise _Mismatch
    if isinstance(part, _Slot):
        found[part.name] = der[start:stop]
        return stop
    for child in part.parts:
        start = _decode(child, der, start, stop, found)
    if start != stop:
        raise _Mismatch
    if part.name:
        found[part.name] = der[at:stop]
    return stop


def _slot_contents(digest: bytes, serial: int, gen_time: dt.datetime, nonce: int | None) -> dict[str, bytes | None]:
    return {
        "digest": digest, "serial": _unsigned(serial),
        "gen_time": gen_time.strftime("%Y%m%d%H%M%SZ").encode("ascii"),
        "signing_time": gen_time.strftime("%y%m%d%H%M%SZ").encode("ascii"),
        "nonce": None if nonce is None else _unsigned(nonce),
    }


@dataclass(frozen=True, slots=True)
class _TokenFields:
    """What varies between two tokens of one TSA."""

    digest: bytes
    serial: int
    gen_time: dt.datetime
    nonce: int | None
    message_digest: bytes
    signature: bytes

    @classmethod
    def read(cls, found: Mapping[str, bytes]) -> _TokenFields:
        """The values of the slots `_decode` found; ValueError for what `_slot_contents` cannot have written
        (whatever else it cannot have written shows when the fields are encoded again)."""
        serial = int.from_bytes(found["serial"], "big", signed=True)
        nonce = found.get("nonce")
        nonce_value = None if nonce is None else int.from_bytes(nonce, "big", signed=True)
        text = found["gen_time"].decode("ascii")
        if serial < 0 or (nonce_value or 0) < 0 or len(text) != 15 or not text[:14].isdigit():
            raise ValueError("no es un campo escrito por la plantilla")
        gen_time = dt.datetime(int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12]),
                               int(text[12:14]), tzinfo=dt.UTC)
        return cls(found["digest"], serial, gen_time, nonce_value, found["message_digest"], found["signature"])

    def slots(self) -> dict[str, bytes | None]:
        return {**_slot_contents(self.digest, self.serial, self.gen_time, self.nonce),
                "message_digest": self.message_digest, "signature": self.signature}


def _signature_algorithm_of(key: object) -> str | None:
    """The asn1crypto name of the signature algorithm the template writes for a key of this type."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return "sha256_ecdsa"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "sha256_rsa"
    return None


class _TokenEncoder:
    """`_TOKEN` for one TSA (certificate, policy, key type) with its fixed parts pre-encoded.

    asn1crypto spends ~1 ms building each token value by value (75 % of the gateway's admission cost, measured
    with cProfile on batches of 32); this spends tens of microseconds. The TSA checks at start-up that it
    reproduces asn1crypto's encoding byte for byte, else it is not used; the verifier uses it to recognise the
    TSA's tokens by encoding what it read from one again (`_recognise`)."""

    def __init__(self, certificate_der: bytes, policy: str, algorithm: str | None) -> None:
        if algorithm is None:
            raise ValueError("la plantilla solo conoce claves EC y RSA")
        # asn1crypto re-encodes values it has handed out: a fresh copy of the certificate for each part
        def certificate() -> asn1_x509.Certificate:
            return asn1_x509.Certificate.load(certificate_der)

        self.algorithm = algorithm
        self.policy = policy
        fixed = {
            "policy": _oid(policy),
            "tsa_name": _tlv(0xA0, asn1_x509.GeneralName({"directory_name": certificate().subject}).dump()),
            "signing_certificate": cms.CMSAttribute({"type": "signing_certificate_v2", "values": [
                _signing_certificate_v2(certificate())]}).dump(),
            "certificate": certificate_der,
            "sid": cms.IssuerAndSerialNumber({"issuer": certificate().issuer,
                                              "serial_number": certificate().serial_number}).dump(),
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": algorithm}).dump(),
        }
        self._token = _bind(_TOKEN, fixed)
        self._tst_info = _bind(_TST_INFO, fixed)
        self._signed_attributes = _bind(_SIGNED_ATTRIBUTES, fixed)

    def token(self, digest: bytes, serial: int, gen_time: dt.datetime, nonce: int | None,
              sign: Callable[[bytes], tuple[bytes, str]]) -> bytes:
        slots = _slot_contents(digest, serial, gen_time, nonce)
        content = _encode(self._tst_info, slots, {})
        slots["message_digest"] = hashlib.sha256(content).digest()
        attributes = _encode(self._signed_attributes, slots, {})
        slots["signature"], algorithm = sign(b"\x31" + attributes[1:])
        if algorithm != self.algorithm:
            raise ValueError(f"la plantilla firma con {self.algorithm}, no con {algorithm}")
        return _encode(self._token, slots, {"tst_info": content, "signed_attributes": attributes})

    def render(self, fields: _TokenFields) -> bytes:
        """The token with these fields, every byte encoded here (nothing taken from a token read)."""
        return _encode(self._token, fields.slots(), {})


# -- Merkle tree -------------------------------------------------------------------------------
def _leaf(digest: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + digest).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _merkle(digests: Sequence[bytes]) -> tuple[bytes, list[tuple[tuple[str, bytes], ...]]]:
    """The root over `digests` and, per digest, its path (sibling side, sibling hash) from leaf to root."""
    level = [_leaf(d) for d in digests]
    positions = list(range(len(digests)))  # where each digest's ancestor sits in `level`
    paths: list[list[tuple[str, bytes]]] = [[] for _ in digests]
    while len(level) > 1:
        for i, at in enumerate(positions):
            if at % 2 == 1:
                paths[i].append(("L", level[at - 1]))
            elif at + 1 < len(level):
                paths[i].append(("R", level[at + 1]))
            positions[i] = at // 2
        pairs = [_node(level[j], level[j + 1]) for j in range(0, len(level) - 1, 2)]
        level = pairs + ([level[-1]] if len(level) % 2 else [])  # an odd node is promoted unchanged
    return level[0], [tuple(p) for p in paths]


def merkle_root(digest: bytes, path: Sequence[tuple[str, bytes]]) -> bytes:
    """The root a digest and its path lead to."""
    node = _leaf(digest)
    for side, sibling in path:
        if side == "L":
            node = _node(sibling, node)
        elif side == "R":
            node = _node(node, sibling)
        else:
            raise fault(FaultCode.TS_MISMATCH, detail=f"la ruta del lote tiene un lado desconocido {side!r}")
    return node


def verify_batch_stamp(stamp: BatchTimeStamp, trust: TrustStore) -> TimeStampInfo:
    """Check that the digest's path leads to the stamped root, then verify the token itself."""
    root = merkle_root(stamp.digest, stamp.path)
    if root != stamp.token.digest:
        raise fault(FaultCode.TS_MISMATCH, detail=(
            f"la raíz del árbol de Merkle calculada con el resumen y la ruta ({root.hex()}) no es la que "
            f"selló la autoridad ({stamp.token.digest.hex()})"
        ))
    return verify_token(stamp.token, digest=root, trust=trust)


# -- parsing and verification ------------------------------------------------------------------
def _invalid(detail: str) -> GelFault:
    return fault(FaultCode.TS_INVALID, detail=detail)


def _parse(der: bytes) -> tuple[cms.SignedData, tsp.TSTInfo]:
    try:
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "signed_data":
            raise _invalid(f"el contenido CMS es {info['content_type'].native}, se esperaba SignedData")
        signed_data: cms.SignedData = info["content"]
        encap = signed_data["encap_content_info"]
        if encap["content_type"].native != "tst_info":
            raise _invalid(f"el contenido firmado es {encap['content_type'].native}, se esperaba TSTInfo")
        tst_info: tsp.TSTInfo = encap["content"].parsed
        tst_info.native  # noqa: B018 - force a full parse so later access cannot fail
        return signed_data, tst_info
    except GelFault:
        raise
    except Exception as exc:  # asn1crypto raises ValueError, TypeError, KeyError... on garbage
        raise _invalid(f"no es un TimeStampToken DER bien formado ({exc.__class__.__name__})") from exc


def _token_of(der: bytes, tst_info: tsp.TSTInfo) -> TimeStampToken:
    imprint = tst_info["message_imprint"]
    return TimeStampToken(
        der=der,
        gen_time=tst_info["gen_time"].native.astimezone(dt.UTC),
        serial=tst_info["serial_number"].native,
        digest=imprint["hashed_message"].native,
        policy=tst_info["policy"].dotted,
    )


def _signing_certificate_v2(certificate: asn1_x509.Certificate) -> tsp.SigningCertificateV2:
    return tsp.SigningCertificateV2({"certs": [tsp.ESSCertIDv2({
        "cert_hash": hashlib.sha256(certificate.dump()).digest(),
        "issuer_serial": tsp.IssuerSerial({
            "issuer": [asn1_x509.GeneralName({"directory_name": certificate.issuer})],
            "serial_number": certificate.serial_number,
        }),
    })]})


def _attribute(signer: cms.SignerInfo, name: str) -> core.Asn1Value:
    values = [a["values"] for a in signer["signed_attrs"] if a["type"].native == name]
    if len(values) != 1 or len(values[0]) != 1:
        raise _invalid(f"la firma del sello debe tener exactamente un atributo firmado {name}")
    return values[0][0]


def _plain(identifier: algos.DigestAlgorithm | algos.SignedDigestAlgorithm) -> str:
    """The algorithm's name, or "" when its parameters are neither absent nor NULL: they are not signed, so
    anything else there would let the token's bytes change unnoticed."""
    return identifier["algorithm"].native if identifier["parameters"].dump() in (b"", b"\x05\x00") else ""


_SIGNATURE_SCHEMES = {"sha256_ecdsa": "ecdsa", "sha256_rsa": "rsassa_pkcs1v15", "rsassa_pkcs1v15": "rsassa_pkcs1v15"}
"""Accepted SignerInfo signature algorithms (asn1crypto names; rsassa_pkcs1v15 is rsaEncryption, whose hash is
the SignerInfo digest algorithm, sha256) and the scheme each is verified with."""


@dataclass(frozen=True, slots=True)
class _TrustVerdict:
    """A trust store's answers about one certificate. A TrustStore never changes (LiveTrustStore hands out a new
    one when root-ca.pem or crl.pem changes), so they hold while its roots and CRLs are the same objects."""

    roots: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...]
    issued: bool
    revoked: x509.RevokedCertificate | None


class _TsaCertificate:
    """A certificate that signed a token, with what every verification asks of it worked out once."""

    def __init__(self, der: bytes, certificate: x509.Certificate) -> None:
        try:
            self.public_key: CertificatePublicKeyTypes = certificate.public_key()
            self.label = subject_label(certificate)
            try:
                usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            except x509.ExtensionNotFound:
                usages = x509.ExtendedKeyUsage([])
            self.timestamping = ExtendedKeyUsageOID.TIME_STAMPING in usages
            self.not_before, self.not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
        except Exception as exc:  # cryptography parses a certificate lazily and has many ways to refuse one
            raise _invalid(f"el certificado de la TSA incluido en el sello no se puede leer "
                           f"({exc.__class__.__name__})") from exc
        self.der = der
        self.certificate = certificate
        self.encoder: _TokenEncoder | None = None
        self.candidate: _TokenEncoder | None = None
        self._verdict: _TrustVerdict | None = None

    def verdict(self, trust: TrustStore) -> _TrustVerdict:
        known = self._verdict
        if known is None or known.roots is not trust.roots or known.crls is not trust.crls:
            known = _TrustVerdict(trust.roots, trust.crls, issued=trust.issuer_of(self.certificate) is not None,
                                  revoked=trust.revocation_of(self.certificate))
            self._verdict = known
        return known


_KNOWN_TSAS: dict[bytes, _TsaCertificate] = {}
"""TSA certificates (by DER) that signed a token which verified in full, each with its template if its tokens
follow `_TOKEN`. Only a verified token adds one, so forged tokens cannot fill it."""
_KNOWN_TSAS_MAX = 64
_STATS: collections.Counter[str] = collections.Counter()
"""How many tokens `verify_token` verified by template ("template") and in full ("full"): for tests."""


def _load_certificate(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion) as exc:
        raise _invalid(f"un certificado incluido en el sello está dañado ({exc.__class__.__name__})") from exc


def _signer_certificate(signed_data: cms.SignedData, signer: cms.SignerInfo) -> _TsaCertificate:
    """The embedded certificate the signer identifies.

    Certificates are read with `cryptography`: asn1crypto re-encodes values once their children are
    touched, which is slow and would hash a re-encoding instead of the bytes received.
    """
    sid = signer["sid"]
    if sid.name != "issuer_and_serial_number":
        raise _invalid("el firmante del sello no se identifica por emisor y número de serie")
    issuer, serial = sid.chosen["issuer"].dump(), sid.chosen["serial_number"].native
    for choice in signed_data["certificates"] or []:
        if choice.name != "certificate":
            continue
        der = choice.chosen.dump()
        known = _KNOWN_TSAS.get(der)
        certificate = known.certificate if known is not None else _load_certificate(der)
        if certificate.serial_number == serial and certificate.issuer.public_bytes() == issuer:
            return known if known is not None else _TsaCertificate(der, certificate)
    raise _invalid("el sello no incluye el certificado de la autoridad de estampado que lo firmó")


def _check_imprint(stamped: bytes, expected: bytes) -> None:
    if stamped != expected:
        raise fault(FaultCode.TS_MISMATCH, detail=(
            f"el sello ampara el resumen {stamped.hex()} y el contenido tiene {expected.hex()}"
        ))


def _check_not_future(gen_time: dt.datetime, at: dt.datetime | None) -> None:
    now = at or dt.datetime.now(dt.UTC)
    if gen_time > now + MAX_CLOCK_SKEW:
        raise _invalid(f"la fecha del sello {gen_time.isoformat()} es posterior a {now.isoformat()}")


def _check_message_digest(attribute: object, content: bytes) -> None:
    if attribute != hashlib.sha256(content).digest():
        raise _invalid("el atributo message-digest no coincide con el SHA-256 del TSTInfo: el contenido fue alterado")


def _check_signature_value(tsa: _TsaCertificate, scheme: str, signature: bytes, signed: bytes) -> None:
    """`signed` is the DER SET of the signed attributes."""
    key = tsa.public_key
    try:
        if isinstance(key, ec.EllipticCurvePublicKey) and scheme == "ecdsa":
            key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey) and scheme == "rsassa_pkcs1v15":
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise _invalid(f"el algoritmo de firma {scheme} no corresponde a la clave del certificado de la TSA")
    except InvalidSignature as exc:
        raise _invalid("la firma criptográfica del sello no verifica con el certificado de la TSA") from exc


def _check_signature(signed_data: cms.SignedData, tst_info: tsp.TSTInfo) -> _TsaCertificate:
    """Verify the CMS signature; return the TSA certificate it was made with."""
    if signed_data["version"].native != "v3":
        raise _invalid(f"la versión de SignedData es {signed_data['version'].native}, se esperaba v3")
    if [_plain(a) for a in signed_data["digest_algorithms"]] != ["sha256"]:
        raise _invalid("la lista de algoritmos de resumen de SignedData debe ser solo sha256")
    signers = signed_data["signer_infos"]
    if len(signers) != 1:
        raise _invalid(f"el sello debe tener un único firmante y tiene {len(signers)}")
    signer: cms.SignerInfo = signers[0]
    if signer["version"].native != "v1":
        raise _invalid(f"la versión de SignerInfo es {signer['version'].native}, se esperaba v1")
    if _plain(signer["digest_algorithm"]) != "sha256":
        raise _invalid(f"el algoritmo de resumen de la firma es {signer['digest_algorithm']['algorithm'].native}, "
                       "solo se admite sha256")
    if not signer["signed_attrs"]:
        raise _invalid("la firma del sello no tiene atributos firmados")
    signed_bytes = b"\x31" + signer["signed_attrs"].dump()[1:]  # the received bytes, [0] IMPLICIT re-tagged as SET
    if _attribute(signer, "content_type").native != "tst_info":
        raise _invalid("el atributo content-type firmado no es id-ct-TSTInfo")
    _check_message_digest(_attribute(signer, "message_digest").native,
                          signed_data["encap_content_info"]["content"].contents)
    tsa = _signer_certificate(signed_data, signer)
    ess: tsp.SigningCertificateV2 = _attribute(signer, "signing_certificate_v2")
    first = ess["certs"][0]
    if first["hash_algorithm"]["algorithm"].native != "sha256" or \
            first["cert_hash"].native != hashlib.sha256(tsa.der).digest():
        raise _invalid("el atributo signingCertificateV2 no corresponde al certificado incluido en el sello")
    scheme = _SIGNATURE_SCHEMES.get(_plain(signer["signature_algorithm"]))
    if scheme is None:
        raise _invalid(f"el algoritmo de firma del sello es {signer['signature_algorithm']['algorithm'].native}: "
                       "solo se admiten ECDSA y RSA PKCS#1 v1.5 con SHA-256")
    _check_signature_value(tsa, scheme, signer["signature"].native, signed_bytes)
    return tsa


def _check_trust(tsa: _TsaCertificate, gen_time: dt.datetime, trust: TrustStore) -> None:
    certificate, label = tsa.certificate, tsa.label
    verdict = tsa.verdict(trust)
    if not verdict.issued:
        raise fault(FaultCode.TS_UNTRUSTED, detail=(
            f"el certificado de {label} (emisor {certificate.issuer.rfc4514_string()}) no fue emitido por una "
            "raíz de confianza de la plataforma"
        ))
    if not tsa.timestamping:
        raise fault(FaultCode.TS_UNTRUSTED, detail=(
            f"el certificado de {label} no tiene el uso extendido timeStamping (1.3.6.1.5.5.7.3.8)"
        ))
    if not tsa.not_before <= gen_time <= tsa.not_after:
        raise fault(FaultCode.TS_UNTRUSTED, detail=(
            f"el certificado de {label} no era válido en la fecha del sello {gen_time.isoformat()} (vigente de "
            f"{tsa.not_before.isoformat()} a {tsa.not_after.isoformat()})"
        ))
    if verdict.revoked is not None:
        raise fault(FaultCode.TS_UNTRUSTED, detail=(
            f"el certificado de {label} fue revocado el {verdict.revoked.revocation_date_utc.isoformat()}"
        ))


# -- the template fast path --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Recognised:
    tsa: _TsaCertificate
    encoder: _TokenEncoder
    fields: _TokenFields
    found: dict[str, bytes]


def _read_layout(der: bytes) -> tuple[_TokenFields, dict[str, bytes]] | None:
    """The fields of `der` read along `_TOKEN`'s shape, or None; says nothing yet about the fixed parts."""
    found: dict[str, bytes] = {}
    if not isinstance(der, bytes):
        return None
    try:
        if _decode(_TOKEN, der, 0, len(der), found) != len(der):
            return None
        return _TokenFields.read(found), found
    except (_Mismatch, ValueError):
        return None


def _recognise(der: bytes) -> _Recognised | None:
    """`der` as a token of a known TSA, if that TSA's template encodes the fields read from it back into exactly
    `der`, byte for byte; else None. Only then do the fields mean what asn1crypto would read."""
    read = _read_layout(der)
    if read is None:
        return None
    fields, found = read
    tsa = _KNOWN_TSAS.get(found["certificate"])
    encoder = tsa.encoder if tsa is not None else None
    if tsa is None or encoder is None or encoder.render(fields) != der:
        return None
    return _Recognised(tsa, encoder, fields, found)


def _remember(tsa: _TsaCertificate, der: bytes, policy: str) -> None:
    """Keep the certificate of a token that verified in full; give it a template once one of its tokens is exactly
    what the template writes (tokens shaped otherwise, e.g. by another TSA software with the same key, do not
    count against it)."""
    read = _read_layout(der) if tsa.encoder is None else None
    if read is not None:
        candidate = tsa.candidate
        if candidate is None or candidate.policy != policy:
            try:
                candidate = _TokenEncoder(tsa.der, policy, _signature_algorithm_of(tsa.public_key))
            except Exception:  # asn1crypto refusing what cryptography read, or a key type the template lacks
                candidate = None
            tsa.candidate = candidate
        if candidate is not None and candidate.render(read[0]) == der:
            tsa.encoder = candidate
    if _KNOWN_TSAS.get(tsa.der) is not tsa:
        if len(_KNOWN_TSAS) >= _KNOWN_TSAS_MAX:
            _KNOWN_TSAS.clear()
        _KNOWN_TSAS[tsa.der] = tsa


def _verify_template(der: bytes, *, digest: bytes, trust: TrustStore, at: dt.datetime | None) -> TimeStampInfo | None:
    """`verify_token` for a token `_recognise` knows, else None. What the template fixes (versions, algorithms,
    content type, signer identifier, signingCertificateV2, the certificate) is what `_verify_full` checked on the
    token the template was learnt from; what varies is checked here as `_verify_full` checks it."""
    known = _recognise(der)
    if known is None:
        return None
    _STATS["template"] += 1
    fields, found = known.fields, known.found
    _check_imprint(fields.digest, digest)
    _check_not_future(fields.gen_time, at)
    _check_message_digest(fields.message_digest, found["tst_info"])
    _check_signature_value(known.tsa, _SIGNATURE_SCHEMES[known.encoder.algorithm], fields.signature,
                           b"\x31" + found["signed_attributes"][1:])
    _check_trust(known.tsa, fields.gen_time, trust)
    return TimeStampInfo(gen_time=fields.gen_time, serial=fields.serial, policy=known.encoder.policy,
                         tsa=known.tsa.label, nonce=fields.nonce)


def _verify_full(der: bytes, *, digest: bytes, trust: TrustStore, at: dt.datetime | None) -> TimeStampInfo:
    """`verify_token` for any token, read with asn1crypto: the reference."""
    _STATS["full"] += 1
    signed_data, tst_info = _parse(der)
    parsed = _token_of(der, tst_info)
    if tst_info["version"].native != "v1":
        raise _invalid(f"la versión del TSTInfo es {tst_info['version'].native}, se esperaba v1")
    algorithm = tst_info["message_imprint"]["hash_algorithm"]["algorithm"].native
    if algorithm != "sha256":
        raise fault(FaultCode.TS_MISMATCH, detail=f"el sello usa el resumen {algorithm} y solo se admite sha256")
    _check_imprint(parsed.digest, digest)
    _check_not_future(parsed.gen_time, at)
    try:
        tsa = _check_signature(signed_data, tst_info)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:  # malformed inner structures
        raise _invalid(f"la estructura firmada del sello está dañada ({exc.__class__.__name__})") from exc
    _check_trust(tsa, parsed.gen_time, trust)
    _remember(tsa, der, parsed.policy)
    return TimeStampInfo(
        gen_time=parsed.gen_time, serial=parsed.serial, policy=parsed.policy,
        tsa=tsa.label, nonce=tst_info["nonce"].native,
    )


def verify_token(token: TimeStampToken | bytes, *, digest: bytes, trust: TrustStore,
                 at: dt.datetime | None = None) -> TimeStampInfo:
    """Verify that `token` stamps `digest` (SHA-256) and was signed by a trusted TSA.

    `at` (default now) is when the check happens: a token dated more than `MAX_CLOCK_SKEW` after it is
    rejected. The TSA certificate must be valid at the token's genTime, not at `at`, so old stamps keep
    verifying after the TSA certificate expires.

    Tokens of a TSA whose token already verified in full here, and which are exactly what the TSA's template
    writes, are read without asn1crypto (~5x faster); every check is the same either way.
    """
    der = token.der if isinstance(token, TimeStampToken) else token
    info = _verify_template(der, digest=digest, trust=trust, at=at)
    return info if info is not None else _verify_full(der, digest=digest, trust=trust, at=at)


# -- XAdES-T style attachment ------------------------------------------------------------------
def _ds(local: str) -> str:
    return f"{{{DS}}}{local}"


def _xades(local: str) -> str:
    return f"{{{XADES}}}{local}"


def signature_value_digest(signature: etree._Element) -> bytes:
    """SHA-256 of the exclusive C14N of ds:SignatureValue: what a XAdES SignatureTimeStamp stamps."""
    value = signature.find(_ds("SignatureValue"))
    if value is None:
        raise _invalid("la ds:Signature no tiene ds:SignatureValue")
    return hashlib.sha256(etree.tostring(value, method="c14n", exclusive=True)).digest()


def _child(parent: etree._Element, tag: str) -> etree._Element:
    found = parent.find(tag)
    return found if found is not None else etree.SubElement(parent, tag)


def attach_timestamp(signature: etree._Element, token: TimeStampToken) -> None:
    """Add the token as ds:Object/xades:QualifyingProperties/…/xades:SignatureTimeStamp (reusing containers).

    A ds:Signature without Id gets Id="firma" so QualifyingProperties can target it; neither the Id nor
    the ds:Object is covered by the signature (the enveloped-signature transform removes ds:Signature).
    """
    signature_id = signature.get("Id") or "firma"
    signature.set("Id", signature_id)
    target = f"#{signature_id}"
    properties = next((q for q in signature.iterfind(f"{_ds('Object')}/{_xades('QualifyingProperties')}")
                       if q.get("Target") == target), None)
    if properties is None:
        container = etree.SubElement(signature, _ds("Object"))
        properties = etree.SubElement(container, _xades("QualifyingProperties"), Target=target,
                                      nsmap={"xades": XADES})
    unsigned = _child(_child(properties, _xades("UnsignedProperties")), _xades("UnsignedSignatureProperties"))
    stamp = etree.SubElement(unsigned, _xades("SignatureTimeStamp"))
    etree.SubElement(stamp, _xades("EncapsulatedTimeStamp")).text = base64.b64encode(token.der).decode("ascii")


def extract_timestamp(signature: etree._Element) -> TimeStampToken | None:
    """The first SignatureTimeStamp token attached to `signature`, or None."""
    path = (f"{_ds('Object')}/{_xades('QualifyingProperties')}/{_xades('UnsignedProperties')}/"
            f"{_xades('UnsignedSignatureProperties')}/{_xades('SignatureTimeStamp')}/{_xades('EncapsulatedTimeStamp')}")
    node = signature.find(path)
    if node is None:
        return None
    try:
        der = base64.b64decode("".join((node.text or "").split()), validate=True)
    except ValueError as exc:
        raise _invalid("xades:EncapsulatedTimeStamp no contiene base64 válido") from exc
    return TimeStampToken.from_der(der)


def _signature_of(root: etree._Element) -> etree._Element:
    signature = root.find(_ds("Signature"))
    if signature is None:
        raise _invalid("el mensaje no tiene ds:Signature como hijo del elemento raíz, no hay firma que estampar")
    return signature


def timestamp_message(signed: bytes, tsa: TimeStampAuthority) -> bytes:
    """Stamp the message's signature value and attach the token inside its ds:Signature."""
    root = parse_untrusted(signed)
    signature = _signature_of(root)
    attach_timestamp(signature, tsa.stamp(signature_value_digest(signature)))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def verify_message_timestamp(signed: bytes | etree._Element, trust: TrustStore) -> TimeStampInfo:
    """Verify the SignatureTimeStamp of a signed message (not the message signature itself)."""
    root = parse_untrusted(signed) if isinstance(signed, bytes) else signed
    signature = _signature_of(root)
    token = extract_timestamp(signature)
    if token is None:
        raise _invalid("la firma del mensaje no trae sello de tiempo (xades:SignatureTimeStamp)")
    return verify_token(token, digest=signature_value_digest(signature), trust=trust)
