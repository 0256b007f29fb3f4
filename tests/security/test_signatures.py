"""Signing and verification: every way a signature can be wrong has its own code."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from lxml import etree

from broker.gelxml import GelFault, MessageType, ServiceRef, build_message, new_header, serialize
from broker.gelxml.envelope import read_header
from broker.gelxml.faults import FaultCode, falla
from broker.gelxml.namespaces import MENSAJE
from broker.gelxml.parsing import parse_untrusted
from broker.security.entities import EntityRegistry
from broker.security.pki import DevPKI
from broker.security.receipts import build_receipt, verify_receipt
from broker.security.signing import DS, sign_message
from broker.security.verification import MemoryReplayGuard, verify_message

FONVIVIENDA = "CO/GOB/830121208"
REGISTRADURIA = "CO/GOB/899999040"
M = f"{{{MENSAJE}}}"


def unsigned_message(sender: str = FONVIVIENDA, recipient: str = REGISTRADURIA,
                     sent_at: dt.datetime | None = None) -> bytes:
    """A platform `falla` message: schema-valid without any service schema."""
    header = new_header(sender=sender, recipient=recipient, service=ServiceRef("verificarIdentidad", "1.0"),
                        message_type=MessageType.FAULT)
    header = replace(header, correlation_id=str(uuid.uuid4()), sent_at=sent_at or header.sent_at)
    payload = falla(FaultCode.VALID_NIT_CHECK_DIGIT, found="1", nit="899999040", expected=6).to_xml()
    return serialize(build_message(header, payload))


def expect(code: FaultCode, action: Callable[[], object]) -> GelFault:
    with pytest.raises(GelFault) as caught:
        action()
    assert caught.value.falla.code == code, caught.value.falla
    assert caught.value.falla.message
    return caught.value


@pytest.fixture
def signed(pki: DevPKI) -> bytes:
    return sign_message(unsigned_message(), pki.credential(FONVIVIENDA))


def test_a_signed_message_verifies_and_names_its_signer(pki: DevPKI, signed: bytes) -> None:
    verified = verify_message(signed, pki.trust_store())
    assert verified.signer == FONVIVIENDA
    assert verified.header.recipient == REGISTRADURIA
    assert verified.root.find(f"{{{DS}}}Signature") is None, "only the signed content is handed on"


def test_xmlsec1_accepts_our_signature(pki: DevPKI, signed: bytes, tmp_path: Path, xmlsec1: str) -> None:
    path = tmp_path / "firmado.xml"
    path.write_bytes(signed)
    result = subprocess.run([xmlsec1, "--verify", "--trusted-pem", str(pki.root_cert_path), str(path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    path.write_bytes(signed.replace(b"899999040</", b"899999041</", 1))
    tampered = subprocess.run([xmlsec1, "--verify", "--trusted-pem", str(pki.root_cert_path), str(path)],
                              capture_output=True, text=True, timeout=30)
    assert tampered.returncode != 0


def test_rsa_keys_sign_and_verify_too(tmp_path: Path, entities: EntityRegistry, xmlsec1: str) -> None:
    rsa_pki = DevPKI(tmp_path / "rsa")
    rsa_pki.initialise(entities, algorithm="rsa")
    signed = sign_message(unsigned_message(), rsa_pki.credential(FONVIVIENDA))
    assert b"rsa-sha256" in signed
    assert verify_message(signed, rsa_pki.trust_store()).signer == FONVIVIENDA
    path = tmp_path / "rsa.xml"
    path.write_bytes(signed)
    result = subprocess.run([xmlsec1, "--verify", "--trusted-pem", str(rsa_pki.root_cert_path), str(path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_unsigned_message_is_refused(pki: DevPKI) -> None:
    expect(FaultCode.AUTH_UNSIGNED, lambda: verify_message(unsigned_message(), pki.trust_store()))


def test_tampered_body_is_refused(pki: DevPKI, signed: bytes) -> None:
    tampered = signed.replace(b"<codFalla>GEL-VALID-NIT_CHECK_DIGIT<", b"<codFalla>GEL-VALID-SCHEMA<", 1)
    assert tampered != signed
    expect(FaultCode.AUTH_BAD_SIGNATURE, lambda: verify_message(tampered, pki.trust_store()))


def test_tampered_header_is_refused(pki: DevPKI, signed: bytes) -> None:
    tampered = signed.replace(REGISTRADURIA.encode(), b"CO/GOB/899999007", 1)
    assert tampered != signed
    expect(FaultCode.AUTH_BAD_SIGNATURE, lambda: verify_message(tampered, pki.trust_store()))


def test_tampered_signature_value_is_refused(pki: DevPKI, signed: bytes) -> None:
    root = parse_untrusted(signed)
    value = root.find(f"{{{DS}}}Signature/{{{DS}}}SignatureValue")
    assert value is not None and value.text
    value.text = ("B" if value.text[0] != "B" else "C") + value.text[1:]
    expect(FaultCode.AUTH_BAD_SIGNATURE, lambda: verify_message(serialize(root), pki.trust_store()))


def test_signature_moved_into_the_body_is_refused(pki: DevPKI, signed: bytes) -> None:
    root = parse_untrusted(signed)
    signature = root.find(f"{{{DS}}}Signature")
    assert signature is not None
    root.find(f"{M}cuerpo").append(signature)
    fault = expect(FaultCode.AUTH_SIGNATURE_LOCATION, lambda: verify_message(serialize(root), pki.trust_store()))
    assert "último hijo" in fault.falla.message


def test_wrapped_signature_cannot_smuggle_a_forged_header(pki: DevPKI, signed: bytes) -> None:
    """XSW: keep the genuine signed message inside the signature, present a forged one outside."""
    genuine = parse_untrusted(signed)
    forged = copy.deepcopy(genuine)
    forged.find(f"{M}encabezado/{M}entidadDestino").text = "CO/GOB/899999007"
    signature = forged.find(f"{{{DS}}}Signature")
    holder = etree.SubElement(signature, f"{{{DS}}}Object")
    holder.append(copy.deepcopy(genuine))
    expect(FaultCode.AUTH_SIGNATURE_LOCATION, lambda: verify_message(serialize(forged), pki.trust_store()))


def test_reference_to_a_fragment_is_refused(pki: DevPKI, signed: bytes) -> None:
    root = parse_untrusted(signed)
    reference = root.find(f"{{{DS}}}Signature/{{{DS}}}SignedInfo/{{{DS}}}Reference")
    reference.set("URI", "#cuerpo")
    expect(FaultCode.AUTH_SIGNATURE_LOCATION, lambda: verify_message(serialize(root), pki.trust_store()))


def test_two_signatures_are_refused(pki: DevPKI, signed: bytes) -> None:
    root = parse_untrusted(signed)
    root.find(f"{M}cuerpo").append(copy.deepcopy(root.find(f"{{{DS}}}Signature")))
    expect(FaultCode.AUTH_SIGNATURE_LOCATION, lambda: verify_message(serialize(root), pki.trust_store()))


def test_entity_cannot_sign_in_another_entitys_name(pki: DevPKI) -> None:
    claims_registraduria = unsigned_message(sender=REGISTRADURIA, recipient=FONVIVIENDA)
    signed = sign_message(claims_registraduria, pki.credential(FONVIVIENDA))
    fault = expect(FaultCode.AUTH_SENDER_MISMATCH, lambda: verify_message(signed, pki.trust_store()))
    assert REGISTRADURIA in fault.falla.message and FONVIVIENDA in fault.falla.message


def test_expired_certificate_is_refused(fresh_pki: DevPKI, entities: EntityRegistry) -> None:
    now = dt.datetime.now(dt.UTC)
    row = fresh_pki.issue(entities.get(FONVIVIENDA), not_before=now - dt.timedelta(days=400),
                          not_after=now - dt.timedelta(days=1))
    signed = sign_message(unsigned_message(), fresh_pki.credential_for(row))
    expect(FaultCode.AUTH_EXPIRED, lambda: verify_message(signed, fresh_pki.trust_store()))


def test_not_yet_valid_certificate_is_refused(fresh_pki: DevPKI, entities: EntityRegistry) -> None:
    now = dt.datetime.now(dt.UTC)
    row = fresh_pki.issue(entities.get(FONVIVIENDA), not_before=now + dt.timedelta(days=1),
                          not_after=now + dt.timedelta(days=30))
    signed = sign_message(unsigned_message(), fresh_pki.credential_for(row))
    expect(FaultCode.AUTH_NOT_YET_VALID, lambda: verify_message(signed, fresh_pki.trust_store()))


def test_revoked_certificate_is_refused(fresh_pki: DevPKI) -> None:
    signed = sign_message(unsigned_message(), fresh_pki.credential(FONVIVIENDA))
    assert verify_message(signed, fresh_pki.trust_store()).signer == FONVIVIENDA
    fresh_pki.revoke(FONVIVIENDA)
    expect(FaultCode.AUTH_REVOKED, lambda: verify_message(signed, fresh_pki.trust_store()))


def test_a_signature_made_before_the_revocation_still_verifies_at_its_time(fresh_pki: DevPKI) -> None:
    """Evidence is checked at its time stamp: revoking a key later must not void what it signed before."""
    signed = sign_message(unsigned_message(), fresh_pki.credential(FONVIVIENDA))
    signed_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    fresh_pki.revoke(FONVIVIENDA)
    trust = fresh_pki.trust_store()
    assert verify_message(signed, trust, window=None, now=signed_at).signer == FONVIVIENDA
    expect(FaultCode.AUTH_REVOKED, lambda: verify_message(signed, trust, window=None))


def test_certificate_without_signing_usage_is_refused(fresh_pki: DevPKI, entities: EntityRegistry) -> None:
    row = fresh_pki.issue(entities.get(FONVIVIENDA), signing=False)
    signed = sign_message(unsigned_message(), fresh_pki.credential_for(row))
    expect(FaultCode.AUTH_KEY_USAGE, lambda: verify_message(signed, fresh_pki.trust_store()))


def test_certificate_from_an_untrusted_root_is_refused(pki: DevPKI, tmp_path: Path,
                                                       entities: EntityRegistry) -> None:
    rogue = DevPKI(tmp_path / "rogue")
    rogue.initialise(entities)
    signed = sign_message(unsigned_message(), rogue.credential(FONVIVIENDA))
    expect(FaultCode.AUTH_UNTRUSTED, lambda: verify_message(signed, pki.trust_store()))


def test_replayed_message_is_refused(pki: DevPKI, signed: bytes) -> None:
    guard = MemoryReplayGuard(dt.timedelta(minutes=5))
    verify_message(signed, pki.trust_store(), replay=guard)
    fault = expect(FaultCode.DUP_REPLAY, lambda: verify_message(signed, pki.trust_store(), replay=guard))
    assert read_header(parse_untrusted(signed)).message_id in fault.falla.message


def test_stale_message_is_refused(pki: DevPKI) -> None:
    old = dt.datetime.now(dt.UTC).astimezone() - dt.timedelta(hours=1)
    signed = sign_message(unsigned_message(sent_at=old.replace(microsecond=0)), pki.credential(FONVIVIENDA))
    expect(FaultCode.DUP_STALE, lambda: verify_message(signed, pki.trust_store(), window=dt.timedelta(minutes=5)))
    assert verify_message(signed, pki.trust_store(), window=None).signer == FONVIVIENDA


def test_stale_message_does_not_enter_the_replay_memory(pki: DevPKI) -> None:
    guard = MemoryReplayGuard(dt.timedelta(minutes=5))
    old = dt.datetime.now(dt.UTC).astimezone() - dt.timedelta(hours=1)
    signed = sign_message(unsigned_message(sent_at=old.replace(microsecond=0)), pki.credential(FONVIVIENDA))
    expect(FaultCode.DUP_STALE, lambda: verify_message(signed, pki.trust_store(), replay=guard))
    assert guard.first_seen(read_header(parse_untrusted(signed)).message_id, old)


def test_receipt_proves_receipt_of_exactly_those_bytes(pki: DevPKI, signed: bytes) -> None:
    receipt = build_receipt(signed, pki.credential(REGISTRADURIA))
    verified = verify_receipt(receipt, signed, pki.trust_store())
    assert verified.signer == REGISTRADURIA
    assert verified.header.message_type is MessageType.RECEIPT
    other = sign_message(unsigned_message(), pki.credential(FONVIVIENDA))
    expect(FaultCode.AUTH_RECEIPT_MISMATCH, lambda: verify_receipt(receipt, other, pki.trust_store()))


def test_receipt_from_someone_other_than_the_recipient_is_refused(pki: DevPKI, signed: bytes) -> None:
    receipt = build_receipt(signed, pki.credential("CO/GOB/899999007"))
    expect(FaultCode.AUTH_SENDER_MISMATCH, lambda: verify_receipt(receipt, signed, pki.trust_store()))


@pytest.mark.parametrize("engine", ["fast", "signxml"])
@pytest.mark.parametrize("where", ["before", "after"])
def test_a_processing_instruction_outside_the_signed_message_is_refused(pki: DevPKI, signed: bytes, engine: str,
                                                                        where: str) -> None:
    """The signature covers `mensaje`; a PI beside it is unsigned content the recipient would still process."""
    instruction = b'<?xml-stylesheet type="text/xsl" href="http://atacante.example/robar.xsl"?>'
    end = signed.index(b"?>") + 2
    added = signed[:end] + b"\n" + instruction + signed[end:] if where == "before" else signed + instruction
    fault = expect(FaultCode.AUTH_BAD_SIGNATURE,
                   lambda: verify_message(added, pki.trust_store(), engine=engine))  # type: ignore[arg-type]
    assert "xml-stylesheet" in fault.falla.message
    commented = signed[:end] + b"\n<!-- un comentario no es contenido firmado ni se procesa -->" + signed[end:]
    assert verify_message(commented, pki.trust_store(), engine=engine).signer == FONVIVIENDA  # type: ignore[arg-type]


def test_xmlsec1_also_refuses_a_processing_instruction_added_after_signing(pki: DevPKI, signed: bytes,
                                                                           tmp_path: Path, xmlsec1: str) -> None:
    """Why the verifier refuses it: for URI="" the standard digests the whole document, PIs included."""
    end = signed.index(b"?>") + 2
    path = tmp_path / "con-instruccion.xml"
    path.write_bytes(signed[:end] + b'\n<?xml-stylesheet href="x.xsl"?>' + signed[end:])
    result = subprocess.run([xmlsec1, "--verify", "--trusted-pem", str(pki.root_cert_path), str(path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "digest" in result.stderr.lower()


@pytest.mark.parametrize("engine", ["fast", "signxml"])
def test_a_namespace_with_a_relative_uri_is_refused_with_a_code(pki: DevPKI, signed: bytes, engine: str) -> None:
    """libxml2's C14N refuses relative namespace URIs; that must be a coded refusal, not a C14NError."""
    declared = signed.replace(b"<encabezado>", b'<encabezado xmlns:x="relativo">', 1)
    assert declared != signed
    expect(FaultCode.AUTH_BAD_SIGNATURE,
           lambda: verify_message(declared, pki.trust_store(), engine=engine))  # type: ignore[arg-type]


def test_a_certificate_cryptography_cannot_read_is_refused_with_a_code(pki: DevPKI, signed: bytes) -> None:
    root = parse_untrusted(signed)
    node = root.find(f"{{{DS}}}Signature/{{{DS}}}KeyInfo/{{{DS}}}X509Data/{{{DS}}}X509Certificate")
    der = base64.b64decode(node.text or "")
    version = der.index(b"\xa0\x03\x02\x01\x02") + 4
    node.text = base64.b64encode(der[:version] + b"\x0a" + der[version + 1:]).decode("ascii")
    fault = expect(FaultCode.AUTH_NO_CERTIFICATE, lambda: verify_message(serialize(root), pki.trust_store()))
    assert "ilegible" in fault.falla.message
