"""The fixed-profile XMLDSig fast path against its references: signxml and xmlsec1.

Every direction is checked for ECDSA and RSA credentials: what the fast path signs, signxml and xmlsec1
verify; what signxml and xmlsec1 sign, the fast path verifies. Tampering is refused with the code the
signxml engine gives, and signatures that are cryptographically valid but outside the profile are
refused by the fast path alone.
"""

from __future__ import annotations

import base64
import copy
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from lxml import etree
from signxml import XMLVerifier

from broker.gelxml import GelFault, serialize
from broker.gelxml.faults import FaultCode
from broker.gelxml.parsing import parse_untrusted
from broker.security.entities import EntityRegistry
from broker.security.pki import Credential, DevPKI, TrustStore
from broker.security.signing import DS, Engine, sign_element, sign_message
from broker.security.timestamp import TimeStampAuthority, timestamp_message
from broker.security.verification import verify_message, verify_signature
from broker.security.xmldsig import ECDSA_SHA256, EXC_C14N, RSA_SHA256

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "schemas" / "samples" / "valid" / "movilizarSubsidio-respuesta.xml"
SENDER = "CO/FID/860525148"
OTHER = "CO/GOB/899999040"
MSJ = "http://www.gobiernoenlinea.gov.co/GEL-XML/1.0/schemas/Plataforma/Mensaje"
FIN = "http://www.gobiernoenlinea.gov.co/GEL-XML/1.0/schemas/Comun/Financiero"
INCLUSIVE_C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
DIGEST_MISMATCH = "el resumen del contenido firmado no coincide"
VALUE_MISMATCH = "el valor de la firma no corresponde a la clave del certificado"
ENGINES: tuple[Engine, ...] = ("fast", "signxml")


def ds(name: str) -> str:
    return f"{{{DS}}}{name}"


@dataclass(frozen=True)
class Kit:
    kind: str
    pki: DevPKI
    credential: Credential
    trust: TrustStore

    @property
    def method(self) -> str:
        return ECDSA_SHA256 if self.kind == "ec" else RSA_SHA256


@pytest.fixture(scope="module")
def rsa_pki(tmp_path_factory: pytest.TempPathFactory, entities: EntityRegistry) -> DevPKI:
    pki = DevPKI(tmp_path_factory.mktemp("rsa-pki"))
    pki.initialise(entities, algorithm="rsa")
    return pki


@pytest.fixture(params=["ec", "rsa"])
def kit(request: pytest.FixtureRequest, pki: DevPKI) -> Kit:
    chosen = pki if request.param == "ec" else request.getfixturevalue("rsa_pki")
    return Kit(request.param, chosen, chosen.credential(SENDER), chosen.trust_store())


@pytest.fixture
def message() -> bytes:
    return SAMPLE.read_bytes()


@pytest.fixture
def fast_signed(kit: Kit, message: bytes) -> bytes:
    return sign_message(message, kit.credential)


def verified_content(data: bytes, kit: Kit, engine: Engine = "fast") -> etree._Element:
    signed, certificate, signature = verify_signature(parse_untrusted(data), kit.trust, engine=engine)
    assert certificate == kit.credential.certificate
    assert signature.tag == ds("Signature")
    return signed


def refusal(data: bytes, kit: Kit, engine: Engine = "fast") -> GelFault:
    with pytest.raises(GelFault) as caught:
        verify_signature(parse_untrusted(data), kit.trust, engine=engine)
    return caught.value


def xmlsec1_verifies(xmlsec1: str, data: bytes, kit: Kit, folder: Path) -> subprocess.CompletedProcess[str]:
    path = folder / "firmado.xml"
    path.write_bytes(data)
    return subprocess.run([xmlsec1, "--verify", "--trusted-pem", str(kit.pki.root_cert_path), str(path)],
                          capture_output=True, text=True, timeout=30, check=False)


# -- fast signing, verified by the references --------------------------------------------------------
def test_fast_signature_is_accepted_by_signxml_and_xmlsec1(kit: Kit, fast_signed: bytes, tmp_path: Path,
                                                           xmlsec1: str) -> None:
    pem = kit.credential.certificate_pem.decode("ascii")
    result = XMLVerifier().verify(fast_signed, x509_cert=pem, expect_references=1)
    assert not isinstance(result, list) and result.signed_xml is not None
    assert verify_message(fast_signed, kit.trust, window=None, engine="signxml").signer == SENDER
    checked = xmlsec1_verifies(xmlsec1, fast_signed, kit, tmp_path)
    assert checked.returncode == 0, checked.stderr
    tampered = xmlsec1_verifies(xmlsec1, fast_signed.replace(b"39000000.00<", b"93000000.00<", 1), kit, tmp_path)
    assert tampered.returncode != 0


def test_rsa_fast_signature_is_byte_identical_to_signxml(rsa_pki: DevPKI, message: bytes) -> None:
    credential = rsa_pki.credential(SENDER)
    assert sign_message(message, credential) == sign_message(message, credential, engine="signxml")


def test_ec_fast_signature_differs_from_signxml_only_in_the_random_value(pki: DevPKI, message: bytes) -> None:
    credential = pki.credential(SENDER)
    fast = parse_untrusted(sign_message(message, credential))
    reference = parse_untrusted(sign_message(message, credential, engine="signxml"))
    for root in (fast, reference):
        value = root.find(f"{ds('Signature')}/{ds('SignatureValue')}")
        assert value is not None and len(base64.b64decode(value.text or "")) == 64, "raw r||s, not DER"
        value.text = ""
    assert serialize(fast) == serialize(reference)


def test_signing_copies_and_replaces_an_earlier_signature(pki: DevPKI, message: bytes) -> None:
    root = parse_untrusted(message)
    before = serialize(root)
    once = sign_element(root, pki.credential(SENDER))
    assert serialize(root) == before, "the input is not modified"
    twice = sign_element(once, pki.credential(SENDER))
    assert len(twice.findall(ds("Signature"))) == 1
    assert verify_message(serialize(twice), pki.trust_store(), window=None).signer == SENDER


def test_only_ec_and_rsa_keys_sign(pki: DevPKI, message: bytes) -> None:
    credential = pki.credential(SENDER)
    odd = Credential(credential.name, ed25519.Ed25519PrivateKey.generate(), credential.certificate,  # type: ignore[arg-type]
                     credential.chain)
    with pytest.raises(TypeError):
        sign_element(parse_untrusted(message), odd)


# -- reference signatures, verified by the fast path -------------------------------------------------
def test_signxml_signature_is_accepted_by_the_fast_path(kit: Kit, message: bytes) -> None:
    signed = sign_message(message, kit.credential, engine="signxml")
    content = verified_content(signed, kit)
    assert etree.tostring(content) == etree.tostring(verified_content(signed, kit, "signxml"))
    assert content.find(ds("Signature")) is None
    assert verify_message(signed, kit.trust, window=None).signer == SENDER


_TEMPLATE = """
  <ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
    <ds:SignedInfo>
      <ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
      <ds:SignatureMethod Algorithm="{method}"/>
      <ds:Reference URI="">
        <ds:Transforms>
          <ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
          <ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
        </ds:Transforms>
        <ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
        <ds:DigestValue/>
      </ds:Reference>
    </ds:SignedInfo>
    <ds:SignatureValue/>
    <ds:KeyInfo>
      <ds:X509Data/>
    </ds:KeyInfo>
  </ds:Signature>
"""


def test_xmlsec1_signature_is_accepted_by_the_fast_path(kit: Kit, message: bytes, tmp_path: Path,
                                                        xmlsec1: str) -> None:
    """xmlsec1 signs a pretty-printed template: blank text inside the signature and after it (which the
    enveloped-signature transform keeps, so it is part of the digest)."""
    end = message.rindex(b"</msj:mensaje>")
    template = tmp_path / "plantilla.xml"
    template.write_bytes(message[:end] + _TEMPLATE.format(method=kit.method).encode() + message[end:])
    (tmp_path / "clave.pem").write_bytes(kit.credential.key_pem)
    (tmp_path / "cert.pem").write_bytes(kit.credential.certificate_pem)
    result = subprocess.run([xmlsec1, "--sign", "--privkey-pem", "clave.pem,cert.pem", "--output", "firmado.xml",
                             "plantilla.xml"], cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    signed = (tmp_path / "firmado.xml").read_bytes()
    root = parse_untrusted(signed)
    signature = root.find(ds("Signature"))
    assert signature is not None and signature.tail == "\n"
    before = serialize(root)
    content, _, _ = verify_signature(root, kit.trust)
    assert serialize(root) == before, "verification leaves the tree it was given as it was"
    assert etree.tostring(content) == etree.tostring(verified_content(signed, kit, "signxml"))
    assert verify_message(signed, kit.trust, window=None).signer == SENDER
    without_tail = signed.replace(b"</ds:Signature>\n</msj:mensaje>", b"</ds:Signature></msj:mensaje>")
    assert without_tail != signed
    assert DIGEST_MISMATCH in refusal(without_tail, kit).falla.message


def test_timestamped_signature_still_verifies(pki: DevPKI, message: bytes) -> None:
    stamped = timestamp_message(sign_message(message, pki.credential(SENDER)), TimeStampAuthority(pki.tsa_credential()))
    assert b"SignatureTimeStamp" in stamped
    assert verify_message(stamped, pki.trust_store(), window=None).signer == SENDER


# -- tampering: refused by both engines with the same code and detail --------------------------------
def _edit(action: Callable[[etree._Element], None]) -> Callable[[bytes, Kit], bytes]:
    def edited(data: bytes, kit: Kit) -> bytes:
        root = parse_untrusted(data)
        action(root)
        return serialize(root)
    return edited


def _replace(*pairs: tuple[bytes, bytes]) -> Callable[[bytes, Kit], bytes]:
    def replaced(data: bytes, kit: Kit) -> bytes:
        for old, new in pairs:
            assert old in data, old
            data = data.replace(old, new)
        return data
    return replaced


def _signature_part(root: etree._Element, path: str) -> etree._Element:
    found = root.find(f"{ds('Signature')}/{path}")
    assert found is not None, path
    return found


def _flip_base64(node: etree._Element) -> None:
    raw = bytearray(base64.b64decode(node.text or ""))
    raw[len(raw) // 2] ^= 0x01
    node.text = base64.b64encode(bytes(raw)).decode("ascii")


def _swap_certificate(data: bytes, kit: Kit) -> bytes:
    root = parse_untrusted(data)
    node = _signature_part(root, f"{ds('KeyInfo')}/{ds('X509Data')}/{ds('X509Certificate')}")
    other = kit.pki.credential(OTHER).certificate_pem.decode("ascii")
    node.text = "".join(other.splitlines()[1:-1])
    return serialize(root)


def _child(root: etree._Element, tag: str) -> etree._Element:
    found = root.find(tag)
    assert found is not None, tag
    return found


def _add_element(root: etree._Element) -> None:
    etree.SubElement(_child(root, f"{{{MSJ}}}encabezado"), f"{{{MSJ}}}prioridad").text = "alta"


def _move_signature_into_the_body(root: etree._Element) -> None:
    _child(root, f"{{{MSJ}}}cuerpo").append(_child(root, ds("Signature")))


def _signature_first(root: etree._Element) -> None:
    root.insert(0, _child(root, ds("Signature")))


def _method_of_the_other_kind(root: etree._Element) -> None:
    method = _signature_part(root, f"{ds('SignedInfo')}/{ds('SignatureMethod')}")
    method.set("Algorithm", RSA_SHA256 if method.get("Algorithm") == ECDSA_SHA256 else ECDSA_SHA256)


DIGEST, VALUE, LOCATION = ("digest", "value", "location")
TAMPERING: dict[str, tuple[Callable[[bytes, Kit], bytes], str]] = {
    "altered text": (_replace((b"39000000.00<", b"93000000.00<")), DIGEST),
    "altered header": (_replace((b">CO/PLAT/900000002<", b">CO/PLAT/900000003<")), DIGEST),
    "altered attribute": (_replace((b'algoritmo="sha256"', b'algoritmo="sha512"')), DIGEST),
    "added attribute": (_replace((b"<msj:radicado>", b'<msj:radicado tipo="x">')), DIGEST),
    "added element": (_edit(_add_element), DIGEST),
    "removed element": (_replace((b"<msj:usuario>CC-1020304050</msj:usuario>", b"")), DIGEST),
    "text after the signature": (_replace((b"</ds:Signature>", b"</ds:Signature>\n")), DIGEST),
    "content prefix renamed": (_replace((b"fin:", b"f:"), (b"xmlns:fin=", b"xmlns:f=")), DIGEST),
    "content namespace changed": (_replace((FIN.encode(), b"urn:otro:financiero")), DIGEST),
    "signature prefix renamed": (_replace((b"ds:", b"dsig:"), (b"xmlns:ds=", b"xmlns:dsig=")), VALUE),
    "altered DigestValue": (_edit(lambda r: _flip_base64(_signature_part(
        r, f"{ds('SignedInfo')}/{ds('Reference')}/{ds('DigestValue')}"))), VALUE),
    "altered SignatureValue": (_edit(lambda r: _flip_base64(_signature_part(r, ds("SignatureValue")))), VALUE),
    "swapped certificate": (_swap_certificate, VALUE),
    "signature moved into the body": (_edit(_move_signature_into_the_body), LOCATION),
    "signature moved first": (_edit(_signature_first), LOCATION),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_tampering_is_refused_like_signxml_does(kit: Kit, fast_signed: bytes, case: str) -> None:
    tamper, expected = TAMPERING[case]
    tampered = tamper(fast_signed, kit)
    assert tampered != fast_signed
    faults = [refusal(tampered, kit, engine) for engine in ENGINES]
    for fault in faults:
        if expected == LOCATION:
            assert fault.falla.code == FaultCode.AUTH_SIGNATURE_LOCATION, fault.falla
        else:
            assert fault.falla.code == FaultCode.AUTH_BAD_SIGNATURE, fault.falla
            assert (DIGEST_MISMATCH if expected == DIGEST else VALUE_MISMATCH) in fault.falla.message
    assert faults[0].falla.message == faults[1].falla.message


def test_signature_method_of_the_other_key_kind_is_refused(kit: Kit, fast_signed: bytes) -> None:
    fault = refusal(_edit(_method_of_the_other_kind)(fast_signed, kit), kit)
    assert fault.falla.code == FaultCode.AUTH_BAD_SIGNATURE
    assert VALUE_MISMATCH in fault.falla.message


# -- serialisation changes that leave the canonical form alone are accepted ----------------------------
SAME_CANONICAL_FORM: dict[str, tuple[bytes, bytes]] = {
    "unused namespace declared": (b"<msj:mensaje ", b'<msj:mensaje xmlns:otro="urn:otro" '),
    "namespace declared where it is used": (
        f' xmlns:fin="{FIN}">'.encode(), b">"),
    "prefix redeclared with the same name": (b"<msj:cuerpo>", f'<msj:cuerpo xmlns:msj="{MSJ}">'.encode()),
    "ds declared on the root as well": (b"<msj:mensaje ", f'<msj:mensaje xmlns:ds="{DS}" '.encode()),
    "single quotes": (b'algoritmo="sha256"', b"algoritmo='sha256'"),
    "character reference": (b">PAGADO<", b">&#80;AGADO<"),
    "CDATA section": (b">Pagado<", b"><![CDATA[Pagado]]><"),
    "comment between elements": (b"<msj:cuerpo>", b"<msj:cuerpo><!-- sin firmar -->"),
    "blank space inside tags": (b"<msj:radicado>", b"<msj:radicado >"),
}


@pytest.mark.parametrize("case", sorted(SAME_CANONICAL_FORM))
def test_changes_that_keep_the_canonical_form_are_accepted(kit: Kit, fast_signed: bytes, case: str) -> None:
    old, new = SAME_CANONICAL_FORM[case]
    assert old in fast_signed
    variant = fast_signed.replace(old, new, 1)
    if case == "namespace declared where it is used":
        variant = variant.replace(b"<fin:pago>", f'<fin:pago xmlns:fin="{FIN}">'.encode(), 1)
    assert variant != fast_signed
    assert parse_untrusted(variant) is not None
    content = verified_content(variant, kit)
    assert etree.tostring(content) == etree.tostring(verified_content(variant, kit, "signxml"))
    assert etree.tostring(content, method="c14n", exclusive=True) == \
        etree.tostring(verified_content(fast_signed, kit), method="c14n", exclusive=True)


def test_ds_declared_only_on_the_root_is_accepted(kit: Kit, fast_signed: bytes) -> None:
    declaration = f' xmlns:ds="{DS}"'.encode()
    variant = fast_signed.replace(declaration, b"", 1).replace(b"<msj:mensaje ", b"<msj:mensaje" + declaration + b" ")
    assert variant.count(declaration) == 1 and variant.index(declaration) < variant.index(b"<msj:encabezado")
    verified_content(variant, kit)
    verified_content(variant, kit, "signxml")


def test_a_comment_cannot_split_the_text_that_is_read(kit: Kit, fast_signed: bytes) -> None:
    """C14N drops comments, so a comment inserted into a signed text keeps the signature valid; the content
    handed on must still carry the whole text, not the part before the comment."""
    variant = fast_signed.replace(b">CO/FID/860525148<", b">CO/FID/<!---->860525148<", 1)
    assert parse_untrusted(variant).findtext(f"{{{MSJ}}}encabezado/{{{MSJ}}}entidadOrigen") == "CO/FID/"
    verified = verify_message(variant, kit.trust, window=None)
    assert verified.header.sender == SENDER
    assert not list(verified.root.iter(etree.Comment))


# -- cryptographically valid signatures outside the profile: refused by the fast path only -------------
def _sign_again(root: etree._Element, credential: Credential, *, inclusive: bool = False) -> bytes:
    """Recompute SignatureValue over the edited SignedInfo, so only the profile can object."""
    signed_info = _signature_part(root, ds("SignedInfo"))
    data = etree.tostring(signed_info, method="c14n", exclusive=not inclusive, with_comments=False)
    key = credential.private_key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        value = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        value = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    _signature_part(root, ds("SignatureValue")).text = base64.b64encode(value).decode("ascii")
    return serialize(root)


def _prefix_list(path: str, prefixes: str) -> Callable[[etree._Element], None]:
    def add(root: etree._Element) -> None:
        etree.SubElement(_signature_part(root, path), f"{{{EXC_C14N}}}InclusiveNamespaces", PrefixList=prefixes,
                         nsmap={"ec": EXC_C14N})
    return add


def _set(path: str, attribute: str, value: str) -> Callable[[etree._Element], None]:
    return lambda root: _signature_part(root, path).set(attribute, value)


def _text(path: str, text: str) -> Callable[[etree._Element], None]:
    def put(root: etree._Element) -> None:
        _signature_part(root, path).text = text
    return put


def _second_signature_value(root: etree._Element) -> None:
    value = _signature_part(root, ds("SignatureValue"))
    value.addnext(copy.deepcopy(value))


def _append(path: str, node: Callable[[], etree._Element]) -> Callable[[etree._Element], None]:
    return lambda root: _signature_part(root, path).append(node())


SIGNED_INFO = ds("SignedInfo")
C14N_METHOD = f"{SIGNED_INFO}/{ds('CanonicalizationMethod')}"
REFERENCE = f"{SIGNED_INFO}/{ds('Reference')}"
EXC_TRANSFORM = f"{REFERENCE}/{ds('Transforms')}/{ds('Transform')}[2]"
OUTSIDE_PROFILE: dict[str, tuple[Callable[[etree._Element], None], bool, str]] = {
    # name: (edit, does signxml accept it?, words of the refusal)
    "PrefixList on CanonicalizationMethod": (_prefix_list(C14N_METHOD, "ds"), False, "InclusiveNamespaces"),
    "PrefixList on the exc-c14n transform": (_prefix_list(EXC_TRANSFORM, "msj"), True, "InclusiveNamespaces"),
    "inclusive C14N of SignedInfo": (_set(C14N_METHOD, "Algorithm", INCLUSIVE_C14N), True, "CanonicalizationMethod"),
    "exc-C14N with comments": (_set(C14N_METHOD, "Algorithm", EXC_C14N + "WithComments"), True,
                               "CanonicalizationMethod"),
    "Reference with a Type": (_set(REFERENCE, "Type", "http://www.w3.org/2000/09/xmldsig#Object"), True, "Type"),
    "foreign element in SignedInfo": (_append(SIGNED_INFO, lambda: etree.Element("{urn:otro}extra")), False,
                                      "SignedInfo"),
    "HMACOutputLength": (_append(f"{SIGNED_INFO}/{ds('SignatureMethod')}",
                                 lambda: etree.Element(ds("HMACOutputLength"))), False, "SignatureMethod"),
    "comment in SignedInfo": (_append(SIGNED_INFO, lambda: etree.Comment("x")), True, "comentarios"),
    "text in SignedInfo": (_text(SIGNED_INFO, "hola"), False, "texto"),
    "second SignatureValue": (_second_signature_value, False, "un solo ds:SignatureValue"),
    "DigestValue of the wrong length": (_text(f"{REFERENCE}/{ds('DigestValue')}", "AAAA"), False, "longitud"),
}


@pytest.mark.parametrize("case", sorted(OUTSIDE_PROFILE))
def test_valid_signatures_outside_the_profile_are_refused(kit: Kit, fast_signed: bytes, case: str) -> None:
    edit, signxml_accepts, words = OUTSIDE_PROFILE[case]
    root = parse_untrusted(fast_signed)
    edit(root)
    forged = _sign_again(root, kit.credential, inclusive=case == "inclusive C14N of SignedInfo")
    if signxml_accepts:
        verified_content(forged, kit, "signxml")
    fault = refusal(forged, kit)
    assert fault.falla.code == FaultCode.AUTH_BAD_SIGNATURE, fault.falla
    assert "perfil admitido" in fault.falla.message and words in fault.falla.message, fault.falla.message


def test_signature_value_that_is_not_base64_is_refused(kit: Kit, fast_signed: bytes) -> None:
    root = parse_untrusted(fast_signed)
    _signature_part(root, ds("SignatureValue")).text = "@@no es base64@@"
    fault = refusal(serialize(root), kit)
    assert fault.falla.code == FaultCode.AUTH_BAD_SIGNATURE
    assert "base64" in fault.falla.message


@pytest.mark.parametrize("transforms", [["enveloped", "exc", "exc"], ["exc", "enveloped"], ["enveloped"]])
def test_other_transform_chains_are_refused(kit: Kit, fast_signed: bytes, transforms: list[str]) -> None:
    uris = {"enveloped": "http://www.w3.org/2000/09/xmldsig#enveloped-signature", "exc": EXC_C14N}
    root = parse_untrusted(fast_signed)
    holder = _signature_part(root, f"{REFERENCE}/{ds('Transforms')}")
    for old in list(holder):
        holder.remove(old)
    for name in transforms:
        etree.SubElement(holder, ds("Transform"), Algorithm=uris[name])
    fault = refusal(_sign_again(root, kit.credential), kit)
    assert fault.falla.code == FaultCode.AUTH_SIGNATURE_LOCATION
