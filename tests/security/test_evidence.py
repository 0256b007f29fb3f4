"""Evidence from the message log: re-checked by the platform, and checkable by a third party with standard tools."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from broker.gelxml import read_header
from broker.gelxml.faults import FaultCode, GelFault
from broker.gelxml.parsing import parse_untrusted
from broker.security.evidence import check_record_evidence, export_evidence
from broker.security.message_log import LogEntry, LogRecord, MessageLog
from broker.security.pki import DevPKI
from broker.security.signing import sign_message
from broker.security.timestamp import TimeStampAuthority
from tests.security.test_signatures import FONVIVIENDA, REGISTRADURIA, unsigned_message

GEL = Path(sys.executable).parent / "gel"


def log_entry(message: bytes, tsa: TimeStampAuthority | None, *, outcome: str = "aceptado",
              stamped: bytes | None = None) -> LogEntry:
    header = read_header(parse_untrusted(message))
    token = tsa.stamp(hashlib.sha256(stamped or message).digest()).der if tsa is not None else None
    return LogEntry(
        message=message, message_id=header.message_id, sender=header.sender, recipient=header.recipient,
        service=str(header.service), message_type=header.message_type.value, outcome=outcome,  # type: ignore[arg-type]
        fault_code=None if outcome == "aceptado" else "GEL-AUTH-BAD_SIGNATURE", token=token,
        routing={"cola": "gel.entidad.899999040"},
    )


@pytest.fixture
def tsa(pki: DevPKI) -> TimeStampAuthority:
    return TimeStampAuthority(pki.tsa_credential())


@pytest.fixture
def signed(pki: DevPKI) -> bytes:
    return sign_message(unsigned_message(), pki.credential(FONVIVIENDA))


@pytest.fixture
def log(tmp_path: Path) -> MessageLog:
    return MessageLog(f"sqlite:///{tmp_path / 'log.db'}")


def test_a_signed_and_stamped_record_has_valid_evidence(pki: DevPKI, tsa: TimeStampAuthority, signed: bytes,
                                                        log: MessageLog) -> None:
    record = log.append(log_entry(signed, tsa))
    check = check_record_evidence(pki.trust_store())
    check(record)
    result = log.verify(check)
    assert result.ok and result.checked == 1, result.fault


def test_a_rejected_badly_signed_message_is_still_good_evidence_of_what_arrived(
        pki: DevPKI, tsa: TimeStampAuthority, signed: bytes, log: MessageLog) -> None:
    tampered = signed.replace(REGISTRADURIA.encode() + b"</", b"CO/GOB/899999041</", 1)
    assert tampered != signed
    log.append(log_entry(tampered, tsa, outcome="rechazado"))
    assert log.verify(check_record_evidence(pki.trust_store())).ok
    log.append(log_entry(tampered, tsa, outcome="aceptado"))
    result = log.verify(check_record_evidence(pki.trust_store()))
    assert not result.ok and result.fault is not None and result.record == 2
    assert result.fault.code == FaultCode.LOG_BAD_EVIDENCE
    assert "GEL-AUTH-BAD_SIGNATURE" in result.fault.message


def test_a_token_over_other_bytes_is_bad_evidence(pki: DevPKI, tsa: TimeStampAuthority, signed: bytes,
                                                  log: MessageLog) -> None:
    log.append(log_entry(signed, tsa, stamped=signed + b"\n"))
    result = log.verify(check_record_evidence(pki.trust_store()))
    assert result.fault is not None and result.fault.code == FaultCode.LOG_BAD_EVIDENCE
    assert "GEL-TS-MISMATCH" in result.fault.message


def test_an_accepted_record_without_a_stamp_is_bad_evidence(pki: DevPKI, signed: bytes, log: MessageLog) -> None:
    record = log.append(log_entry(signed, None))
    with pytest.raises(GelFault) as caught:
        check_record_evidence(pki.trust_store())(record)
    assert caught.value.falla.code == FaultCode.TS_INVALID
    check_record_evidence(pki.trust_store(), require_token=False)(record)


def _unzip(path: Path, into: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        archive.extractall(into)
        return {name: archive.read(name) for name in archive.namelist()}


def test_exported_evidence_verifies_with_xmlsec1_and_openssl(
        pki: DevPKI, tsa: TimeStampAuthority, signed: bytes, log: MessageLog, tmp_path: Path,
        xmlsec1: str, openssl: str) -> None:
    log.append(log_entry(unsigned_message(), tsa, outcome="rechazado"))
    record = log.append(log_entry(signed, tsa))
    out = export_evidence(log, record.message_id, tmp_path / "evidencia.zip", pki.directory)
    folder = tmp_path / "evidencia"
    files = _unzip(out, folder)
    assert set(files) == {"mensaje.xml", "sello.tsr", "firmante.pem", "root-ca.pem", "tsa-cert.pem", "crl.pem",
                          "registro.json", "LEAME.txt"}
    assert files["mensaje.xml"] == signed
    assert files["firmante.pem"] == pki.credential(FONVIVIENDA).certificate_pem
    registro = json.loads(files["registro.json"])
    assert registro["seq"] == 2 and registro["record_hash"] == record.record_hash
    assert registro["prev_hash"] == log.get(1).record_hash
    assert registro["message_sha256"] == hashlib.sha256(signed).hexdigest()
    leame = files["LEAME.txt"].decode("utf-8")
    for command in ("xmlsec1 --verify --trusted-pem root-ca.pem mensaje.xml",
                    "openssl ts -verify -data mensaje.xml -in sello.tsr -CAfile root-ca.pem -untrusted tsa-cert.pem"):
        assert command in leame

    xml = subprocess.run([xmlsec1, "--verify", "--trusted-pem", "root-ca.pem", "mensaje.xml"], cwd=folder,
                         capture_output=True, text=True, timeout=30)
    assert xml.returncode == 0, xml.stderr
    ts = subprocess.run([openssl, "ts", "-verify", "-data", "mensaje.xml", "-in", "sello.tsr", "-CAfile",
                         "root-ca.pem", "-untrusted", "tsa-cert.pem"], cwd=folder,
                        capture_output=True, text=True, timeout=30)
    assert ts.returncode == 0, ts.stdout + ts.stderr
    assert "Verification: OK" in ts.stdout

    (folder / "mensaje.xml").write_bytes(signed.replace(b"899999040</", b"899999041</", 1))
    forged = subprocess.run([openssl, "ts", "-verify", "-data", "mensaje.xml", "-in", "sello.tsr", "-CAfile",
                             "root-ca.pem", "-untrusted", "tsa-cert.pem"], cwd=folder,
                            capture_output=True, text=True, timeout=30)
    assert forged.returncode != 0

    token = subprocess.run([openssl, "ts", "-reply", "-in", "sello.tsr", "-token_out", "-out", "sello.tst"],
                           cwd=folder, capture_output=True, text=True, timeout=30)
    assert token.returncode == 0, token.stderr
    assert hashlib.sha256((folder / "sello.tst").read_bytes()).hexdigest() == registro["token_sha256"]
    recompute = next(line.strip() for line in leame.splitlines() if line.strip().startswith("python3 -c"))
    recomputed = subprocess.run(recompute.replace("python3", f'"{sys.executable}"', 1), shell=True, cwd=folder,
                                capture_output=True, text=True, timeout=30)
    assert recomputed.stdout.strip() == "True", recomputed.stderr


def _gel(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(GEL), *args], env=env, capture_output=True, text=True, timeout=120)


def test_gel_log_commands(pki: DevPKI, tsa: TimeStampAuthority, signed: bytes, tmp_path: Path) -> None:
    if not GEL.exists():
        pytest.skip(f"{GEL} is not installed (pip install -e .)")
    database = tmp_path / "gel.db"
    with MessageLog(f"sqlite:///{database}") as log:
        records: list[LogRecord] = [log.append(log_entry(signed, tsa))]
        records += [log.append(log_entry(sign_message(unsigned_message(), pki.credential(FONVIVIENDA)), tsa))
                    for _ in range(3)]
    env = {**os.environ, "GEL_DATABASE_URL": f"sqlite:///{database}", "GEL_CERTS_DIR": str(pki.directory),
           "GEL_LOG_FORMAT": "console"}
    env.pop("GEL_CONFIG", None)

    ok = _gel("log", "verify", env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Registro íntegro: 4 registros verificados." in ok.stdout
    as_json = _gel("log", "verify", "--json", env=env)
    assert json.loads(as_json.stdout) == {"integro": True, "verificados": 4, "registro": None, "falla": None}

    shown = _gel("log", "show", records[1].message_id, env=env)
    assert shown.returncode == 0, shown.stderr
    assert records[1].record_hash in shown.stdout and "Registro 2" in shown.stdout
    missing = _gel("log", "show", "99", env=env)
    assert missing.returncode != 0 and "GEL-LOG-NOT_FOUND" in missing.stderr and "Traceback" not in missing.stderr

    exported = _gel("log", "export", "3", "-o", str(tmp_path / "e.zip"), env=env)
    assert exported.returncode == 0, exported.stderr
    assert _unzip(tmp_path / "e.zip", tmp_path / "e")["mensaje.xml"] == records[2].message

    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE message_log SET message = CAST(:m AS BLOB) WHERE seq = 3",
                           {"m": records[2].message.replace(b"<", b" <", 1)})
    bad = _gel("log", "verify", env=env)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "GEL-LOG-ALTERED" in bad.stdout and "registro 3" in bad.stdout
    assert "Traceback" not in bad.stdout + bad.stderr

    no_pki = _gel("log", "verify", env={**env, "GEL_CERTS_DIR": str(tmp_path / "nada")})
    assert no_pki.returncode == 2 and "GEL-PKI-NOT_INITIALISED" in no_pki.stderr
    assert "Traceback" not in no_pki.stderr
