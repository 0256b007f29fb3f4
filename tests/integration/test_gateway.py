"""The gateway end to end: a message crosses the platform, or its sender gets the right falla.

Every test runs on real RabbitMQ (a vhost of its own, the platform topology applied with per-entity users
and permissions by `apply_topology`) and on the embedded transport. RabbitMQ-only behaviour (ACCESS_REFUSED,
a broker restart mid-stream) lives in test_gateway_rabbitmq.py.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from broker.gateway.gateway import HEADER_ATTEMPTS, HEADER_REASON, HEADER_TIMESTAMP, Routed
from broker.gateway.local import LocalPlatform, open_platform
from broker.gelxml import FaultCode, MessageType
from broker.gelxml.envelope import read_header, reissue
from broker.gelxml.parsing import parse_untrusted
from broker.security.pki import DevPKI
from broker.security.receipts import build_receipt, verify_receipt
from broker.security.signing import sign_message
from broker.security.timestamp import verify_token
from broker.security.verification import verify_message
from broker.settings import Settings
from broker.transport.abc import Delivery, OutgoingMessage, PublishError
from broker.transport.topology import DEAD_LETTER_QUEUE, INGRESS_EXCHANGE, entity_key
from tests.conftest import ENTITIES_FILE, ROOT, SAMPLES

CATALOG_FILE = ROOT / "deploy" / "catalog.yaml"

GATEWAY = "CO/PLAT/900000001"
ORCHESTRATOR = "CO/PLAT/900000002"
REGISTRADURIA = "CO/GOB/899999040"
COLSUBSIDIO = "CO/CCF/860007336"
FONVIVIENDA = "CO/GOB/830121208"
SUBSCRIBERS = ("CO/CCF/860007336", "CO/CCF/860066942", "CO/FID/860525148", "CO/PRIV/900123451")


@dataclass
class Platform:
    local: LocalPlatform
    pki: DevPKI

    def send(self, entity: str, body: bytes, *, user_id: str | None = None, anonymous: bool = False) -> None:
        self.local.send(entity, body, user_id=user_id, anonymous=anonymous)

    def receive(self, entity: str) -> Delivery:
        delivery = self.local.receive(entity)
        assert delivery is not None, f"nothing reached {entity}"
        return delivery

    def nothing_for(self, entity: str) -> bool:
        return self.local.receive(entity, timeout=0.3) is None

    def wait_routed(self, count: int) -> list[Routed]:
        routed = self.local.wait_routed(count)
        assert len(routed) >= count, routed
        return routed


TRANSPORTS = ["embedded", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)]


def start(request: pytest.FixtureRequest, tmp_path: Path, pki: DevPKI, catalog: Path = CATALOG_FILE) -> Platform:
    settings = Settings(certs_dir=pki.directory, database_url=f"sqlite:///{tmp_path / 'gel.db'}",
                        schemas_dir=ROOT / "schemas", entities_file=ENTITIES_FILE, catalog_file=catalog)
    credentials = request.getfixturevalue("rabbitmq_platform")[1] if request.param == "rabbitmq" else None
    return Platform(open_platform(settings, request.param, credentials=credentials), pki)


@pytest.fixture(params=TRANSPORTS)
def platform(request: pytest.FixtureRequest, tmp_path: Path, pki: DevPKI) -> Iterator[Platform]:
    started = start(request, tmp_path, pki)
    yield started
    started.local.close()


@pytest.fixture(params=TRANSPORTS)
def impatient(request: pytest.FixtureRequest, tmp_path: Path, pki: DevPKI) -> Iterator[Platform]:
    """A platform whose catalog gives verificarIdentidad one second to answer."""
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG_FILE.read_text(encoding="utf-8").replace(
        "{code: verificarIdentidad, version: \"1.0\", status: activo, reply_within_seconds: 120,",
        "{code: verificarIdentidad, version: \"1.0\", status: activo, reply_within_seconds: 1,"), encoding="utf-8")
    assert "reply_within_seconds: 1," in catalog.read_text(encoding="utf-8")
    started = start(request, tmp_path, pki, catalog)
    started.local.parts.gateway.sweep_seconds = 0.2
    yield started
    started.local.close()


def signed(name: str, pki: DevPKI, signer: str | None = None, *, answering: bytes | None = None) -> bytes:
    """A sample sent now: fresh idMensaje and time (a reply correlated to `answering`), signed by its sender."""
    message = reissue(parse_untrusted((SAMPLES / "valid" / name).read_bytes()), answering=answering)
    return sign_message(message, pki.credential(signer or read_header(message).sender))


def fault_code_of(delivery: Delivery) -> str:
    root = parse_untrusted(delivery.body)
    return root.findtext("{*}cuerpo/{*}falla/{*}codFalla") or ""


def test_a_request_crosses_the_platform_stamped_and_recorded(platform: Platform) -> None:
    body = signed("verificarIdentidad-solicitud.xml", platform.pki)
    platform.send(ORCHESTRATOR, body)
    delivery = platform.receive(REGISTRADURIA)
    assert delivery.body == body, "the recipient gets the sender's exact signed bytes"
    verified = verify_message(delivery.body, platform.pki.trust_store(), window=None)
    assert verified.signer == ORCHESTRATOR
    token = base64.b64decode(delivery.headers[HEADER_TIMESTAMP])
    verify_token(token, digest=hashlib.sha256(body).digest(), trust=platform.pki.trust_store())
    routed = platform.wait_routed(1)[0]
    assert routed.outcome == "entregado" and routed.recipient == REGISTRADURIA
    [record] = platform.local.parts.records.for_message(verified.header.message_id)
    assert record.outcome == "entregado" and record.size_bytes == len(body) and record.log_seq == routed.record


def test_the_reply_goes_back_to_the_caller(platform: Platform) -> None:
    request = signed("verificarIdentidad-solicitud.xml", platform.pki)
    platform.send(ORCHESTRATOR, request)
    platform.receive(REGISTRADURIA)
    platform.send(REGISTRADURIA, signed("verificarIdentidad-respuesta.xml", platform.pki, answering=request))
    reply = read_header(parse_untrusted(platform.receive(ORCHESTRATOR).body))
    assert reply.message_type is MessageType.RESPONSE
    assert reply.correlation_id == read_header(parse_untrusted(request)).message_id


@pytest.mark.parametrize(("case", "expected"), [
    ("unauthorised", FaultCode.AUTHZ_DENIED),
    ("invalid", FaultCode.VALID_PATTERN),
    ("bad_signature", FaultCode.AUTH_BAD_SIGNATURE),
    ("stolen", FaultCode.AUTH_TRANSPORT_USER),
    ("anonymous", FaultCode.AUTH_TRANSPORT_USER),
])
def test_a_refused_message_comes_back_to_its_sender_as_a_signed_falla(platform: Platform, case: str,
                                                                      expected: FaultCode) -> None:
    pki = platform.pki
    if case == "unauthorised":
        body = sign_message(signed("consultarSisben-solicitud.xml", pki).replace(
            ORCHESTRATOR.encode(), COLSUBSIDIO.encode(), 1), pki.credential(COLSUBSIDIO))
        publisher = COLSUBSIDIO
    elif case == "invalid":  # claims to come from SISBEN; the falla goes to whoever published it
        body = sign_message((SAMPLES / "invalid" / "GEL-VALID-PATTERN--vivienda-codmunicipio-cuatro-digitos.xml")
                            .read_bytes(), pki.credential(COLSUBSIDIO))
        publisher = COLSUBSIDIO
    elif case == "bad_signature":
        body = signed("verificarIdentidad-solicitud.xml", pki).replace(b"1020304050", b"1020304051")
        publisher = ORCHESTRATOR
    elif case == "stolen":  # genuinely signed by the orchestrator, re-sent over Colsubsidio's connection
        body = signed("verificarIdentidad-solicitud.xml", pki)
        publisher = COLSUBSIDIO
    else:  # published without the user_id property RabbitMQ would have checked
        body = signed("verificarIdentidad-solicitud.xml", pki)
        publisher = ORCHESTRATOR
    platform.send(publisher, body, anonymous=case == "anonymous")
    delivery = platform.receive(publisher)
    assert fault_code_of(delivery) == expected
    fault = verify_message(delivery.body, pki.trust_store(), window=None)
    assert fault.signer == "CO/PLAT/900000001" and fault.header.message_type is MessageType.FAULT
    assert fault.header.correlation_id == read_header(parse_untrusted(body)).message_id
    assert platform.nothing_for(REGISTRADURIA)


def test_a_forged_amqp_user_id_is_refused_by_the_transport(platform: Platform) -> None:
    body = signed("verificarIdentidad-solicitud.xml", platform.pki)
    with pytest.raises(PublishError):
        platform.send(COLSUBSIDIO, body, user_id=ORCHESTRATOR)


def test_a_message_published_twice_is_logged_once_and_routed_again(platform: Platform) -> None:
    body = signed("verificarIdentidad-solicitud.xml", platform.pki)
    platform.send(ORCHESTRATOR, body)
    platform.send(ORCHESTRATOR, body)
    first, second = platform.receive(REGISTRADURIA), platform.receive(REGISTRADURIA)
    assert first.body == second.body == body and first.message_id == second.message_id
    outcomes = sorted(r.outcome for r in platform.wait_routed(2))
    assert outcomes == ["entregado", "reenviado"]
    accepted = [r for r in platform.local.parts.log.find(first.message_id or "") if r.outcome == "aceptado"]
    assert len(accepted) == 1


def test_the_same_message_id_with_other_content_is_a_refused_replay(platform: Platform) -> None:
    body = signed("verificarIdentidad-solicitud.xml", platform.pki)
    platform.send(ORCHESTRATOR, body)
    platform.receive(REGISTRADURIA)
    altered = sign_message(body.replace(b"1020304050", b"1020304051"), platform.pki.credential(ORCHESTRATOR))
    platform.send(ORCHESTRATOR, altered)
    assert fault_code_of(platform.receive(ORCHESTRATOR)) == FaultCode.DUP_REPLAY


def test_an_event_to_the_platform_reaches_every_subscriber(platform: Platform) -> None:
    event = signed("asignarSubsidio-evento.xml", platform.pki)
    platform.send(FONVIVIENDA, event)
    for subscriber in SUBSCRIBERS:
        delivery = platform.receive(subscriber)
        assert delivery.body == event
        assert verify_message(delivery.body, platform.pki.trust_store(), window=None).signer == FONVIVIENDA
    assert sorted(r.recipient for r in platform.wait_routed(len(SUBSCRIBERS))) == sorted(SUBSCRIBERS)
    message_id = read_header(parse_untrusted(event)).message_id
    assert [r.outcome for r in platform.local.parts.log.find(message_id)] == ["aceptado"]
    assert platform.nothing_for(REGISTRADURIA)


def test_a_signed_receipt_travels_back_to_the_sender(platform: Platform) -> None:
    request = signed("verificarIdentidad-solicitud.xml", platform.pki)
    platform.send(ORCHESTRATOR, request)
    arrived = platform.receive(REGISTRADURIA)
    platform.send(REGISTRADURIA, build_receipt(arrived.body, platform.pki.credential(REGISTRADURIA)))
    receipt = platform.receive(ORCHESTRATOR)
    assert verify_receipt(receipt.body, request, platform.pki.trust_store()).signer == REGISTRADURIA


def test_a_request_left_unanswered_times_out_to_its_caller(impatient: Platform) -> None:
    request = signed("verificarIdentidad-solicitud.xml", impatient.pki)
    impatient.send(ORCHESTRATOR, request)
    impatient.receive(REGISTRADURIA)
    timeout = impatient.receive(ORCHESTRATOR)
    assert fault_code_of(timeout) == FaultCode.ROUTE_REPLY_TIMEOUT
    fault = verify_message(timeout.body, impatient.pki.trust_store(), window=None)
    assert fault.signer == GATEWAY and fault.header.correlation_id == read_header(parse_untrusted(request)).message_id
    assert impatient.nothing_for(ORCHESTRATOR), "the caller hears about a timeout once"


def test_a_request_answered_in_time_does_not_time_out(impatient: Platform) -> None:
    request = signed("verificarIdentidad-solicitud.xml", impatient.pki)
    impatient.send(ORCHESTRATOR, request)
    impatient.receive(REGISTRADURIA)
    impatient.send(REGISTRADURIA, signed("verificarIdentidad-respuesta.xml", impatient.pki, answering=request))
    answer = impatient.receive(ORCHESTRATOR)
    assert read_header(parse_untrusted(answer.body)).message_type is MessageType.RESPONSE
    time.sleep(1.5)
    assert impatient.nothing_for(ORCHESTRATOR)


def dead_letters(platform: Platform) -> list[Delivery]:
    transport = platform.local.transport(GATEWAY)
    parked = []
    while (delivery := transport.get(DEAD_LETTER_QUEUE, timeout=0.5)) is not None:
        transport.ack(delivery)
        parked.append(delivery)
    return parked


def test_a_message_that_keeps_failing_transiently_is_parked_with_its_reason(
        platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    def database_down(*_: object, **__: object) -> None:
        raise OperationalError("INSERT INTO message_log", {}, Exception("la base de datos no responde"))

    monkeypatch.setattr(platform.local.parts.log, "append_many", database_down)
    body = signed("verificarIdentidad-solicitud.xml", platform.pki)
    platform.send(ORCHESTRATOR, body)
    deadline = time.monotonic() + 20
    parked: list[Delivery] = []
    while not parked and time.monotonic() < deadline:
        parked = dead_letters(platform)
    [delivery] = parked
    assert delivery.body == body
    assert "OperationalError" in delivery.headers[HEADER_REASON] and "la base de datos no responde" in str(
        delivery.headers[HEADER_REASON])
    assert int(delivery.headers[HEADER_ATTEMPTS]) == platform.local.parts.gateway.max_attempts
    assert platform.nothing_for(REGISTRADURIA) and platform.nothing_for(ORCHESTRATOR)


def test_a_database_outage_holds_the_message_without_spending_its_attempts(
        platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    log = platform.local.parts.log
    append_many, failed = log.append_many, []

    def append_unless_down(*args: object, **kwargs: object) -> object:
        if len(failed) < 8:  # longer than max_attempts quick retries would last
            failed.append(time.monotonic())
            raise OperationalError("INSERT INTO message_log", {}, Exception("el servidor se está reiniciando"))
        return append_many(*args, **kwargs)

    monkeypatch.setattr(log, "append_many", append_unless_down)
    monkeypatch.setattr(log, "answers", lambda: len(failed) >= 8)
    monkeypatch.setattr("broker.storage.OUTAGE_LONGEST_WAIT", 0.5)
    body = signed("verificarIdentidad-solicitud.xml", platform.pki)
    platform.send(ORCHESTRATOR, body)
    assert platform.receive(REGISTRADURIA).body == body
    [routed] = platform.wait_routed(1)
    assert routed.outcome == "entregado" and routed.attempt == 0, routed
    assert len(failed) == 8 and failed[-1] - failed[0] >= 2.0, "the outage was waited out, not retried at once"
    assert dead_letters(platform) == []


def test_an_unreadable_message_without_user_id_is_answered_to_the_publisher_of_its_ingress_queue(
        platform: Platform) -> None:
    """No user_id and no readable header: the ingress queue still names the publisher (only it may publish with
    its routing key), so it gets the falla and the bytes are in the log; nothing is parked."""
    platform.local.transport(ORCHESTRATOR).publish_all([OutgoingMessage(
        exchange=INGRESS_EXCHANGE, routing_key=entity_key(ORCHESTRATOR), body=b"\x00 esto no es XML", user_id=None)])
    answer = platform.receive(ORCHESTRATOR)
    assert fault_code_of(answer).startswith("GEL-PARSE")
    assert verify_message(answer.body, platform.pki.trust_store(), window=None).signer == GATEWAY
    refused = [r for r in platform.local.parts.log.records() if r.outcome == "rechazado"]
    assert len(refused) == 1 and refused[0].fault_code.startswith("GEL-PARSE")
    assert dead_letters(platform) == []


def test_a_revocation_reaches_the_running_gateway_without_a_restart(tmp_path: Path, fresh_pki: DevPKI) -> None:
    """The gateway re-reads crl.pem when it changes (LiveTrustStore): a revoked key is refused from then on."""
    settings = Settings(certs_dir=fresh_pki.directory, database_url=f"sqlite:///{tmp_path / 'gel.db'}",
                        schemas_dir=ROOT / "schemas", entities_file=ENTITIES_FILE, catalog_file=CATALOG_FILE)
    platform = Platform(open_platform(settings, "embedded"), fresh_pki)
    try:
        credential = fresh_pki.credential(ORCHESTRATOR)
        template = parse_untrusted((SAMPLES / "valid" / "verificarIdentidad-solicitud.xml").read_bytes())
        platform.send(ORCHESTRATOR, sign_message(reissue(template), credential))
        assert platform.wait_routed(1)[0].outcome == "entregado"
        fresh_pki.revoke(ORCHESTRATOR)
        time.sleep(2.2)  # LiveTrustStore looks at crl.pem at most every 2 s
        platform.send(ORCHESTRATOR, sign_message(reissue(template), credential))
        refused = platform.wait_routed(2)[1]
        assert refused.outcome == "rechazado" and refused.fault_code == "GEL-AUTH-REVOKED", refused
    finally:
        platform.local.close()
