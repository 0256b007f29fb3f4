"""The platform TSA: RFC 3161 tokens that our verifier and `openssl ts -verify` accept, batch stamping over
a Merkle tree, and XAdES-T style attachment that leaves the sender's signature valid.

`verify_token` reads the platform's own tokens by template once a token of their TSA verified in full (asn1crypto,
the reference): the negative tests say which path they go through, and both paths must give the same verdict."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import random
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import signxml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from lxml import etree

from broker.gelxml.faults import FaultCode, GelFault
from broker.security.entities import EntityRegistry
from broker.security.pki import Credential, DevPKI, LiveTrustStore, TrustStore
from broker.security.timestamp import (
    _STATS,
    DS,
    XADES,
    BatchTimeStamp,
    TimeStampAuthority,
    TimeStampToken,
    attach_timestamp,
    extract_timestamp,
    signature_value_digest,
    timestamp_message,
    verify_batch_stamp,
    verify_message_timestamp,
    verify_token,
)
from broker.security.timestamp import _parse as parse_with_asn1crypto
from broker.security.timestamp import _recognise as recognise
from broker.security.timestamp import _token_of as token_of
from broker.security.timestamp import _verify_full as verify_full
from broker.security.timestamp import _verify_template as verify_template

DATA = "Certificado de tradición y libertad 50C-1234567".encode()
DIGEST = hashlib.sha256(DATA).digest()
ENTITY = "CO/PLAT/900000001"


def code_of(excinfo: pytest.ExceptionInfo[GelFault]) -> FaultCode:
    return FaultCode(excinfo.value.falla.code)


@contextmanager
def through(path: str) -> Iterator[None]:
    """The one `verify_token` call inside went through `path`: "template" or "full" (asn1crypto)."""
    template, full = _STATS["template"], _STATS["full"]
    yield
    assert (_STATS["template"] - template, _STATS["full"] - full) == ((1, 0) if path == "template" else (0, 1))


def teach(authority: TimeStampAuthority, trust: TrustStore) -> None:
    """Verify one good token of `authority`: from then on the verifier reads its tokens by template."""
    good = authority.stamp(DIGEST)
    verify_token(good, digest=DIGEST, trust=trust)
    assert recognise(authority.stamp(DIGEST).der) is not None


@pytest.fixture(scope="module")
def tsa(pki: DevPKI) -> TimeStampAuthority:
    authority = TimeStampAuthority(pki.tsa_credential())
    teach(authority, pki.trust_store())
    return authority


@pytest.fixture(scope="module")
def token(tsa: TimeStampAuthority) -> TimeStampToken:
    return tsa.stamp(DIGEST)


# -- single tokens -----------------------------------------------------------------------------
def test_token_verifies_and_is_dated_now(pki: DevPKI, tsa: TimeStampAuthority) -> None:
    before = dt.datetime.now(dt.UTC)
    stamped = tsa.stamp(DIGEST, nonce=123456789)
    info = verify_token(stamped, digest=DIGEST, trust=pki.trust_store())
    assert abs((info.gen_time - before).total_seconds()) < 5
    assert info.gen_time.tzinfo is not None
    assert info.tsa == "GEL Broker TSA de desarrollo"
    assert info.policy == "1.3.6.1.4.1.57264.1.1" == stamped.policy
    assert info.serial == stamped.serial
    assert info.nonce == 123456789
    assert stamped.digest == DIGEST


def test_token_round_trips_through_der(pki: DevPKI, token: TimeStampToken) -> None:
    parsed = TimeStampToken.from_der(token.der)
    assert parsed == token
    assert verify_token(token.der, digest=DIGEST, trust=pki.trust_store()).serial == token.serial


def test_serials_are_unique_and_increasing(tsa: TimeStampAuthority) -> None:
    serials = [tsa.stamp(DIGEST).serial for _ in range(50)]
    assert serials == sorted(serials)
    assert len(set(serials)) == 50


def test_wrong_digest_is_a_mismatch(pki: DevPKI, token: TimeStampToken) -> None:
    with through("template"), pytest.raises(GelFault) as excinfo:
        verify_token(token, digest=hashlib.sha256(b"otro contenido").digest(), trust=pki.trust_store())
    assert code_of(excinfo) is FaultCode.TS_MISMATCH
    assert DIGEST.hex() in excinfo.value.falla.message


def test_flipped_signature_byte_is_invalid(pki: DevPKI, token: TimeStampToken) -> None:
    damaged = bytearray(token.der)
    damaged[-1] ^= 0x01  # the signature value is the last field of the token
    with through("template"), pytest.raises(GelFault) as excinfo:
        verify_token(bytes(damaged), digest=DIGEST, trust=pki.trust_store())
    assert code_of(excinfo) is FaultCode.TS_INVALID
    assert "firma criptográfica" in excinfo.value.falla.message


def test_swapped_imprint_is_caught_by_the_message_digest(pki: DevPKI, token: TimeStampToken) -> None:
    other = hashlib.sha256(b"documento sustituido").digest()
    forged = token.der.replace(DIGEST, other)
    assert forged != token.der
    with through("template"), pytest.raises(GelFault) as excinfo:
        verify_token(forged, digest=other, trust=pki.trust_store())
    assert code_of(excinfo) is FaultCode.TS_INVALID
    assert "message-digest" in excinfo.value.falla.message


def _fault_of(verify: Callable[..., object], der: bytes, trust: TrustStore, at: dt.datetime) -> tuple[str, str]:
    try:
        verify(der, digest=DIGEST, trust=trust, at=at)
    except GelFault as exc:  # anything else (a bare asn1crypto or cryptography exception) fails the test
        return exc.falla.code, exc.falla.message
    raise AssertionError("a damaged token verified")


@pytest.mark.filterwarnings("ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning")
@pytest.mark.parametrize("nonce", [None, 0x0123456789ABCDEF])
def test_every_damaged_byte_gives_the_same_coded_fault_on_both_paths(pki: DevPKI, tsa: TimeStampAuthority,
                                                                      nonce: int | None) -> None:
    """Each byte of a token changed in turn (by a random non-zero mask): never verifies, always a TS_* fault, and
    where the damaged token still reads as a template instance the fast path gives the very fault asn1crypto's
    path gives. This includes the unsigned bytes (NULL algorithm parameters, the signature algorithm's hash)."""
    trust, now = pki.trust_store(), dt.datetime.now(dt.UTC)
    der = tsa.stamp(DIGEST, nonce=nonce).der
    generator = random.Random(len(der))
    by_template = 0
    for position in range(len(der)):
        damaged = bytearray(der)
        damaged[position] ^= generator.randrange(1, 256)
        full = _fault_of(verify_full, bytes(damaged), trust, now)
        assert FaultCode(full[0]) in {FaultCode.TS_INVALID, FaultCode.TS_MISMATCH, FaultCode.TS_UNTRUSTED}
        assert _fault_of(verify_token, bytes(damaged), trust, now) == full
        if recognise(bytes(damaged)) is not None:
            by_template += 1
            assert _fault_of(verify_template, bytes(damaged), trust, now) == full
    # the imprint, the serial, the nonce, the message digest and the signature are slots: damage there is read
    assert by_template > 32 + 64


@pytest.mark.parametrize("garbage", [b"", b"no es DER", b"\x30\x03\x02\x01\x01", b"\x30\x82\xff\xff"])
def test_garbage_is_invalid(garbage: bytes) -> None:
    with pytest.raises(GelFault) as excinfo:
        TimeStampToken.from_der(garbage)
    assert code_of(excinfo) is FaultCode.TS_INVALID


def test_token_of_another_pki_is_untrusted(pki: DevPKI, fresh_pki: DevPKI) -> None:
    foreign = TimeStampAuthority(fresh_pki.tsa_credential()).stamp(DIGEST)
    with through("full"):
        assert verify_token(foreign, digest=DIGEST, trust=fresh_pki.trust_store()).serial == foreign.serial
    with through("template"), pytest.raises(GelFault) as excinfo:
        verify_token(foreign, digest=DIGEST, trust=pki.trust_store())
    assert code_of(excinfo) is FaultCode.TS_UNTRUSTED
    assert "raíz de confianza" in excinfo.value.falla.message


def test_certificate_without_timestamping_usage_is_untrusted(pki: DevPKI) -> None:
    impostor = TimeStampAuthority(pki.credential(ENTITY)).stamp(DIGEST)
    # a certificate whose tokens never verify never gets a template
    with through("full"), pytest.raises(GelFault) as excinfo:
        verify_token(impostor, digest=DIGEST, trust=pki.trust_store())
    assert code_of(excinfo) is FaultCode.TS_UNTRUSTED
    assert "timeStamping" in excinfo.value.falla.message


def test_gen_time_outside_certificate_validity_is_untrusted(pki: DevPKI, tsa: TimeStampAuthority) -> None:
    credential = pki.tsa_credential()
    before_issue = credential.certificate.not_valid_before_utc - dt.timedelta(days=1)
    backdated = TimeStampAuthority(credential, clock=lambda: before_issue).stamp(DIGEST)
    assert backdated.gen_time == before_issue.replace(microsecond=0)
    with through("template"), pytest.raises(GelFault) as excinfo:
        verify_token(backdated, digest=DIGEST, trust=pki.trust_store())
    assert code_of(excinfo) is FaultCode.TS_UNTRUSTED
    assert "no era válido" in excinfo.value.falla.message


def test_token_from_the_future_is_invalid(pki: DevPKI, tsa: TimeStampAuthority) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    future = TimeStampAuthority(pki.tsa_credential(), clock=lambda: later).stamp(DIGEST)
    with through("template"), pytest.raises(GelFault) as excinfo:
        verify_token(future, digest=DIGEST, trust=pki.trust_store())
    assert code_of(excinfo) is FaultCode.TS_INVALID
    assert "posterior" in excinfo.value.falla.message
    with through("template"):
        assert verify_token(future, digest=DIGEST, trust=pki.trust_store(), at=later).gen_time == future.gen_time


def _crl_revoking(pki: DevPKI, certificate: x509.Certificate) -> x509.CertificateRevocationList:
    root_key = serialization.load_pem_private_key((pki.directory / "root-ca.key").read_bytes(), None)
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(certificate.issuer).last_update(now).next_update(now + dt.timedelta(days=1))
        .add_revoked_certificate(x509.RevokedCertificateBuilder()
                                 .serial_number(certificate.serial_number).revocation_date(now).build())
        .sign(root_key, hashes.SHA256())  # type: ignore[arg-type]
    )


def test_revoked_tsa_is_untrusted(fresh_pki: DevPKI) -> None:
    credential = fresh_pki.tsa_credential()
    authority = TimeStampAuthority(credential)
    teach(authority, TrustStore(roots=credential.chain))
    stamped = authority.stamp(DIGEST)
    crl = _crl_revoking(fresh_pki, credential.certificate)
    with through("template"), pytest.raises(GelFault) as excinfo:
        verify_token(stamped, digest=DIGEST, trust=TrustStore(roots=credential.chain, crls=(crl,)))
    assert code_of(excinfo) is FaultCode.TS_UNTRUSTED
    assert "revocado" in excinfo.value.falla.message


def test_a_new_crl_revokes_the_tsa_at_once_despite_the_cached_checks(fresh_pki: DevPKI) -> None:
    """The trust checks of a TSA certificate are kept per trust store; LiveTrustStore hands out a new store when
    crl.pem changes, so the revocation applies to the next token."""
    live = LiveTrustStore(fresh_pki.directory, refresh_seconds=0)
    credential = fresh_pki.tsa_credential()
    authority = TimeStampAuthority(credential)
    teach(authority, live.current())
    with through("template"):
        verify_token(authority.stamp(DIGEST), digest=DIGEST, trust=live.current())

    crl_path = fresh_pki.directory / "crl.pem"
    crl_path.write_bytes(_crl_revoking(fresh_pki, credential.certificate).public_bytes(serialization.Encoding.PEM))
    stat = crl_path.stat()
    os.utime(crl_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with through("template"), pytest.raises(GelFault) as excinfo:
        verify_token(authority.stamp(DIGEST), digest=DIGEST, trust=live.current())
    assert code_of(excinfo) is FaultCode.TS_UNTRUSTED
    assert "revocado" in excinfo.value.falla.message


@pytest.fixture(scope="module")
def rsa_pki(tmp_path_factory: pytest.TempPathFactory, entities: EntityRegistry) -> DevPKI:
    rsa = DevPKI(tmp_path_factory.mktemp("pki-rsa"))
    rsa.initialise(entities, algorithm="rsa")
    return rsa


def test_rsa_tsa_works(rsa_pki: DevPKI) -> None:
    authority = TimeStampAuthority(rsa_pki.tsa_credential())
    stamped = authority.stamp(DIGEST)
    with through("full"):  # its first token teaches the verifier the RSA TSA's template
        assert verify_token(stamped, digest=DIGEST, trust=rsa_pki.trust_store()).gen_time == stamped.gen_time
    with through("template"):
        assert verify_token(authority.stamp(DIGEST, nonce=9), digest=DIGEST, trust=rsa_pki.trust_store()).nonce == 9
    damaged = bytearray(stamped.der)
    damaged[-1] ^= 0x01
    with through("template"), pytest.raises(GelFault) as excinfo:
        verify_token(bytes(damaged), digest=DIGEST, trust=rsa_pki.trust_store())
    assert code_of(excinfo) is FaultCode.TS_INVALID
    assert "firma criptográfica" in excinfo.value.falla.message


# -- reading the platform's tokens by template -------------------------------------------------
@pytest.mark.parametrize("nonce", [None, 0, 128, 0x0123456789ABCDEF])
def test_platform_tokens_are_read_by_template_with_the_reference_outcome(pki: DevPKI, tsa: TimeStampAuthority,
                                                                           nonce: int | None) -> None:
    stamped = tsa.stamp(DIGEST, nonce=nonce)
    trust = pki.trust_store()
    with through("template"):
        info = verify_token(stamped, digest=DIGEST, trust=trust)
    with through("full"):
        assert verify_full(stamped.der, digest=DIGEST, trust=trust, at=None) == info
    assert (info.serial, info.nonce, info.gen_time, info.policy) == (stamped.serial, nonce, stamped.gen_time,
                                                                     stamped.policy)
    assert TimeStampToken.from_der(stamped.der) == token_of(stamped.der, parse_with_asn1crypto(stamped.der)[1])


def test_a_token_built_by_asn1crypto_in_the_reference_way_is_a_template_instance(pki: DevPKI,
                                                                                  tsa: TimeStampAuthority) -> None:
    moment = dt.datetime.now(dt.UTC).replace(microsecond=0)
    reference = tsa._reference_token(DIGEST, 0xC0FFEE, moment, 42, tsa._signature)
    with through("template"):
        info = verify_token(reference, digest=DIGEST, trust=pki.trust_store())
    assert info == verify_full(reference, digest=DIGEST, trust=pki.trust_store(), at=None)
    assert (info.serial, info.nonce, info.gen_time) == (0xC0FFEE, 42, moment)


def test_tokens_of_another_template_are_verified_in_full(pki: DevPKI, tsa: TimeStampAuthority) -> None:
    """The same TSA certificate under another policy: its tokens are not instances of the template learnt for
    the certificate, so every one of them goes through asn1crypto, and verifies."""
    other = TimeStampAuthority(pki.tsa_credential(), policy="1.3.6.1.4.1.57264.1.2")
    for _ in range(2):
        with through("full"):
            assert verify_token(other.stamp(DIGEST), digest=DIGEST, trust=pki.trust_store()).policy.endswith(".2")
    with through("template"):
        verify_token(tsa.stamp(DIGEST), digest=DIGEST, trust=pki.trust_store())


def test_a_token_that_fails_verification_teaches_nothing(fresh_pki: DevPKI, pki: DevPKI) -> None:
    stranger = TimeStampAuthority(fresh_pki.tsa_credential())
    for _ in range(2):
        with through("full"), pytest.raises(GelFault):
            verify_token(stranger.stamp(DIGEST), digest=DIGEST, trust=pki.trust_store())
    assert recognise(stranger.stamp(DIGEST).der) is None


def test_openssl_tokens_are_verified_in_full(pki: DevPKI, tsa: TimeStampAuthority, tmp_path: Path,
                                             openssl: str) -> None:
    """Another TSA implementation (`openssl ts -reply`) with the platform's TSA key: a different layout."""
    (tmp_path / "serial").write_text("01\n")
    (tmp_path / "tsa.cnf").write_text(
        "[ tsa ]\ndefault_tsa = tsa_config\n[ tsa_config ]\n"
        f"serial = {tmp_path / 'serial'}\nsigner_digest = sha256\ndefault_policy = 1.3.6.1.4.1.57264.1.1\n"
        "digests = sha256\naccuracy = secs:1\ness_cert_id_alg = sha256\n"
    )
    data = tmp_path / "datos.txt"
    data.write_bytes(DATA)

    def openssl_ts(*arguments: str) -> None:
        subprocess.run([openssl, "ts", *arguments], capture_output=True, timeout=30, check=True)

    openssl_ts("-query", "-data", str(data), "-sha256", "-cert", "-out", str(tmp_path / "q.tsq"))
    openssl_ts("-reply", "-config", str(tmp_path / "tsa.cnf"), "-queryfile", str(tmp_path / "q.tsq"),
               "-signer", str(pki.tsa_cert_path), "-inkey", str(pki.directory / "tsa.key"), "-token_out",
               "-out", str(tmp_path / "sello.der"))
    der = (tmp_path / "sello.der").read_bytes()
    for _ in range(2):
        with through("full"):
            assert verify_token(der, digest=DIGEST, trust=pki.trust_store()).tsa == "GEL Broker TSA de desarrollo"
    with through("template"):
        verify_token(tsa.stamp(DIGEST), digest=DIGEST, trust=pki.trust_store())


# -- openssl interoperability ------------------------------------------------------------------
def _openssl_verify(openssl: str, pki: DevPKI, response: Path, *selector: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [openssl, "ts", "-verify", *selector, "-in", str(response), "-CAfile", str(pki.root_cert_path),
         "-untrusted", str(pki.tsa_cert_path)],
        capture_output=True, text=True, timeout=30, check=False,
    )


def test_openssl_verifies_our_response(pki: DevPKI, token: TimeStampToken, tmp_path: Path, openssl: str) -> None:
    response = tmp_path / "sello.tsr"
    response.write_bytes(token.response_der())
    data = tmp_path / "datos.txt"
    data.write_bytes(DATA)

    by_digest = _openssl_verify(openssl, pki, response, "-digest", DIGEST.hex())
    assert by_digest.returncode == 0, by_digest.stderr
    assert "Verification: OK" in by_digest.stdout
    by_data = _openssl_verify(openssl, pki, response, "-data", str(data))
    assert by_data.returncode == 0, by_data.stderr
    assert "Verification: OK" in by_data.stdout

    wrong = _openssl_verify(openssl, pki, response, "-digest", hashlib.sha256(b"otro").hexdigest())
    assert wrong.returncode != 0
    assert "Verification: OK" not in wrong.stdout


def test_openssl_verifies_rsa_response(rsa_pki: DevPKI, tmp_path: Path, openssl: str) -> None:
    response = tmp_path / "sello.tsr"
    response.write_bytes(TimeStampAuthority(rsa_pki.tsa_credential()).stamp(DIGEST, nonce=7).response_der())
    result = _openssl_verify(openssl, rsa_pki, response, "-digest", DIGEST.hex())
    assert result.returncode == 0, result.stderr
    assert "Verification: OK" in result.stdout


# -- batches -----------------------------------------------------------------------------------
def test_batch_of_one_hundred_shares_one_token(pki: DevPKI, tsa: TimeStampAuthority) -> None:
    digests = [hashlib.sha256(f"mensaje {i}".encode()).digest() for i in range(100)]
    stamps = tsa.stamp_batch(digests)
    assert [s.digest for s in stamps] == digests
    assert len({s.token.serial for s in stamps}) == 1
    # levels 100, 50, 25, 13, 7, 4, 2, 1: the last subtree (leaves 96-99) is promoted three times unpaired
    assert [len(s.path) for s in stamps] == [7] * 96 + [4] * 4
    trust = pki.trust_store()
    for stamp in stamps:
        assert verify_batch_stamp(stamp, trust).serial == stamps[0].token.serial


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 8])
def test_small_and_odd_batches(pki: DevPKI, tsa: TimeStampAuthority, size: int) -> None:
    digests = [hashlib.sha256(bytes([i])).digest() for i in range(size)]
    stamps = tsa.stamp_batch(digests)
    assert len(stamps) == size
    for stamp in stamps:
        verify_batch_stamp(stamp, pki.trust_store())
    if size == 1:
        assert stamps[0].path == ()
        assert stamps[0].token.digest == hashlib.sha256(b"\x00" + digests[0]).digest()


def test_empty_batch_stamps_nothing(tsa: TimeStampAuthority) -> None:
    assert tsa.stamp_batch([]) == []


def test_tampered_batch_path_or_digest_is_a_mismatch(pki: DevPKI, tsa: TimeStampAuthority) -> None:
    digests = [hashlib.sha256(f"m{i}".encode()).digest() for i in range(5)]
    stamp = tsa.stamp_batch(digests)[2]
    side, sibling = stamp.path[0]
    altered = [
        BatchTimeStamp(stamp.token, stamp.digest, ((side, bytes(32)), *stamp.path[1:])),
        BatchTimeStamp(stamp.token, stamp.digest, (("L" if side == "R" else "R", sibling), *stamp.path[1:])),
        BatchTimeStamp(stamp.token, stamp.digest, stamp.path[:-1]),
        BatchTimeStamp(stamp.token, digests[3], stamp.path),
        BatchTimeStamp(stamp.token, hashlib.sha256(b"intruso").digest(), stamp.path),
    ]
    for bad in altered:
        with pytest.raises(GelFault) as excinfo:
            verify_batch_stamp(bad, pki.trust_store())
        assert code_of(excinfo) is FaultCode.TS_MISMATCH


# -- XAdES-T style attachment ------------------------------------------------------------------
def _signed_document(credential: Credential) -> bytes:
    root = etree.fromstring(b'<solicitud xmlns="urn:gel:prueba"><dato>hola</dato><valor>42</valor></solicitud>')
    signer = signxml.XMLSigner(
        method=signxml.methods.enveloped, signature_algorithm="ecdsa-sha256", digest_algorithm="sha256",
        c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#",
    )
    signed = signer.sign(root, key=credential.key_pem, cert=credential.certificate_pem.decode())
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


@pytest.fixture(scope="module")
def signed_document(pki: DevPKI) -> bytes:
    return _signed_document(pki.credential(ENTITY))


def test_attached_stamp_keeps_the_signature_valid(pki: DevPKI, tsa: TimeStampAuthority,
                                                  signed_document: bytes) -> None:
    root = etree.fromstring(signed_document)
    signature = root.find(f"{{{DS}}}Signature")
    assert signature is not None
    assert extract_timestamp(signature) is None
    attach_timestamp(signature, tsa.stamp(signature_value_digest(signature)))
    assert signature.get("Id") == "firma"
    properties = signature.find(f"{{{DS}}}Object/{{{XADES}}}QualifyingProperties")
    assert properties is not None and properties.get("Target") == "#firma"

    stamped = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    cert = pki.credential(ENTITY).certificate_pem
    signxml.XMLVerifier().verify(stamped, x509_cert=cert.decode())

    reparsed = etree.fromstring(stamped).find(f"{{{DS}}}Signature")
    assert reparsed is not None
    token = extract_timestamp(reparsed)
    assert token is not None
    info = verify_token(token, digest=signature_value_digest(reparsed), trust=pki.trust_store())
    assert info.tsa == "GEL Broker TSA de desarrollo"


def test_second_stamp_reuses_the_qualifying_properties(tsa: TimeStampAuthority, signed_document: bytes) -> None:
    signature = etree.fromstring(signed_document).find(f"{{{DS}}}Signature")
    assert signature is not None
    signature.set("Id", "firma-remitente")
    first = tsa.stamp(signature_value_digest(signature))
    attach_timestamp(signature, first)
    attach_timestamp(signature, tsa.stamp(signature_value_digest(signature)))
    assert len(signature.findall(f"{{{DS}}}Object")) == 1
    assert len(list(signature.iter(f"{{{XADES}}}SignatureTimeStamp"))) == 2
    assert signature.get("Id") == "firma-remitente"
    properties = signature.find(f"{{{DS}}}Object/{{{XADES}}}QualifyingProperties")
    assert properties is not None and properties.get("Target") == "#firma-remitente"
    assert extract_timestamp(signature) == first


def test_timestamp_message_and_verify(pki: DevPKI, tsa: TimeStampAuthority, signed_document: bytes) -> None:
    stamped = timestamp_message(signed_document, tsa)
    assert stamped.startswith(b"<?xml")
    signxml.XMLVerifier().verify(stamped, x509_cert=pki.credential(ENTITY).certificate_pem.decode())
    info = verify_message_timestamp(stamped, pki.trust_store())
    assert verify_message_timestamp(etree.fromstring(stamped), pki.trust_store()) == info

    with pytest.raises(GelFault) as excinfo:
        verify_message_timestamp(signed_document, pki.trust_store())
    assert code_of(excinfo) is FaultCode.TS_INVALID
    assert "no trae sello de tiempo" in excinfo.value.falla.message


def test_stamp_does_not_cover_another_signature_value(pki: DevPKI, tsa: TimeStampAuthority,
                                                      signed_document: bytes) -> None:
    root = etree.fromstring(timestamp_message(signed_document, tsa))
    value = root.find(f"{{{DS}}}Signature/{{{DS}}}SignatureValue")
    assert value is not None and value.text
    raw = bytearray(base64.b64decode(value.text))
    raw[0] ^= 0xFF
    value.text = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(GelFault) as excinfo:
        verify_message_timestamp(root, pki.trust_store())
    assert code_of(excinfo) is FaultCode.TS_MISMATCH


def test_corrupt_encapsulated_stamp_is_invalid(pki: DevPKI, tsa: TimeStampAuthority, signed_document: bytes) -> None:
    root = etree.fromstring(timestamp_message(signed_document, tsa))
    node = root.find(f".//{{{XADES}}}EncapsulatedTimeStamp")
    assert node is not None
    node.text = "@@no-es-base64@@"
    with pytest.raises(GelFault) as excinfo:
        verify_message_timestamp(root, pki.trust_store())
    assert code_of(excinfo) is FaultCode.TS_INVALID


def test_xmlsec1_still_verifies_after_stamping(pki: DevPKI, tsa: TimeStampAuthority, signed_document: bytes,
                                               tmp_path: Path, xmlsec1: str) -> None:
    path = tmp_path / "sellado.xml"
    path.write_bytes(timestamp_message(signed_document, tsa))
    result = subprocess.run([xmlsec1, "--verify", "--trusted-pem", str(pki.root_cert_path), str(path)],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stderr
    path.write_bytes(path.read_bytes().replace(b"<dato>hola</dato>", b"<dato>adios</dato>"))
    tampered = subprocess.run([xmlsec1, "--verify", "--trusted-pem", str(pki.root_cert_path), str(path)],
                              capture_output=True, text=True, timeout=30, check=False)
    assert tampered.returncode != 0


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_the_template_encoder_reproduces_asn1crypto_byte_for_byte(pki: DevPKI, rsa_pki: DevPKI, kind: str) -> None:
    """Tokens are assembled from pre-encoded parts for speed; asn1crypto's value-by-value build is the reference."""
    authority = TimeStampAuthority((pki if kind == "ec" else rsa_pki).tsa_credential())
    encoder = authority._encoder
    assert encoder is not None, "the TSA fell back to the slow path: its self-check failed"
    generator = random.Random(7)
    for _ in range(50):
        digest = generator.randbytes(32)
        serial = generator.getrandbits(generator.choice([7, 8, 64, 96, 200]))
        moment = dt.datetime(generator.randint(2000, 2049), 12, 31, 23, 59, 59, tzinfo=dt.UTC)
        nonce = generator.choice([None, 0, 127, 128, generator.getrandbits(64)])
        signature = generator.randbytes(generator.choice([70, 71, 72, 256]))

        def fixed(_attributes: bytes, signature: bytes = signature) -> tuple[bytes, str]:
            return signature, encoder.algorithm

        assert encoder.token(digest, serial, moment, nonce, fixed) == authority._reference_token(
            digest, serial, moment, nonce, fixed)
