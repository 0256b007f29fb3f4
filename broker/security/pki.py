"""Development PKI: a platform root CA, a TSA, and one signing certificate per entity.

Everything lives in one folder (default `certs/dev`) that standard tools understand:

    root-ca.pem  root-ca.key      the trust anchor (give root-ca.pem to xmlsec1 / openssl)
    tsa-cert.pem tsa.key          the time-stamping authority (extendedKeyUsage timeStamping)
    crl.pem                       the current certificate revocation list, signed by the root
    entities/<CO_GOB_899999040>/<serial>.pem|.key   entity certificates, newest last
    index.json                    what was issued and revoked (the CA's database)

An entity certificate names its entity in the subject (CN = entity id, serialNumber = NIT) and, for
machines, in a SAN URI `urn:gel:entidad:<id>`: that URI is what binds a signature to `entidadOrigen`.
Keys are written 0600 and never committed. In production the root is an accredited certification
authority and this class is not used: the verifier only needs the root certificates and CRLs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker.gelxml.faults import FaultCode, fault
from broker.security.entities import Entity, EntityRegistry

__all__ = [
    "ENTITY_URI_PREFIX",
    "Algorithm",
    "Credential",
    "DevPKI",
    "IssuedCertificate",
    "LiveTrustStore",
    "TrustStore",
    "entity_id_of",
    "load_certificates",
]

Algorithm = Literal["ec", "rsa"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
ENTITY_URI_PREFIX = "urn:gel:entidad:"
ROOT_DAYS = 3650
TSA_DAYS = 1825
ENTITY_DAYS = 730


@dataclass(frozen=True, slots=True)
class Credential:
    """A private key with its certificate and the chain up to (and including) the root."""

    name: str
    private_key: PrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    @property
    def key_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True, slots=True)
class TrustStore:
    """What a verifier trusts: root certificates and the CRLs their issuers publish."""

    roots: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...] = ()

    @classmethod
    def from_files(cls, roots: Iterable[Path], crls: Iterable[Path] = ()) -> TrustStore:
        certs = tuple(c for path in roots for c in load_certificates(path.read_bytes()))
        lists = tuple(crl for path in crls if path.exists() for crl in load_crls(path.read_bytes()))
        return cls(roots=certs, crls=lists)

    @classmethod
    def from_dir(cls, directory: Path) -> TrustStore:
        """The trust store of a PKI folder: `root-ca.pem` and `crl.pem`."""
        if not (directory / "root-ca.pem").exists():
            raise fault(FaultCode.PKI_NOT_INITIALISED, path=directory)
        return cls.from_files([directory / "root-ca.pem"], [directory / "crl.pem"])

    def issuer_of(self, certificate: x509.Certificate) -> x509.Certificate | None:
        """The trusted root that signed `certificate`, or None. Outcomes are cached by fingerprint:
        re-checking the root's signature on every message cost ~200 µs (see docs/BENCHMARKS.md)."""
        for root in self.roots:
            if root.subject == certificate.issuer and _issued_by(certificate, root):
                return root
        return None

    def revocation_of(self, certificate: x509.Certificate) -> x509.RevokedCertificate | None:
        for crl in self.crls:
            if crl.issuer == certificate.issuer:
                revoked = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
                if revoked is not None:
                    return revoked
        return None


class LiveTrustStore:
    """A PKI folder's trust store for a long-running verifier: a new `crl.pem` (a revocation) or root takes
    effect without a restart. The files' modification times are looked at most every `refresh_seconds`."""

    def __init__(self, directory: Path, *, refresh_seconds: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.directory = directory
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp = self._stamps()
        self._store = TrustStore.from_dir(directory)
        self._checked_at = clock()

    def _stamps(self) -> tuple[float, ...]:
        return tuple(path.stat().st_mtime if path.exists() else 0.0
                     for path in (self.directory / "root-ca.pem", self.directory / "crl.pem"))

    def current(self) -> TrustStore:
        if self._clock() - self._checked_at < self.refresh_seconds or not self._lock.acquire(blocking=False):
            return self._store
        try:
            self._checked_at = self._clock()
            stamp = self._stamps()
            if stamp != self._stamp:
                self._store, self._stamp = TrustStore.from_dir(self.directory), stamp
        except (OSError, ValueError):
            pass  # a file caught mid-write: keep the last good store, look again next time
        finally:
            self._lock.release()
        return self._store


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """One line of the CA's index."""

    serial: str
    entity: str
    name: str
    algorithm: str
    not_before: str
    not_after: str
    certificate: str
    key: str
    revoked_at: str | None = None
    reason: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


_ISSUED_BY: dict[tuple[bytes, bytes], bool] = {}
_ISSUED_BY_MAX = 65_536


def _issued_by(certificate: x509.Certificate, root: x509.Certificate) -> bool:
    key = (certificate.fingerprint(hashes.SHA256()), root.fingerprint(hashes.SHA256()))
    known = _ISSUED_BY.get(key)
    if known is not None:
        return known
    try:
        certificate.verify_directly_issued_by(root)
        outcome = True
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        outcome = False
    if len(_ISSUED_BY) >= _ISSUED_BY_MAX:
        _ISSUED_BY.clear()
    _ISSUED_BY[key] = outcome
    return outcome


def load_certificates(data: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(data)


_CRL_BLOCK = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.DOTALL)


def load_crls(data: bytes) -> tuple[x509.CertificateRevocationList, ...]:
    """Every CRL of a PEM file: one per issuing CA when the platform trusts several."""
    return tuple(x509.load_pem_x509_crl(block) for block in _CRL_BLOCK.findall(data))


def entity_id_of(certificate: x509.Certificate) -> str | None:
    """The entity a certificate speaks for (its `urn:gel:entidad:` SAN URI), or None."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(ENTITY_URI_PREFIX):
            return uri[len(ENTITY_URI_PREFIX):]
    return None


def subject_label(certificate: x509.Certificate) -> str:
    """A readable name for messages: the entity id, else the subject's CN, else the whole subject."""
    entity = entity_id_of(certificate)
    if entity:
        return entity
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else certificate.subject.rfc4514_string()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _new_key(algorithm: Algorithm) -> PrivateKey:
    if algorithm == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"algoritmo de clave no soportado: {algorithm} (use ec o rsa)")


def _algorithm_of(key: PrivateKey) -> Algorithm:
    return "ec" if isinstance(key, ec.EllipticCurvePrivateKey) else "rsa"


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def _key_usage(*, digital_signature: bool = False, content_commitment: bool = False,
               key_cert_sign: bool = False, crl_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=content_commitment, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=key_cert_sign, crl_sign=crl_sign,
        encipher_only=False, decipher_only=False,
    )


def _folder_of(entity_id: str) -> str:
    return entity_id.replace("/", "_")


class DevPKI:
    """The development CA in a folder. Operations are idempotent where that is safe (init keeps an existing root)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    # -- files ---------------------------------------------------------------------------------
    @property
    def root_cert_path(self) -> Path:
        return self.directory / "root-ca.pem"

    @property
    def tsa_cert_path(self) -> Path:
        return self.directory / "tsa-cert.pem"

    @property
    def crl_path(self) -> Path:
        return self.directory / "crl.pem"

    @property
    def _index_path(self) -> Path:
        return self.directory / "index.json"

    @property
    def initialised(self) -> bool:
        """A development CA that can issue and revoke (its root key is here)."""
        return self.root_cert_path.exists() and (self.directory / "root-ca.key").exists()

    def _require(self) -> None:
        if not self.initialised:
            raise fault(FaultCode.PKI_NOT_INITIALISED, path=self.directory)

    def _anchors(self) -> list[x509.Certificate]:
        """The trust anchors (root-ca.pem: one certificate or several). Reading credentials needs only these, so
        a folder holding a real CA's certificates without its key serves the platform as well."""
        if not self.root_cert_path.exists():
            raise fault(FaultCode.PKI_NOT_INITIALISED, path=self.directory)
        return load_certificates(self.root_cert_path.read_bytes())

    def _issuer_of(self, certificate: x509.Certificate) -> x509.Certificate:
        anchors = self._anchors()
        return next((a for a in anchors if a.subject == certificate.issuer), anchors[0])

    def _load_key(self, path: Path) -> PrivateKey:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
        return key

    def _root(self) -> tuple[PrivateKey, x509.Certificate]:
        self._require()
        return self._load_key(self.directory / "root-ca.key"), load_certificates(self.root_cert_path.read_bytes())[0]

    def _read_index(self) -> list[IssuedCertificate]:
        if not self._index_path.exists():
            return []
        return [IssuedCertificate(**item) for item in json.loads(self._index_path.read_text(encoding="utf-8"))]

    def _write_index(self, rows: list[IssuedCertificate]) -> None:
        self._index_path.write_text(json.dumps([asdict(r) for r in rows], indent=2, ensure_ascii=False) + "\n",
                                    encoding="utf-8")

    # -- operations ----------------------------------------------------------------------------
    def initialise(self, entities: EntityRegistry | Iterable[Entity], *, algorithm: Algorithm = "ec",
                   force: bool = False) -> list[IssuedCertificate]:
        """Create the root, the TSA and a certificate for every entity that has none yet."""
        if force and self.directory.exists():
            for path in sorted(self.directory.rglob("*"), reverse=True):
                if path.is_file():
                    path.unlink()
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.initialised:
            self._create_root(algorithm)
        if not self.tsa_cert_path.exists():
            self._create_tsa(algorithm)
        issued: list[IssuedCertificate] = []
        have = {row.entity for row in self._read_index() if not row.revoked}
        for entity in entities:
            if entity.id not in have:
                issued.append(self.issue(entity, algorithm=algorithm))
        if not self.crl_path.exists():
            self.write_crl()
        return issued

    def _create_root(self, algorithm: Algorithm) -> None:
        key = _new_key(algorithm)
        name = x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CO"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Plataforma de Interoperabilidad GEL (desarrollo)"),
            x509.NameAttribute(NameOID.COMMON_NAME, "GEL Broker CA raiz de desarrollo"),
        ])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=ROOT_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(self.directory / "root-ca.key", Credential("raiz", key, cert, ()).key_pem)
        self.root_cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._write_index([])

    def _sign_leaf(self, subject: x509.Name, key: PrivateKey, *, not_before: dt.datetime,
                   not_after: dt.datetime, extensions: list[tuple[x509.ExtensionType, bool]]) -> x509.Certificate:
        root_key, root = self._root()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(root.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        signer: CertificateIssuerPrivateKeyTypes = root_key
        return builder.sign(signer, hashes.SHA256())

    def _create_tsa(self, algorithm: Algorithm) -> None:
        key = _new_key(algorithm)
        now = _now()
        subject = x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CO"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Plataforma de Interoperabilidad GEL (desarrollo)"),
            x509.NameAttribute(NameOID.COMMON_NAME, "GEL Broker TSA de desarrollo"),
        ])
        cert = self._sign_leaf(subject, key, not_before=now - dt.timedelta(minutes=5),
                               not_after=now + dt.timedelta(days=TSA_DAYS), extensions=[
                                   (_key_usage(digital_signature=True, content_commitment=True), True),
                                   (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), True),
                               ])
        _write_private(self.directory / "tsa.key", Credential("tsa", key, cert, ()).key_pem)
        self.tsa_cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, entity: Entity, *, algorithm: Algorithm = "ec", not_before: dt.datetime | None = None,
              not_after: dt.datetime | None = None, signing: bool = True) -> IssuedCertificate:
        """Issue a signing certificate for `entity` (a new key each time).

        `not_before`/`not_after` default to now and now + 2 years; `signing=False` issues a certificate
        without the signing key usages (for tests of key-usage enforcement).
        """
        self._require()
        now = _now()
        start = not_before or now - dt.timedelta(minutes=5)
        end = not_after or now + dt.timedelta(days=ENTITY_DAYS)
        key = _new_key(algorithm)
        subject = x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CO"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, entity.name[:64]),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, entity.entity_class),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, entity.nit),
            x509.NameAttribute(NameOID.COMMON_NAME, entity.id),
        ])
        usage = (_key_usage(digital_signature=True, content_commitment=True) if signing
                 else _key_usage(key_cert_sign=False, crl_sign=False))
        cert = self._sign_leaf(subject, key, not_before=start, not_after=end, extensions=[
            (usage, True),
            (x509.SubjectAlternativeName([x509.UniformResourceIdentifier(ENTITY_URI_PREFIX + entity.id)]), False),
        ])
        return self._keep(entity, key, cert, not_before=start.isoformat(), not_after=end.isoformat())

    def revoke(self, entity_id: str, *, reason: x509.ReasonFlags = x509.ReasonFlags.key_compromise
               ) -> list[IssuedCertificate]:
        """Revoke every live certificate of `entity_id` and publish a new CRL."""
        self._require()
        rows = self._read_index()
        now = _now().isoformat()
        revoked: list[IssuedCertificate] = []
        for i, row in enumerate(rows):
            if row.entity == entity_id and not row.revoked:
                rows[i] = IssuedCertificate(**{**asdict(row), "revoked_at": now, "reason": reason.value})
                revoked.append(rows[i])
        if not revoked:
            raise fault(FaultCode.PKI_UNKNOWN_ENTITY, entity=entity_id, path=self.directory)
        self._write_index(rows)
        self.write_crl()
        return revoked

    def write_crl(self, *, next_update_days: int = 7) -> x509.CertificateRevocationList:
        root_key, root = self._root()
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(root.subject).last_update(now).next_update(now + dt.timedelta(days=next_update_days))
        )
        for row in self._read_index():
            if row.revoked_at is None:
                continue
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(int(row.serial, 16))
                .revocation_date(dt.datetime.fromisoformat(row.revoked_at))
                .add_extension(x509.CRLReason(x509.ReasonFlags(row.reason or "unspecified")), critical=False)
                .build()
            )
        crl = builder.sign(root_key, hashes.SHA256())
        self.crl_path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        return crl

    def list(self) -> list[IssuedCertificate]:
        return self._read_index()

    def credential(self, entity_id: str) -> Credential:
        """The newest live certificate of `entity_id` with its key."""
        self._anchors()
        rows = [r for r in self._read_index() if r.entity == entity_id and not r.revoked]
        if not rows:
            raise fault(FaultCode.PKI_UNKNOWN_ENTITY, entity=entity_id, path=self.directory)
        return self.credential_for(rows[-1])

    def credential_for(self, row: IssuedCertificate) -> Credential:
        """The credential of one index row (revoked or not: tests and evidence need old ones)."""
        key = self._load_key(self.directory / row.key)
        cert = load_certificates((self.directory / row.certificate).read_bytes())[0]
        return Credential(row.entity, key, cert, (self._issuer_of(cert),))

    def tsa_credential(self) -> Credential:
        key = self._load_key(self.directory / "tsa.key")
        cert = load_certificates(self.tsa_cert_path.read_bytes())[0]
        return Credential("tsa", key, cert, (self._issuer_of(cert),))

    def import_credential(self, entity: Entity, certificate_pem: bytes, key_pem: bytes) -> IssuedCertificate:
        """Add a signing certificate a certification authority issued for `entity`, with its key: what a platform
        whose CA is not this folder's does instead of `issue`. Refused unless the key is the certificate's, one of
        the trust anchors issued it directly, and its subjectAltName names the entity."""
        try:
            cert = load_certificates(certificate_pem)[0]
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, IndexError, TypeError, UnsupportedAlgorithm) as exc:
            raise fault(FaultCode.PKI_IMPORT, entity=entity.id, reason=f"no se pudo leer: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise fault(FaultCode.PKI_IMPORT, entity=entity.id, reason="la clave no es ECDSA ni RSA")
        public = serialization.PublicFormat.SubjectPublicKeyInfo
        if (key.public_key().public_bytes(serialization.Encoding.DER, public)
                != cert.public_key().public_bytes(serialization.Encoding.DER, public)):
            raise fault(FaultCode.PKI_IMPORT, entity=entity.id, reason="la clave no corresponde al certificado")
        if not any(_issued_by(cert, anchor) for anchor in self._anchors()):
            raise fault(FaultCode.PKI_IMPORT, entity=entity.id,
                        reason=f"ninguna de las anclas de {self.root_cert_path.name} emitió el certificado")
        if entity_id_of(cert) != entity.id:
            raise fault(FaultCode.PKI_IMPORT, entity=entity.id,
                        reason=f"el subjectAltName no tiene la URI {ENTITY_URI_PREFIX}{entity.id}")
        return self._keep(entity, key, cert, not_before=cert.not_valid_before_utc.isoformat(),
                          not_after=cert.not_valid_after_utc.isoformat())

    def _keep(self, entity: Entity, key: PrivateKey, cert: x509.Certificate, *, not_before: str,
              not_after: str) -> IssuedCertificate:
        """Store a certificate and its key (0600) under entities/ and list it in the index, where the newest
        live certificate of an entity is the one its credential uses."""
        serial = format(cert.serial_number, "x")
        folder = self.directory / "entities" / _folder_of(entity.id)
        folder.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = folder / f"{serial}.pem", folder / f"{serial}.key"
        _write_private(key_path, Credential(entity.id, key, cert, ()).key_pem)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        row = IssuedCertificate(
            serial=serial, entity=entity.id, name=entity.name, algorithm=_algorithm_of(key),
            not_before=not_before, not_after=not_after,
            certificate=str(cert_path.relative_to(self.directory)), key=str(key_path.relative_to(self.directory)),
        )
        self._write_index([*(r for r in self._read_index() if r.serial != serial), row])
        return row

    def trust_store(self) -> TrustStore:
        return TrustStore.from_dir(self.directory)

    def algorithm(self) -> Algorithm:
        return _algorithm_of(self._root()[0])
