"""Signing: one enveloped XMLDSig over the whole `mensaje`.

The profile is fixed and interoperable: exclusive C14N, SHA-256 digest, ECDSA-SHA256 (or RSA-SHA256
for RSA keys), one Reference URI="" with the enveloped-signature transform, the signer's certificate in
KeyInfo, the Signature as the last child of `mensaje`. `xmlsec1 --verify --trusted-pem root-ca.pem`
accepts what this module produces.

Two engines produce the same signature: `fast` (the default: `broker.security.xmldsig`, lxml and
`cryptography` directly, one copy of the tree) and `signxml`, the reference implementation the tests
and benchmarks compare it with.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree
from signxml import XMLSigner, methods
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod

from broker.gelxml.envelope import serialize
from broker.gelxml.parsing import DEFAULT_LIMITS, ParseLimits, parse_untrusted
from broker.security import xmldsig
from broker.security.pki import Credential
from broker.security.xmldsig import DS

__all__ = ["DS", "SIGNATURE_METHODS", "Engine", "sign_element", "sign_message", "signature_of"]

Engine = Literal["fast", "signxml"]
SIGNATURE_METHODS = {
    "ec": SignatureMethod.ECDSA_SHA256,
    "rsa": SignatureMethod.RSA_SHA256,
}


@cache
def _signer(key_kind: str) -> XMLSigner:
    return XMLSigner(
        method=methods.enveloped,
        signature_algorithm=SIGNATURE_METHODS[key_kind],
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )


def signature_of(root: etree._Element) -> etree._Element | None:
    """The ds:Signature child of `root`, if any."""
    return root.find(f"{{{DS}}}Signature")


def sign_element(root: etree._Element, credential: Credential, *, engine: Engine = "fast") -> etree._Element:
    """A signed copy of `root`; any signature already on it is replaced."""
    if engine == "fast":
        return xmldsig.sign(root, credential.private_key, credential.certificate)
    unsigned = etree.fromstring(etree.tostring(root))
    for old in unsigned.findall(f"{{{DS}}}Signature"):
        unsigned.remove(old)
    kind = "ec" if isinstance(credential.private_key, ec.EllipticCurvePrivateKey) else "rsa"
    signed: etree._Element = _signer(kind).sign(
        unsigned, key=credential.private_key, cert=credential.certificate_pem.decode("ascii")
    )
    return signed


def sign_message(message: bytes | etree._Element, credential: Credential,
                 limits: ParseLimits = DEFAULT_LIMITS, *, engine: Engine = "fast") -> bytes:
    """Sign a message (bytes from outside are parsed with the hardened parser) and return its bytes."""
    root = parse_untrusted(message, limits) if isinstance(message, bytes) else message
    return serialize(sign_element(root, credential, engine=engine))
