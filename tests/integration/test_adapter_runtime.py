"""The adapter runtime on the platform: request → handler → signed reply and receipt through the gateway,
idempotent receipt, retries while the legacy system is down, coded fallas — on both transports."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy.exc import OperationalError
from structlog.testing import capture_logs

from adapters.sdk.connectors.base import LegacyGarbage, LegacyNotFound, LegacyUnavailable
from adapters.sdk.runtime import Adapter, HandlerContext, Incoming, RetryPolicy
from adapters.sdk.store import AdapterStore, InboxState
from broker.gateway.local import LocalPlatform, open_platform
from broker.gelxml import FaultCode, MessageType
from broker.gelxml.envelope import ServiceRef
from broker.gelxml.parsing import parse_untrusted
from broker.security.pki import DevPKI
from broker.security.receipts import verify_receipt
from broker.settings import Settings
from broker.transport.abc import OutgoingMessage
from broker.transport.topology import INGRESS_EXCHANGE, entity_key
from tests.conftest import ENTITIES_FILE, ROOT
from tests.integration.adapter_kit import Inbox, sample_payload

ORCHESTRATOR = "CO/PLAT/900000002"
REGISTRADURIA = "CO/GOB/899999040"
IDENTITY = ServiceRef("verificarIdentidad", "1.0")


@dataclass
class Scene:
    platform: LocalPlatform
    caller: Adapter
    provider: Adapter
    inbox: Inbox
    calls: list[str]
    behaviour: list[Callable[[Incoming], etree._Element]]


@pytest.fixture(params=["embedded", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def scene(request: pytest.FixtureRequest, tmp_path: Path, pki: DevPKI) -> Iterator[Scene]:
    settings = Settings(certs_dir=pki.directory, database_url=f"sqlite:///{tmp_path / 'gel.db'}",
                        schemas_dir=ROOT / "schemas", entities_file=ENTITIES_FILE)
    credentials = request.getfixturevalue("rabbitmq_platform")[1] if request.param == "rabbitmq" else None
    platform = open_platform(settings, request.param, credentials=credentials)
    calls: list[str] = []
    behaviour: list[Callable[[Incoming], etree._Element]] = []

    def answer(incoming: Incoming) -> etree._Element:
        calls.append(incoming.header.message_id)
        if behaviour:
            return behaviour.pop(0)(incoming)
        return sample_payload("verificarIdentidad-respuesta.xml")

    inbox = Inbox()
    trust = pki.trust_store()
    provider = Adapter(REGISTRADURIA, platform.transport(REGISTRADURIA), pki.credential(REGISTRADURIA), trust,
                       AdapterStore(f"sqlite:///{tmp_path / 'registraduria.db'}"),
                       {(IDENTITY.code, IDENTITY.version): answer},
                       retry=RetryPolicy(attempts=3, initial=0.05, maximum=0.1), relay_interval=0.2)
    caller = Adapter(ORCHESTRATOR, platform.transport(ORCHESTRATOR), pki.credential(ORCHESTRATOR), trust,
                     AdapterStore(f"sqlite:///{tmp_path / 'orquestador.db'}"), {}, on_message=inbox,
                     relay_interval=0.2)
    provider.start()
    caller.start()
    yield Scene(platform, caller, provider, inbox, calls, behaviour)
    caller.stop()
    provider.stop()
    platform.close()
    caller.store.close()
    provider.store.close()


def ask(scene: Scene) -> str:
    return scene.caller.call(IDENTITY, REGISTRADURIA, sample_payload("verificarIdentidad-solicitud.xml"))


def test_a_request_is_answered_with_a_signed_reply_and_receipt(scene: Scene) -> None:
    request_id = ask(scene)
    got = scene.inbox.wait_for(2)
    reply = next(m for m in got if m.header.message_type is MessageType.RESPONSE)
    receipt = next(m for m in got if m.header.message_type is MessageType.RECEIPT)
    assert reply.signer == REGISTRADURIA and reply.header.correlation_id == request_id
    sent = scene.caller.store.sent(message_id=request_id)[0].body
    verify_receipt(receipt.body, sent, scene.provider.trust)
    assert scene.calls == [request_id]
    assert scene.provider.store.state(request_id) is InboxState.DONE


def test_a_redelivered_request_is_not_handled_again(scene: Scene) -> None:
    request_id = ask(scene)
    scene.inbox.wait_for(2)
    again = scene.caller.store.sent(message_id=request_id)[0].body
    scene.platform.transport(ORCHESTRATOR).publish_all([OutgoingMessage(
        INGRESS_EXCHANGE, entity_key(ORCHESTRATOR), again, message_id=request_id, user_id=ORCHESTRATOR)])
    routed = scene.platform.wait_routed(5)
    assert any(r.outcome == "reenviado" for r in routed), "the platform delivered it a second time"
    time.sleep(0.5)
    assert scene.calls == [request_id], "the provider's inbox dropped the duplicate"
    assert len(scene.inbox.of_type(MessageType.RESPONSE)) == 1


def test_the_legacy_system_down_for_a_while_is_retried(scene: Scene) -> None:
    def down(_: Incoming) -> etree._Element:
        raise LegacyUnavailable(REGISTRADURIA, detail="conexión rehusada")

    scene.behaviour.extend([down, down])
    request_id = ask(scene)
    scene.inbox.wait_for(2)
    [reply] = scene.inbox.of_type(MessageType.RESPONSE)
    assert reply.header.correlation_id == request_id and scene.calls == [request_id] * 3


@pytest.mark.parametrize(("failure", "code"), [
    (LegacyUnavailable(REGISTRADURIA, detail="conexión rehusada"), FaultCode.ADAPTER_LEGACY_UNAVAILABLE),
    (LegacyNotFound(REGISTRADURIA, what="CC 1020304050"), FaultCode.ADAPTER_NOT_FOUND),
    (LegacyGarbage(REGISTRADURIA, detail="HTML en lugar de JSON"), FaultCode.ADAPTER_LEGACY_GARBAGE),
    (RuntimeError("fallo de programación"), FaultCode.ADAPTER_HANDLER_FAILED),
])
def test_a_failure_the_adapter_cannot_fix_comes_back_as_a_coded_falla(scene: Scene, failure: Exception,
                                                                      code: FaultCode) -> None:
    def fails(_: Incoming) -> etree._Element:
        raise failure

    scene.behaviour.extend([fails] * 5)
    request_id = ask(scene)
    scene.inbox.wait_for(2)
    [falla] = scene.inbox.of_type(MessageType.FAULT)
    assert falla.signer == REGISTRADURIA and falla.header.correlation_id == request_id
    assert falla.payload is not None and falla.payload.findtext("{*}codFalla") == code
    assert scene.provider.store.state(request_id) is InboxState.FAILED


FONVIVIENDA = "CO/GOB/830121208"
ASSIGNMENT = ServiceRef("asignarSubsidio", "1.0")
SUBSCRIBERS = ("CO/CCF/860007336", "CO/CCF/860066942", "CO/FID/860525148", "CO/PRIV/900123451")


@pytest.mark.parametrize("decides", [True, False])
def test_an_event_emitted_by_a_handler_leaves_with_the_answer_and_only_with_it(
        tmp_path: Path, pki: DevPKI, decides: bool) -> None:
    settings = Settings(certs_dir=pki.directory, database_url=f"sqlite:///{tmp_path / 'gel.db'}",
                        schemas_dir=ROOT / "schemas", entities_file=ENTITIES_FILE)
    platform = open_platform(settings, "embedded")

    def assign(request: Incoming, context: HandlerContext) -> etree._Element:
        event = sample_payload("asignarSubsidio-evento.xml")
        context.emit(ASSIGNMENT, "CO/PLAT/900000001", event, radicado=request.header.radicado)
        if not decides:
            raise LegacyUnavailable(FONVIVIENDA, detail="base de datos caída")
        return sample_payload("asignarSubsidio-respuesta.xml")

    inbox = Inbox()
    provider = Adapter(FONVIVIENDA, platform.transport(FONVIVIENDA), pki.credential(FONVIVIENDA), pki.trust_store(),
                       AdapterStore(f"sqlite:///{tmp_path / 'fonvivienda.db'}"),
                       {(ASSIGNMENT.code, ASSIGNMENT.version): assign},
                       retry=RetryPolicy(attempts=2, initial=0.05), relay_interval=0.2)
    caller = Adapter(ORCHESTRATOR, platform.transport(ORCHESTRATOR), pki.credential(ORCHESTRATOR), pki.trust_store(),
                     AdapterStore(f"sqlite:///{tmp_path / 'orquestador.db'}"), {}, on_message=inbox,
                     relay_interval=0.2)
    provider.start()
    caller.start()
    try:
        request_id = caller.call(ASSIGNMENT, FONVIVIENDA, sample_payload("asignarSubsidio-solicitud.xml"))
        inbox.wait_for(2)
        answer = next(m for m in inbox.messages if m.header.message_type is not MessageType.RECEIPT)
        assert answer.header.correlation_id == request_id
        assert answer.header.message_type is (MessageType.RESPONSE if decides else MessageType.FAULT)
        for subscriber in SUBSCRIBERS:
            delivery = platform.receive(subscriber, timeout=3 if decides else 0.5)
            if decides:
                assert delivery is not None, f"{subscriber} did not get the event"
                assert parse_untrusted(delivery.body).findtext("{*}encabezado/{*}tipoMensaje") == "evento"
            else:
                assert delivery is None, "an event of a decision that failed must not leave"
    finally:
        caller.stop()
        provider.stop()
        platform.close()
        caller.store.close()
        provider.store.close()


@pytest.mark.parametrize("where", ["store", "handler", "outbox"])
def test_an_outage_of_the_adapters_own_database_holds_the_request_without_spending_its_attempts(
        scene: Scene, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """The store (or the handler's use of it, or the outbox relay's) fails while the database does not answer: the
    delivery waits for it instead of being sent back at once — five quick redeliveries would dead-letter it —, no
    falla is sent for an outage, and nothing is logged as an error: an outage is not a bug."""
    store, failed = scene.provider.store, []
    outage = 8  # more failures than the queue's delivery limit allows redeliveries

    def down(*_args: object, **_kwargs: object) -> None:
        failed.append(time.monotonic())
        raise OperationalError("SELECT", {}, Exception("el servidor se está reiniciando"))

    def receive_unless_down(**kwargs: object) -> InboxState | None:
        if len(failed) < outage:
            down()
        return AdapterStore.receive(store, **kwargs)  # type: ignore[arg-type]

    def answer_unless_down(incoming: Incoming) -> etree._Element:
        if len(failed) < outage:
            down()
        return sample_payload("verificarIdentidad-respuesta.xml")

    def unpublished_unless_down(*args: object, **kwargs: object) -> object:
        rows = AdapterStore.unpublished(store, *args, **kwargs)  # type: ignore[arg-type]
        if rows and len(failed) < outage:
            down()
        return rows

    if where == "store":
        monkeypatch.setattr(store, "receive", receive_unless_down)
    elif where == "handler":
        scene.behaviour.extend([answer_unless_down] * (outage + 1))
    else:
        monkeypatch.setattr(store, "unpublished", unpublished_unless_down)
    monkeypatch.setattr(store, "answers", lambda: len(failed) > outage)  # down for each of those failures
    monkeypatch.setattr("broker.storage.OUTAGE_FIRST_WAIT", 0.05)
    monkeypatch.setattr("broker.storage.OUTAGE_LONGEST_WAIT", 0.2)
    with capture_logs() as logged:
        request_id = ask(scene)
        got = scene.inbox.wait_for(2)
    assert [m.header.message_type for m in got] == [MessageType.RECEIPT, MessageType.RESPONSE], got
    assert got[1].header.correlation_id == request_id
    assert len(failed) == outage and failed[-1] - failed[0] >= 0.5, "the outage was waited out, not retried at once"
    assert store.state(request_id) is InboxState.DONE
    assert any(e["event"] == "adapter.store_unavailable" and e["log_level"] == "warning" for e in logged), logged
    assert [e for e in logged if e["log_level"] in ("error", "critical")] == []
