"""The fixed XMLDSig profile, signed and verified with lxml and `cryptography` directly.

One profile only: an enveloped ds:Signature, last child of the signed root, with one Reference URI=""
whose transforms are enveloped-signature then exclusive C14N 1.0 (without comments), a SHA-256 digest,
ECDSA-SHA256 or RSA-SHA256 (PKCS#1 v1.5) over the exclusive C14N of SignedInfo, and the signer
certificate in KeyInfo/X509Data/X509Certificate. The output is what signxml produces for the same
settings (byte for byte with RSA, whose signatures are deterministic).

Exclusive C14N is what makes a direct implementation small: a subtree's canonical form only declares
the namespaces it visibly uses, so SignedInfo canonicalises the same inside the document and alone.

`verify` reads nothing outside the profile: anything else in SignedInfo, a second SignatureValue, a
parameterised canonicalisation (InclusiveNamespaces), comments or processing instructions inside the
signature's structure are refused before any cryptography. The content it returns is parsed from the
exact bytes that were digested, so unsigned comments cannot split the text callers read.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import NoReturn

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from lxml import etree

__all__ = [
    "DS",
    "ECDSA_SHA256",
    "ENVELOPED",
    "EXC_C14N",
    "RSA_SHA256",
    "SHA256",
    "DigestMismatch",
    "OutsideProfile",
    "SignatureError",
    "SignatureValueMismatch",
    "sign",
    "verify",
]

DS = "http://www.w3.org/2000/09/xmldsig#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"

_NSMAP = {"ds": DS}
_PEM_HEADER = "-----BEGIN CERTIFICATE-----\n"
_PEM_FOOTER = "-----END CERTIFICATE-----"
_ECDSA = ec.ECDSA(hashes.SHA256())
_PKCS1 = padding.PKCS1v15()


def _ds(name: str) -> str:
    return f"{{{DS}}}{name}"


_SIGNATURE = _ds("Signature")
_SIGNED_INFO = _ds("SignedInfo")
_C14N_METHOD = _ds("CanonicalizationMethod")
_SIGNATURE_METHOD = _ds("SignatureMethod")
_REFERENCE = _ds("Reference")
_TRANSFORMS = _ds("Transforms")
_TRANSFORM = _ds("Transform")
_DIGEST_METHOD = _ds("DigestMethod")
_DIGEST_VALUE = _ds("DigestValue")
_SIGNATURE_VALUE = _ds("SignatureValue")
_KEY_INFO = _ds("KeyInfo")
_X509_DATA = _ds("X509Data")
_X509_CERTIFICATE = _ds("X509Certificate")
_OBJECT = _ds("Object")
_INCLUSIVE_NAMESPACES = f"{{{EXC_C14N}}}InclusiveNamespaces"


class SignatureError(Exception):
    """The signature does not hold; the message (in Spanish) says why."""


class OutsideProfile(SignatureError):
    """The ds:Signature uses something the fixed profile does not allow."""


class DigestMismatch(SignatureError):
    """The canonical content does not hash to the signed DigestValue."""


class SignatureValueMismatch(SignatureError):
    """SignatureValue is not a signature of SignedInfo by the certificate's key."""


class _Parsers(threading.local):
    """lxml parsers are not thread-safe: one per thread, for re-reading canonical bytes."""

    def __init__(self) -> None:
        self.parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                                      remove_blank_text=False, collect_ids=False)


_parsers = _Parsers()


def _c14n(node: etree._Element) -> bytes:
    return etree.tostring(node, method="c14n", exclusive=True, with_comments=False)


@lru_cache(maxsize=256)
def _certificate_text(certificate: x509.Certificate) -> str:
    """The PEM body (base64 in 64-column lines, final newline included), as signxml writes it."""
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return pem[pem.index(_PEM_HEADER) + len(_PEM_HEADER):pem.index(_PEM_FOOTER)]


def _method_of(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return ECDSA_SHA256
    if isinstance(key, rsa.RSAPrivateKey):
        return RSA_SHA256
    raise TypeError(f"only EC and RSA keys can sign in this profile, not {type(key).__name__}")


def _raw_signature(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, data: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(data, _ECDSA))
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    return key.sign(data, _PKCS1, hashes.SHA256())


def sign(root: etree._Element, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
         certificate: x509.Certificate) -> etree._Element:
    """A copy of `root` with the profile's ds:Signature appended; ds:Signature children it had are dropped."""
    method = _method_of(key)
    signed = copy.deepcopy(root)
    signed.tail = None
    for old in signed.findall(_SIGNATURE):
        signed.remove(old)
    digest = hashlib.sha256(_c14n(signed)).digest()

    signature = etree.Element(_SIGNATURE, nsmap=_NSMAP)
    signed_info = etree.SubElement(signature, _SIGNED_INFO)
    etree.SubElement(signed_info, _C14N_METHOD, Algorithm=EXC_C14N)
    etree.SubElement(signed_info, _SIGNATURE_METHOD, Algorithm=method)
    reference = etree.SubElement(signed_info, _REFERENCE, URI="")
    transforms = etree.SubElement(reference, _TRANSFORMS)
    etree.SubElement(transforms, _TRANSFORM, Algorithm=ENVELOPED)
    etree.SubElement(transforms, _TRANSFORM, Algorithm=EXC_C14N)
    etree.SubElement(reference, _DIGEST_METHOD, Algorithm=SHA256)
    etree.SubElement(reference, _DIGEST_VALUE).text = base64.b64encode(digest).decode("ascii")
    signed.append(signature)

    value = _raw_signature(key, _c14n(signed_info))
    etree.SubElement(signature, _SIGNATURE_VALUE).text = base64.b64encode(value).decode("ascii")
    x509_data = etree.SubElement(etree.SubElement(signature, _KEY_INFO), _X509_DATA)
    etree.SubElement(x509_data, _X509_CERTIFICATE).text = _certificate_text(certificate)
    return signed


# -- verification ------------------------------------------------------------------------------------
def _refuse(detail: str) -> NoReturn:
    raise OutsideProfile(detail)


def _name(element: etree._Element) -> str:
    return f"ds:{etree.QName(element).localname}"


def _blank(text: str | None) -> bool:
    return text is None or not text.strip()


def _elements(parent: etree._Element) -> list[etree._Element]:
    """The element children of `parent`; comments, processing instructions or text between them are refused."""
    if not _blank(parent.text):
        _refuse(f"{_name(parent)} contiene texto")
    children = list(parent)
    for child in children:
        if not isinstance(child.tag, str):
            _refuse(f"{_name(parent)} contiene comentarios o instrucciones de procesamiento")
        if not _blank(child.tail):
            _refuse(f"{_name(parent)} contiene texto")
    return children


def _sequence(parent: etree._Element, *names: str) -> list[etree._Element]:
    children = _elements(parent)
    if [c.tag for c in children] != [_ds(n) for n in names]:
        expected = ", ".join(f"ds:{n}" for n in names)
        _refuse(f"{_name(parent)} debe contener exactamente {expected}")
    return children


_ALGORITHM_ONLY = frozenset({"Algorithm"})
_ID_ONLY = frozenset({"Id"})


def _attributes(element: etree._Element, allowed: frozenset[str] = frozenset()) -> None:
    extra = sorted(str(name) for name in element.attrib if name not in allowed)
    if extra:
        _refuse(f"{_name(element)} lleva atributos no admitidos ({', '.join(extra)})")


def _algorithm(element: etree._Element, *accepted: str) -> str:
    """The Algorithm of a parameterless method element, which must be one of `accepted`."""
    _attributes(element, _ALGORITHM_ONLY)
    if len(element):
        if element.find(_INCLUSIVE_NAMESPACES) is not None:
            _refuse(f"{_name(element)} no admite InclusiveNamespaces (PrefixList)")
        _refuse(f"{_name(element)} no admite parámetros ni contenido")
    if not _blank(element.text):
        _refuse(f"{_name(element)} contiene texto")
    algorithm = element.get("Algorithm")
    if algorithm is None or algorithm not in accepted:
        _refuse(f"{_name(element)} usa {algorithm!r}; se admite {' o '.join(accepted)}")
    return algorithm


def _base64(element: etree._Element, allowed: frozenset[str] = frozenset()) -> bytes:
    _attributes(element, allowed)
    if len(element):
        _refuse(f"{_name(element)} no admite contenido distinto del valor en base64")
    try:
        return base64.b64decode("".join((element.text or "").split()), validate=True)
    except ValueError:
        _refuse(f"{_name(element)} no contiene base64 válido")


@dataclass(frozen=True, slots=True)
class _Profile:
    signed_info: etree._Element
    method: str
    digest: bytes
    value: bytes


def _profile(signature: etree._Element) -> _Profile:
    """The parts of `signature` that verification uses, once SignedInfo and SignatureValue have been checked
    node by node (KeyInfo is read by the caller, ds:Object is never read)."""
    _attributes(signature, _ID_ONLY)
    children = _elements(signature)
    if [c.tag for c in children[:3]] != [_SIGNED_INFO, _SIGNATURE_VALUE, _KEY_INFO] \
            or any(c.tag != _OBJECT for c in children[3:]):
        _refuse("ds:Signature debe contener ds:SignedInfo, un solo ds:SignatureValue, ds:KeyInfo y, "
                "opcionalmente, ds:Object")
    signed_info, signature_value = children[0], children[1]
    _attributes(signed_info, _ID_ONLY)
    c14n_method, signature_method, reference = _sequence(signed_info, "CanonicalizationMethod", "SignatureMethod",
                                                         "Reference")
    _algorithm(c14n_method, EXC_C14N)
    method = _algorithm(signature_method, ECDSA_SHA256, RSA_SHA256)
    _attributes(reference, frozenset({"URI", "Id"}))
    if reference.get("URI") != "":
        _refuse('ds:Reference debe tener URI=""')
    transforms, digest_method, digest_value = _sequence(reference, "Transforms", "DigestMethod", "DigestValue")
    _attributes(transforms)
    enveloped, exclusive = _sequence(transforms, "Transform", "Transform")
    _algorithm(enveloped, ENVELOPED)
    _algorithm(exclusive, EXC_C14N)
    _algorithm(digest_method, SHA256)
    digest = _base64(digest_value)
    if len(digest) != hashlib.sha256().digest_size:
        _refuse("ds:DigestValue no tiene la longitud de un resumen SHA-256")
    return _Profile(signed_info, method, digest, _base64(signature_value, _ID_ONLY))


@lru_cache(maxsize=256)
def _public_key(certificate: x509.Certificate) -> CertificatePublicKeyTypes:
    """The certificate's key; certificates compare by their DER, and loading an EC point is not free."""
    return certificate.public_key()


def _check_value(certificate: x509.Certificate, method: str, signed_info: bytes, value: bytes) -> None:
    public = _public_key(certificate)
    try:
        if method == ECDSA_SHA256 and isinstance(public, ec.EllipticCurvePublicKey):
            size = (public.curve.key_size + 7) // 8
            if len(value) != 2 * size:
                raise SignatureValueMismatch("ECDSA value of the wrong length")
            r, s = int.from_bytes(value[:size], "big"), int.from_bytes(value[size:], "big")
            public.verify(encode_dss_signature(r, s), signed_info, _ECDSA)
        elif method == RSA_SHA256 and isinstance(public, rsa.RSAPublicKey):
            public.verify(value, signed_info, _PKCS1, hashes.SHA256())
        else:
            raise SignatureValueMismatch("signature method does not fit the certificate key")
    except InvalidSignature:
        raise SignatureValueMismatch("signature value does not verify") from None


def _content_c14n(root: etree._Element, signature: etree._Element) -> bytes:
    """Exclusive C14N of `root` without `signature` (the enveloped-signature transform); `root` is untouched.

    The text after ds:Signature stays in the document: lxml keeps it as the element's tail, so it is moved
    onto the preceding node before the element goes.
    """
    detached = copy.deepcopy(root)
    detached.tail = None
    twin = detached[root.index(signature)]
    tail, previous = twin.tail, twin.getprevious()
    detached.remove(twin)
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            detached.text = (detached.text or "") + tail
    return _c14n(detached)


def verify(root: etree._Element, signature: etree._Element, certificate: x509.Certificate) -> etree._Element:
    """Verify `signature` (a child of `root`, its placement already checked) with `certificate`'s key.

    Returns the signed content: `root` without the signature, parsed from the canonical bytes that were
    digested. Raises `OutsideProfile`, `SignatureValueMismatch` or `DigestMismatch`; the SignatureValue is
    checked first, so a DigestValue is only compared once SignedInfo is known to be genuine.
    """
    if signature.getparent() is not root:
        raise OutsideProfile("ds:Signature no es hija del elemento firmado")
    profile = _profile(signature)
    try:
        signed_info = _c14n(profile.signed_info)
        content = _content_c14n(root, signature)
    except etree.C14NError:  # libxml2 refuses, e.g., a namespace declared with a relative URI
        _refuse("el documento no admite la canonicalización C14N exclusiva (¿un espacio de nombres con URI "
                "relativa?)")
    _check_value(certificate, profile.method, signed_info, profile.value)
    if not hmac.compare_digest(hashlib.sha256(content).digest(), profile.digest):
        raise DigestMismatch("digest mismatch")
    return etree.fromstring(content, _parsers.parser)
