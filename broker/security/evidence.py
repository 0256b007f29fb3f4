"""Evidence from the message log: re-check what a record claims, and package it for a third party.

`check_record_evidence` re-verifies, for one record, the platform time stamp over the stored bytes and
(for accepted messages) the sender's signature as of the stamp's time. `export_evidence` writes a zip that
anyone can check with standard tools (xmlsec1, openssl) and without trusting this platform's code.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from broker.gelxml.faults import FaultCode, GelFault, fault
from broker.gelxml.parsing import parse_untrusted
from broker.security.message_log import HASH_FORMAT, LogRecord, MessageLog
from broker.security.pki import TrustStore
from broker.security.signing import DS
from broker.security.timestamp import MAX_CLOCK_SKEW, TimeStampToken, verify_token
from broker.security.verification import verify_message

__all__ = ["check_record_evidence", "export_evidence", "find_record", "signer_certificate_pem"]

PKI_FILES = ("root-ca.pem", "tsa-cert.pem", "crl.pem")


def check_record_evidence(trust: TrustStore, *, require_token: bool = True) -> Callable[[LogRecord], None]:
    """A check for `MessageLog.verify`: raises `GelFault` when a record's evidence does not hold.

    The token must stamp SHA-256 of the stored bytes and come from a trusted TSA no later than the record;
    an accepted message must carry a valid signature of its sender at the stamp's time (a rejected one may
    legitimately be badly signed: that is why it was rejected). `require_token` makes a missing stamp on an
    accepted record a failure, since the pipeline stamps everything it accepts before recording it.
    """

    def check(record: LogRecord) -> None:
        at = record.recorded_at
        if record.token is not None:
            info = verify_token(record.token, digest=hashlib.sha256(record.message).digest(), trust=trust)
            if info.gen_time > record.recorded_at + MAX_CLOCK_SKEW:
                raise fault(FaultCode.TS_INVALID, detail=(
                    f"el sello es del {info.gen_time.isoformat()}, posterior al registro "
                    f"({record.recorded_at.isoformat()})"
                ))
            at = info.gen_time
        elif require_token and record.outcome == "aceptado":
            raise fault(FaultCode.TS_INVALID, detail="el registro de un mensaje aceptado no tiene sello de tiempo")
        if record.outcome == "aceptado":
            verify_message(record.message, trust, window=None, now=at)

    return check


def find_record(log: MessageLog, seq_or_message_id: str | int) -> LogRecord:
    """A record by its number, or by idMensaje (the accepted one when a message was logged more than once)."""
    if isinstance(seq_or_message_id, int) or seq_or_message_id.isdigit():
        return log.get(int(seq_or_message_id))
    found = log.find(seq_or_message_id)
    if not found:
        raise fault(FaultCode.LOG_NOT_FOUND, record=f"con idMensaje {seq_or_message_id}")
    accepted = [r for r in found if r.outcome == "aceptado"]
    return (accepted or found)[-1]


def signer_certificate_pem(message: bytes) -> bytes | None:
    """The certificate in the message's ds:Signature/ds:KeyInfo, as PEM (None when there is none)."""
    try:
        root = parse_untrusted(message)
    except GelFault:
        return None
    node = root.find(f"{{{DS}}}Signature/{{{DS}}}KeyInfo/{{{DS}}}X509Data/{{{DS}}}X509Certificate")
    if node is None or not (node.text or "").strip():
        return None
    try:
        certificate = x509.load_der_x509_certificate(base64.b64decode("".join((node.text or "").split())))
    except ValueError:
        return None
    return certificate.public_bytes(serialization.Encoding.PEM)


def _registro(record: LogRecord, token: TimeStampToken | None) -> dict[str, object]:
    data: dict[str, object] = record.to_dict()
    data["contenido_encadenado"] = record.chained_fields()
    if token is not None:
        data["sello"] = {
            "fecha": token.gen_time.astimezone(dt.UTC).isoformat(),
            "serie": str(token.serial),
            "politica": token.policy,
            "resumen_sellado": token.digest.hex(),
        }
    return data


_HASH_COMMAND = (
    "python3 -c 'import json,hashlib; r=json.load(open(\"registro.json\", encoding=\"utf-8\")); "
    "c=json.dumps(r[\"contenido_encadenado\"], sort_keys=True, separators=(\",\",\":\"), ensure_ascii=False); "
    "print(hashlib.sha256(c.encode(\"utf-8\")).hexdigest() == r[\"record_hash\"])'"
)


def _leame(record: LogRecord, files: list[str]) -> str:
    lines = [
        f"Evidencia del registro {record.seq} del log de mensajes de la Plataforma de Interoperabilidad GEL",
        "",
        f"Mensaje {record.message_id}: {record.message_type} del servicio {record.service}, de {record.sender} "
        f"para {record.recipient}, {record.outcome} por la plataforma el {record.recorded_at.isoformat()}"
        + (f" (falla {record.fault_code})." if record.fault_code else "."),
        "",
        "Qué prueba este paquete:",
        "  - mensaje.xml son los bytes exactos que recibió la plataforma, firmados por la entidad de origen",
        "    (firmante.pem es el certificado que trae la firma);",
        "  - sello.tsr es un sello de tiempo RFC 3161 de la autoridad de estampado de la plataforma sobre",
        "    el SHA-256 de esos bytes: el mensaje existía así en esa fecha y no ha cambiado desde entonces;",
        "  - registro.json es el registro del log, encadenado por hash con el anterior (prev_hash).",
        "",
        "Cómo comprobarlo (sin usar el software de la plataforma):",
        "  1. Firma de la entidad:",
        "       xmlsec1 --verify --trusted-pem root-ca.pem mensaje.xml",
        "  2. Sello de tiempo sobre los bytes del mensaje (debe decir «Verification: OK»):",
        "       openssl ts -verify -data mensaje.xml -in sello.tsr -CAfile root-ca.pem -untrusted tsa-cert.pem",
        "     Fecha del sello: openssl ts -reply -in sello.tsr -text",
        "  3. Certificados revocados: openssl crl -in crl.pem -noout -text",
        "  4. Resumen del registro: sha256sum mensaje.xml debe dar message_sha256 de registro.json; y",
        "     record_hash es el SHA-256 del JSON canónico (claves ordenadas, sin espacios, UTF-8) de",
        f"     contenido_encadenado (formato {HASH_FORMAT}); esta orden debe imprimir True:",
        f"       {_HASH_COMMAND}",
        "     token_sha256 es el SHA-256 del sello (openssl ts -reply -in sello.tsr -token_out -out sello.tst;",
        "     sha256sum sello.tst).",
        "",
        "La cadena completa (que ningún registro falta, se alteró o cambió de orden) se comprueba en la",
        "plataforma con: gel log verify",
        "",
        "Archivos: " + ", ".join(files),
        "",
    ]
    return "\n".join(lines)


def export_evidence(log: MessageLog, seq_or_message_id: str | int, out: Path, pki_dir: Path) -> Path:
    """Write the evidence package of one record to the zip `out` and return its path."""
    record = find_record(log, seq_or_message_id)
    token = TimeStampToken.from_der(record.token) if record.token is not None else None
    contents: dict[str, bytes] = {"mensaje.xml": record.message}
    if token is not None:
        contents["sello.tsr"] = token.response_der()
    signer = signer_certificate_pem(record.message)
    if signer is not None:
        contents["firmante.pem"] = signer
    for name in PKI_FILES:
        path = pki_dir / name
        if path.exists():
            contents[name] = path.read_bytes()
    contents["registro.json"] = (
        json.dumps(_registro(record, token), ensure_ascii=False, indent=2) + "\n"
    ).encode("utf-8")
    contents["LEAME.txt"] = _leame(record, [*contents, "LEAME.txt"]).encode("utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    temporary.replace(out)
    return out
