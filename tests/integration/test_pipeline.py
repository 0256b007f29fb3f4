"""The admission pipeline: every message ends in the log, admitted with a token or rejected with its code."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from broker.catalog import load_catalog
from broker.gateway import Admitted, Pipeline, Rejected
from broker.gateway.pipeline import Arrival, Duplicate, LogReplayGuard
from broker.gelxml import SchemaRegistry
from broker.gelxml.envelope import reissue
from broker.gelxml.parsing import parse_untrusted
from broker.security.evidence import check_record_evidence
from broker.security.message_log import MessageLog
from broker.security.pki import DevPKI
from broker.security.signing import sign_message
from broker.security.timestamp import TimeStampAuthority, verify_token
from broker.security.verification import MemoryReplayGuard
from tests.conftest import ROOT, SAMPLES, require_tool

REQUEST = SAMPLES / "valid" / "verificarIdentidad-solicitud.xml"
ORCHESTRATOR = "CO/PLAT/900000002"


@pytest.fixture
def pipeline(registry: SchemaRegistry, pki: DevPKI, tmp_path: Path) -> Pipeline:
    return Pipeline(registry=registry, trust=pki.trust_store(), tsa=TimeStampAuthority(pki.tsa_credential()),
                    log=MessageLog(f"sqlite:///{tmp_path / 'log.db'}"),
                    replay=MemoryReplayGuard(timedelta(minutes=5)), window=None)


def test_a_signed_valid_message_is_admitted_stamped_and_recorded(pipeline: Pipeline, pki: DevPKI) -> None:
    signed = sign_message(REQUEST.read_bytes(), pki.credential(ORCHESTRATOR))
    outcome = pipeline.admit(signed)
    assert isinstance(outcome, Admitted), outcome
    assert outcome.verified.signer == ORCHESTRATOR
    assert outcome.record.outcome == "aceptado" and outcome.record.message == signed
    verify_token(outcome.record.token or b"", digest=hashlib.sha256(signed).digest(), trust=pki.trust_store())
    assert pipeline.log.verify(check_record_evidence(pki.trust_store())).ok


def test_rejections_are_recorded_with_their_code(pipeline: Pipeline, pki: DevPKI) -> None:
    unsigned = REQUEST.read_bytes()
    garbage = b"\x00\x01 not xml"
    invalid = sign_message((SAMPLES / "invalid" / "GEL-VALID-PATTERN--vivienda-codmunicipio-cuatro-digitos.xml")
                           .read_bytes(), pki.credential("CO/CCF/860007336"))
    outcomes = [pipeline.admit(data) for data in (unsigned, garbage, invalid)]
    assert all(isinstance(o, Rejected) for o in outcomes)
    codes = [o.falla.code for o in outcomes if isinstance(o, Rejected)]
    assert codes == ["GEL-AUTH-UNSIGNED", "GEL-PARSE-ENCODING", "GEL-VALID-PATTERN"]
    records = list(pipeline.log.records())
    assert [r.fault_code for r in records] == codes
    assert records[1].message == garbage and records[1].message_id == ""
    assert records[0].message_id and records[0].sender == ORCHESTRATOR
    assert pipeline.log.verify(check_record_evidence(pki.trust_store())).ok


def test_a_replay_of_an_old_message_is_refused_even_without_a_freshness_window(pipeline: Pipeline,
                                                                               pki: DevPKI) -> None:
    signed = sign_message(REQUEST.read_bytes(), pki.credential(ORCHESTRATOR))
    assert isinstance(pipeline.admit(signed), Admitted)
    again = pipeline.admit(signed)
    assert isinstance(again, Rejected) and again.falla.code == "GEL-DUP-REPLAY"


@pytest.mark.parametrize("transport", ["embedded", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def test_make_demo_runs_the_housing_window_and_says_what_it_did(tmp_path: Path, transport: str,
                                                               request: pytest.FixtureRequest) -> None:
    env = {**os.environ, "GEL_CERTS_DIR": str(tmp_path / "pki"),
           "GEL_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}", "GEL_TRANSPORT": transport,
           "GEL_ORCHESTRATOR_DATABASE_URL": f"sqlite:///{tmp_path / 'orquestador.db'}"}
    if transport == "rabbitmq":
        request.getfixturevalue("amqp_url")
        require_tool("rabbitmqctl")
    result = subprocess.run([sys.executable, "-m", "broker.cli", "demo", "--postulaciones", "8"], capture_output=True,
                            text=True, timeout=300, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    said = {"embedded": "Transporte: embebido (GEL_TRANSPORT=embedded)",
            "rabbitmq": "Transporte: RabbitMQ en 127.0.0.1 (vhost gel-demo, un usuario por entidad)"}[transport]
    assert said in result.stdout
    assert "Trámites terminados" in result.stdout and "8/8" in result.stdout  # the progress bar, finished
    assert "Resultado de 8 postulaciones" in result.stdout and "Subsidio asignado" in result.stdout
    assert "Coinciden con lo que dicen los sistemas heredados sembrados: 8 de 8." in result.stdout
    assert "Historia del trámite VUV-" in result.stdout and "4 suscriptores del catálogo" in result.stdout
    assert result.stdout.count("falla firmada GEL-") == 7 + 5 and "✗" not in result.stdout
    assert "GEL-AUTH-TRANSPORT_USER" in result.stdout and "Registro íntegro" in result.stdout
    assert (tmp_path / "evidencia-demo.zip").is_file()


@pytest.fixture
def guarded(registry: SchemaRegistry, pki: DevPKI, tmp_path: Path) -> Pipeline:
    """The gateway's configuration: catalog authorisation and the log as shared replay memory."""
    log = MessageLog(f"sqlite:///{tmp_path / 'guarded.db'}")
    return Pipeline(registry=registry, trust=pki.trust_store(), tsa=TimeStampAuthority(pki.tsa_credential()),
                    log=log, replay=LogReplayGuard(log), window=None,
                    catalog=load_catalog(ROOT / "deploy" / "catalog.yaml"))


def test_the_amqp_user_must_be_the_sender(guarded: Pipeline, pki: DevPKI) -> None:
    signed = sign_message(REQUEST.read_bytes(), pki.credential(ORCHESTRATOR))
    outcome = guarded.admit(signed, transport_user="CO/CCF/860007336")
    assert isinstance(outcome, Rejected) and outcome.falla.code == "GEL-AUTH-TRANSPORT_USER"
    assert isinstance(guarded.admit(signed, transport_user=ORCHESTRATOR), Admitted)


def test_an_unauthorised_caller_is_refused_before_stamping(guarded: Pipeline, pki: DevPKI) -> None:
    caja = "CO/CCF/860007336"
    forged = REQUEST.read_bytes().replace(ORCHESTRATOR.encode(), caja.encode(), 1)
    outcome = guarded.admit(sign_message(forged, pki.credential(caja)), transport_user=caja)
    assert isinstance(outcome, Rejected) and outcome.falla.code == "GEL-AUTHZ-DENIED"
    assert outcome.record.token is None


def test_a_reply_passes_only_after_its_request_was_admitted(guarded: Pipeline, pki: DevPKI) -> None:
    registraduria = "CO/GOB/899999040"
    reply = sign_message((SAMPLES / "valid" / "verificarIdentidad-respuesta.xml").read_bytes(),
                         pki.credential(registraduria))
    early = guarded.admit(reply, transport_user=registraduria)
    assert isinstance(early, Rejected) and early.falla.code == "GEL-AUTHZ-UNSOLICITED_REPLY"
    request = sign_message(REQUEST.read_bytes(), pki.credential(ORCHESTRATOR))
    assert isinstance(guarded.admit(request, transport_user=ORCHESTRATOR), Admitted)
    assert isinstance(guarded.admit(reply, transport_user=registraduria), Admitted)
    again = guarded.admit(reply, transport_user=registraduria)
    assert isinstance(again, Rejected) and again.falla.code == "GEL-DUP-REPLAY"


def test_a_batch_admits_in_order_and_keeps_one_copy_of_a_repeated_message(guarded: Pipeline, pki: DevPKI) -> None:
    credential = pki.credential(ORCHESTRATOR)
    template = parse_untrusted(REQUEST.read_bytes())
    first, other = sign_message(reissue(template), credential), sign_message(reissue(template), credential)
    altered = parse_untrusted(first)
    altered.remove(altered[-1])  # the signature
    altered.find(".//{*}asunto").text = "Otro asunto con el mismo idMensaje"  # type: ignore[union-attr]
    same_id_other_bytes = sign_message(altered, credential)
    outcomes = guarded.admit_batch([Arrival(first, ORCHESTRATOR), Arrival(b"<roto"), Arrival(first, ORCHESTRATOR),
                                    Arrival(other, ORCHESTRATOR), Arrival(same_id_other_bytes, ORCHESTRATOR)])
    assert [type(o).__name__ for o in outcomes] == ["Admitted", "Rejected", "Duplicate", "Admitted", "Rejected"]
    assert isinstance(outcomes[0], Admitted) and isinstance(outcomes[2], Duplicate)
    assert outcomes[2].record.seq == outcomes[0].record.seq
    assert isinstance(outcomes[4], Rejected) and outcomes[4].falla.code == "GEL-DUP-REPLAY"
    again = guarded.admit_batch([Arrival(first, ORCHESTRATOR)])
    assert isinstance(again[0], Rejected) and again[0].falla.code == "GEL-DUP-REPLAY", "the log is the replay memory"
    assert [r.outcome for r in guarded.log.records()] == ["aceptado", "rechazado", "aceptado", "rechazado",
                                                         "rechazado"]
    assert guarded.log.verify(check_record_evidence(pki.trust_store())).ok


def test_revoking_a_key_later_leaves_the_log_verifiable(registry: SchemaRegistry, fresh_pki: DevPKI,
                                                        tmp_path: Path) -> None:
    """Each record is checked at its own time stamp: a revocation after it does not void the evidence."""
    log = MessageLog(f"sqlite:///{tmp_path / 'log.db'}")
    pipeline = Pipeline(registry=registry, trust=fresh_pki.trust_store(),
                        tsa=TimeStampAuthority(fresh_pki.tsa_credential()), log=log, replay=None, window=None)
    credential = fresh_pki.credential(ORCHESTRATOR)
    assert isinstance(pipeline.admit(sign_message(REQUEST.read_bytes(), credential)), Admitted)
    time.sleep(1.1)  # CRL dates have one-second precision
    fresh_pki.revoke(ORCHESTRATOR)
    assert log.verify(check_record_evidence(fresh_pki.trust_store())).ok
    again = sign_message(reissue(parse_untrusted(REQUEST.read_bytes())), credential)
    refused = Pipeline(registry=registry, trust=fresh_pki.trust_store(), tsa=pipeline.tsa, log=log, replay=None,
                       window=None).admit(again)
    assert isinstance(refused, Rejected) and refused.falla.code == "GEL-AUTH-REVOKED", "new messages are refused"
