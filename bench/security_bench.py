"""Signing, verification and time-stamping of a ~2 KB message, against the raw cryptography underneath.

Both signature engines are measured side by side: the library path (signxml over lxml), kept as the
reference, and the fixed-profile fast path (`broker.security.xmldsig`: lxml C14N and `cryptography`
directly), the default. Beside them, their parts: the raw ECDSA P-256 / RSA-2048 operation on a 32-byte
digest, the exclusive C14N of the message, and certificate checks, so the ratios say how far above the
mathematics the XML machinery is and where the time goes.
"""

from __future__ import annotations

import hashlib
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from lxml import etree

from bench.gelxml_bench import ROOT, pick_sample
from bench.harness import Measurement, measure
from broker.gelxml import parse_untrusted
from broker.security.entities import load_entities
from broker.security.pki import Credential, DevPKI
from broker.security.signing import sign_element, sign_message
from broker.security.timestamp import TimeStampAuthority, verify_token
from broker.security.verification import check_certificate, verify_message, verify_signature


def _raw(credential: Credential, digest: bytes) -> tuple[Any, Any]:
    key = credential.private_key
    public = credential.certificate.public_key()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(digest, ec.ECDSA(hashes.SHA256()))
        return (lambda: key.sign(digest, ec.ECDSA(hashes.SHA256())),
                lambda: public.verify(signature, digest, ec.ECDSA(hashes.SHA256())))
    signature = key.sign(digest, padding.PKCS1v15(), hashes.SHA256())
    return (lambda: key.sign(digest, padding.PKCS1v15(), hashes.SHA256()),
            lambda: public.verify(signature, digest, padding.PKCS1v15(), hashes.SHA256()))


def _suite(pki: DevPKI, label: str, data: bytes, seconds: float) -> list[Measurement]:
    root = parse_untrusted(data)
    sender = root.findtext("{*}encabezado/{*}entidadOrigen") or ""
    credential = pki.credential(sender)
    trust = pki.trust_store()
    signed = sign_message(data, credential)
    signed_root = parse_untrusted(signed)
    digest = hashlib.sha256(data).digest()
    raw_sign, raw_verify = _raw(credential, digest)
    now = datetime.now(UTC)
    return [
        measure(f"{label}: raw sign of a SHA-256 digest (cryptography)", raw_sign, seconds=seconds),
        measure(f"{label}: raw verify (cryptography)", raw_verify, seconds=seconds),
        measure(f"{label}: exclusive C14N of the message (lxml)",
                lambda: etree.tostring(root, method="c14n", exclusive=True), seconds=seconds),
        measure(f"{label}: sign_element (signxml)", lambda: sign_element(root, credential, engine="signxml"),
                seconds=seconds),
        measure(f"{label}: sign_element (fast path)", lambda: sign_element(root, credential, engine="fast"),
                seconds=seconds),
        measure(f"{label}: sign_message (parse + sign + serialize, signxml)",
                lambda: sign_message(data, credential, engine="signxml"), seconds=seconds),
        measure(f"{label}: sign_message (parse + sign + serialize, fast path)",
                lambda: sign_message(data, credential, engine="fast"), seconds=seconds),
        measure(f"{label}: certificate checks (chain, validity, CRL, usage)",
                lambda: check_certificate(credential.certificate, trust, now), seconds=seconds),
        measure(f"{label}: verify_signature (shape + cert + signxml)",
                lambda: verify_signature(signed_root, trust, at=now, engine="signxml"), seconds=seconds),
        measure(f"{label}: verify_signature (shape + cert + fast path)",
                lambda: verify_signature(signed_root, trust, at=now, engine="fast"), seconds=seconds),
        measure(f"{label}: verify_message (parse + all checks, signxml)",
                lambda: verify_message(signed, trust, window=None, engine="signxml"), seconds=seconds),
        measure(f"{label}: verify_message (parse + all checks, fast path)",
                lambda: verify_message(signed, trust, window=None, engine="fast"), seconds=seconds),
    ]


def run(seconds: float) -> dict[str, Any]:
    sample = pick_sample()
    data = sample.read_bytes()
    entities = load_entities(ROOT / "deploy" / "entities.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        ec_pki, rsa_pki = DevPKI(Path(tmp) / "ec"), DevPKI(Path(tmp) / "rsa")
        ec_pki.initialise(entities, algorithm="ec")
        rsa_pki.initialise(entities, algorithm="rsa")
        results = _suite(ec_pki, "ECDSA P-256", data, seconds) + _suite(rsa_pki, "RSA-2048", data, seconds)
        tsa = TimeStampAuthority(ec_pki.tsa_credential())
        digest = hashlib.sha256(data).digest()
        token = tsa.stamp(digest)
        digests = [hashlib.sha256(str(i).encode()).digest() for i in range(100)]
        batch = measure("TSA: stamp_batch of 100 messages (one token)", lambda: tsa.stamp_batch(digests),
                        seconds=seconds, batch=2)
        stamp = measure("TSA: stamp one message (one token each)", lambda: tsa.stamp(digest), seconds=seconds)
        check = measure("TSA: verify_token", lambda: verify_token(token, digest=digest, trust=ec_pki.trust_store(),
                                                                   at=datetime.now(UTC) + timedelta(seconds=1)),
                        seconds=seconds)
        results += [stamp, batch, check]
    by_name = {m.name: m.mean_us for m in results}
    ratios: dict[str, float] = {}
    for prefix, label in (("ec", "ECDSA P-256"), ("rsa", "RSA-2048")):
        raw_sign, raw_verify = (by_name[f"{label}: raw sign of a SHA-256 digest (cryptography)"],
                                by_name[f"{label}: raw verify (cryptography)"])
        signs = {engine: by_name[f"{label}: sign_element ({engine})"] for engine in ("signxml", "fast path")}
        verifies = {engine: by_name[f"{label}: verify_signature (shape + cert + {engine})"]
                    for engine in ("signxml", "fast path")}
        ratios |= {
            f"{prefix}_sign_over_raw_ratio": signs["signxml"] / raw_sign,
            f"{prefix}_verify_over_raw_ratio": verifies["signxml"] / raw_verify,
            f"{prefix}_fast_sign_over_raw_ratio": signs["fast path"] / raw_sign,
            f"{prefix}_fast_verify_over_raw_ratio": verifies["fast path"] / raw_verify,
            f"{prefix}_fast_sign_speedup": signs["signxml"] / signs["fast path"],
            f"{prefix}_fast_verify_speedup": verifies["signxml"] / verifies["fast path"],
        }
    return {
        "sample": sample.name,
        "sample_bytes": len(data),
        "measurements": [m.to_dict() for m in results],
        **ratios,
        "tsa_per_message_batch_us": batch.mean_us / 100,
        "tsa_per_message_single_us": stamp.mean_us,
    }
