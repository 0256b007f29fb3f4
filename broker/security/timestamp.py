"""The platform time-stamping authority (RFC 3161) and XAdES-T style attachment of its tokens.

A token is a CMS SignedData over a TSTInfo (RFC 3161 §2.4.2), signed by the TSA certificate with the
signed attributes content-type, signing-time, message-digest and signingCertificateV2 (RFC 5035), and
always carrying the TSA certificate. `openssl ts -verify` accepts `TimeStampToken.response_der()`.

Batch stamping (as X-Road does) stamps the root of a SHA-256 Merkle tree once and gives each digest
its path to the root. Messages are stamped on their ds:SignatureValue (XAdES SignatureTimeStamp); the
token goes in an unreferenced ds:Object inside the ds:Signature, which the enveloped-signature
transform removes from the signed data, so the sender's signature stays valid.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
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
        encoder = _TokenEncoder(self)
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


# -- DER by template ---------------------------------------------------------------------------
def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def _integer(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=False))


class _TokenEncoder:
    """Tokens of one TSA assembled from pre-encoded constant parts: only the digest, serial, times, nonce and
    signature vary. asn1crypto spends ~1 ms building each token value by value (75 % of the gateway's
    admission cost, measured with cProfile on batches of 32); this spends tens of microseconds. The TSA
    checks at start-up that it reproduces asn1crypto's encoding byte for byte, else it is not used."""

    def __init__(self, tsa: TimeStampAuthority) -> None:
        certificate = tsa._certificate()
        sha256 = algos.DigestAlgorithm({"algorithm": "sha256"}).dump()
        self.algorithm = "sha256_ecdsa" if isinstance(tsa.credential.private_key, ec.EllipticCurvePrivateKey) \
            else "sha256_rsa"
        self._policy = core.ObjectIdentifier(tsa.policy).dump()
        self._imprint_algorithm = sha256
        self._accuracy = tsp.Accuracy({"seconds": 1}).dump()
        self._tsa_name = _tlv(0xA0, asn1_x509.GeneralName({"directory_name": certificate.subject}).dump())
        self._content_type_attribute = cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}).dump()
        self._certificate_attribute = cms.CMSAttribute({"type": "signing_certificate_v2", "values": [
            tsp.SigningCertificateV2.load(tsa._signing_certificate_der)]}).dump()
        self._signing_time_oid = core.ObjectIdentifier("1.2.840.113549.1.9.5").dump()
        self._message_digest_oid = core.ObjectIdentifier("1.2.840.113549.1.9.4").dump()
        self._sid = cms.IssuerAndSerialNumber({"issuer": certificate.issuer,
                                               "serial_number": certificate.serial_number}).dump()
        self._digest_algorithm = sha256
        self._signature_algorithms = {name: algos.SignedDigestAlgorithm({"algorithm": name}).dump()
                                      for name in ("sha256_ecdsa", "sha256_rsa")}
        self._digest_algorithms = _tlv(0x31, sha256)
        self._tst_info_oid = core.ObjectIdentifier("1.2.840.113549.1.9.16.1.4").dump()
        self._certificates = _tlv(0xA0, certificate.dump())
        self._signed_data_oid = core.ObjectIdentifier("1.2.840.113549.1.7.2").dump()

    def tst_info(self, digest: bytes, serial: int, gen_time: dt.datetime, nonce: int | None) -> bytes:
        return _tlv(0x30, b"".join((
            b"\x02\x01\x01", self._policy,
            _tlv(0x30, self._imprint_algorithm + _tlv(0x04, digest)),
            _integer(serial), _tlv(0x18, gen_time.strftime("%Y%m%d%H%M%SZ").encode("ascii")),
            self._accuracy, b"" if nonce is None else _integer(nonce), self._tsa_name,
        )))

    def token(self, digest: bytes, serial: int, gen_time: dt.datetime, nonce: int | None,
              sign: Callable[[bytes], tuple[bytes, str]]) -> bytes:
        content = self.tst_info(digest, serial, gen_time, nonce)
        attributes = b"".join((
            self._content_type_attribute,
            _tlv(0x30, self._signing_time_oid + _tlv(0x31, _tlv(0x17, gen_time.strftime("%y%m%d%H%M%SZ")
                                                               .encode("ascii")))),
            _tlv(0x30, self._message_digest_oid + _tlv(0x31, _tlv(0x04, hashlib.sha256(content).digest()))),
            self._certificate_attribute,
        ))
        signature, algorithm = sign(_tlv(0x31, attributes))
        signer = _tlv(0x30, b"".join((
            b"\x02\x01\x01", self._sid, self._digest_algorithm, _tlv(0xA0, attributes),
            self._signature_algorithms[algorithm], _tlv(0x04, signature),
        )))
        signed_data = _tlv(0x30, b"".join((
            b"\x02\x01\x03", self._digest_algorithms,
            _tlv(0x30, self._tst_info_oid + _tlv(0xA0, _tlv(0x04, content))),
            self._certificates, _tlv(0x31, signer),
        )))
        return _tlv(0x30, self._signed_data_oid + _tlv(0xA0, signed_data))


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


def _signer_certificate(signed_data: cms.SignedData, signer: cms.SignerInfo) -> tuple[x509.Certificate, bytes]:
    """The embedded certificate the signer identifies, with its DER.

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
        certificate = x509.load_der_x509_certificate(der)
        if certificate.serial_number == serial and certificate.issuer.public_bytes() == issuer:
            return certificate, der
    raise _invalid("el sello no incluye el certificado de la autoridad de estampado que lo firmó")


def _check_signature(signed_data: cms.SignedData, tst_info: tsp.TSTInfo) -> x509.Certificate:
    """Verify the CMS signature; return the TSA certificate it was made with."""
    if signed_data["version"].native != "v3":
        raise _invalid(f"la versión de SignedData es {signed_data['version'].native}, se esperaba v3")
    if [a["algorithm"].native for a in signed_data["digest_algorithms"]] != ["sha256"]:
        raise _invalid("la lista de algoritmos de resumen de SignedData debe ser solo sha256")
    signers = signed_data["signer_infos"]
    if len(signers) != 1:
        raise _invalid(f"el sello debe tener un único firmante y tiene {len(signers)}")
    signer: cms.SignerInfo = signers[0]
    if signer["version"].native != "v1":
        raise _invalid(f"la versión de SignerInfo es {signer['version'].native}, se esperaba v1")
    if signer["digest_algorithm"]["algorithm"].native != "sha256":
        raise _invalid(f"el algoritmo de resumen de la firma es {signer['digest_algorithm']['algorithm'].native}, "
                       "solo se admite sha256")
    if not signer["signed_attrs"]:
        raise _invalid("la firma del sello no tiene atributos firmados")
    signed_bytes = b"\x31" + signer["signed_attrs"].dump()[1:]  # the received bytes, [0] IMPLICIT re-tagged as SET
    if _attribute(signer, "content_type").native != "tst_info":
        raise _invalid("el atributo content-type firmado no es id-ct-TSTInfo")
    content = signed_data["encap_content_info"]["content"].contents
    if _attribute(signer, "message_digest").native != hashlib.sha256(content).digest():
        raise _invalid("el atributo message-digest no coincide con el SHA-256 del TSTInfo: el contenido fue alterado")
    certificate, certificate_der = _signer_certificate(signed_data, signer)
    ess: tsp.SigningCertificateV2 = _attribute(signer, "signing_certificate_v2")
    cert_hash = hashlib.sha256(certificate_der).digest()
    first = ess["certs"][0]
    if first["hash_algorithm"]["algorithm"].native != "sha256" or first["cert_hash"].native != cert_hash:
        raise _invalid("el atributo signingCertificateV2 no corresponde al certificado incluido en el sello")

    public_key = certificate.public_key()
    algorithm = signer["signature_algorithm"].signature_algo
    signature = signer["signature"].native
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey) and algorithm == "ecdsa":
            public_key.verify(signature, signed_bytes, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public_key, rsa.RSAPublicKey) and algorithm == "rsassa_pkcs1v15":
            public_key.verify(signature, signed_bytes, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise _invalid(f"el algoritmo de firma {algorithm} no corresponde a la clave del certificado de la TSA")
    except InvalidSignature as exc:
        raise _invalid("la firma criptográfica del sello no verifica con el certificado de la TSA") from exc
    return certificate


def _check_trust(certificate: x509.Certificate, gen_time: dt.datetime, trust: TrustStore) -> None:
    label = subject_label(certificate)
    if trust.issuer_of(certificate) is None:
        raise fault(FaultCode.TS_UNTRUSTED, detail=(
            f"el certificado de {label} (emisor {certificate.issuer.rfc4514_string()}) no fue emitido por una "
            "raíz de confianza de la plataforma"
        ))
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = x509.ExtendedKeyUsage([])
    if ExtendedKeyUsageOID.TIME_STAMPING not in usages:
        raise fault(FaultCode.TS_UNTRUSTED, detail=(
            f"el certificado de {label} no tiene el uso extendido timeStamping (1.3.6.1.5.5.7.3.8)"
        ))
    if not certificate.not_valid_before_utc <= gen_time <= certificate.not_valid_after_utc:
        raise fault(FaultCode.TS_UNTRUSTED, detail=(
            f"el certificado de {label} no era válido en la fecha del sello {gen_time.isoformat()} (vigente de "
            f"{certificate.not_valid_before_utc.isoformat()} a {certificate.not_valid_after_utc.isoformat()})"
        ))
    revoked = trust.revocation_of(certificate)
    if revoked is not None:
        raise fault(FaultCode.TS_UNTRUSTED, detail=(
            f"el certificado de {label} fue revocado el {revoked.revocation_date_utc.isoformat()}"
        ))


def verify_token(token: TimeStampToken | bytes, *, digest: bytes, trust: TrustStore,
                 at: dt.datetime | None = None) -> TimeStampInfo:
    """Verify that `token` stamps `digest` (SHA-256) and was signed by a trusted TSA.

    `at` (default now) is when the check happens: a token dated more than `MAX_CLOCK_SKEW` after it is
    rejected. The TSA certificate must be valid at the token's genTime, not at `at`, so old stamps keep
    verifying after the TSA certificate expires.
    """
    der = token.der if isinstance(token, TimeStampToken) else token
    signed_data, tst_info = _parse(der)
    parsed = _token_of(der, tst_info)
    if tst_info["version"].native != "v1":
        raise _invalid(f"la versión del TSTInfo es {tst_info['version'].native}, se esperaba v1")
    algorithm = tst_info["message_imprint"]["hash_algorithm"]["algorithm"].native
    if algorithm != "sha256":
        raise fault(FaultCode.TS_MISMATCH, detail=f"el sello usa el resumen {algorithm} y solo se admite sha256")
    if parsed.digest != digest:
        raise fault(FaultCode.TS_MISMATCH, detail=(
            f"el sello ampara el resumen {parsed.digest.hex()} y el contenido tiene {digest.hex()}"
        ))
    now = at or dt.datetime.now(dt.UTC)
    if parsed.gen_time > now + MAX_CLOCK_SKEW:
        raise _invalid(f"la fecha del sello {parsed.gen_time.isoformat()} es posterior a {now.isoformat()}")
    try:
        certificate = _check_signature(signed_data, tst_info)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:  # malformed inner structures
        raise _invalid(f"la estructura firmada del sello está dañada ({exc.__class__.__name__})") from exc
    _check_trust(certificate, parsed.gen_time, trust)
    return TimeStampInfo(
        gen_time=parsed.gen_time, serial=parsed.serial, policy=parsed.policy,
        tsa=subject_label(certificate), nonce=tst_info["nonce"].native,
    )


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
