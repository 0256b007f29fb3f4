"""The gateway end to end: a message crosses the platform, or its sender gets the right falla.

Every test runs on real RabbitMQ (a vhost of its own, the platform topology applied with per-entity users
and permissions by `apply_topology`) and on the embedded transport. RabbitMQ-only behaviour (ACCESS_REFUSED,
a broker restart mid-stream) lives in test_gateway_rabbitmq.py.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker.gateway.gateway import HEADER_TIMESTAMP, Routed
from broker.gateway.local import LocalPlatform, open_platform
from broker.gelxml import FaultCode, MessageType
from broker.gelxml.envelope import read_header, reissue
from broker.gelxml.parsing import parse_untrusted
from broker.security.pki import DevPKI
from broker.security.signing import sign_message
from broker.security.timestamp import verify_token
from broker.security.verification import verify_message
from broker.settings import Settings
from broker.transport.abc import Delivery, PublishError
from tests.conftest import ENTITIES_FILE, ROOT, SAMPLES

GATEWAY = "CO/PLAT/900000001"
ORCHESTRATOR = "CO/PLAT/900000002"
REGISTRADURIA = "CO/GOB/899999040"
COLSUBSIDIO = "CO/CCF/860007336"


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


@pytest.fixture(params=["embedded", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def platform(request: pytest.FixtureRequest, tmp_path: Path, pki: DevPKI) -> Iterator[Platform]:
    settings = Settings(certs_dir=pki.directory, database_url=f"sqlite:///{tmp_path / 'gel.db'}",
                        schemas_dir=ROOT / "schemas", entities_file=ENTITIES_FILE)
    credentials = request.getfixturevalue("rabbitmq_platform")[1] if request.param == "rabbitmq" else None
    local = open_platform(settings, request.param, credentials=credentials)
    yield Platform(local, pki)
    local.close()


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
