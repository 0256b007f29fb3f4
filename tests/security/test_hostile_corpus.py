"""The hostile corpus end to end, through a running gateway (embedded transport): every attack is refused
with its code, the refusal is logged (message log, operational record, structured log line), and the platform
goes on serving everybody else. RabbitMQ's own refusals and the corpus over RabbitMQ are in
test_hostile_rabbitmq.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from broker.gateway import pipeline as pipeline_module
from broker.gelxml import FaultCode
from broker.logs import platform_fields
from broker.transport.abc import PublishError
from broker.transport.topology import ingress_queue
from tests.security.attacks import ATTACKER, CORPUS, ORCHESTRATOR, REGISTRADURIA, Attack, Kit, by_name
from tests.security.conftest import start_platform
from tests.security.harness import Range, digest, fault_code_of, fire_burst, header_of


@pytest.fixture(scope="module")
def target(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Range]:
    with start_platform(kit, tmp_path_factory.mktemp("corpus") / "gel.db") as local:
        yield Range(local, kit)


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs(processors=[platform_fields]) as captured:
        yield captured


def log_line(logs: list[dict[str, Any]], event: str, timeout: float = 10.0, **fields: object) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in list(logs) if e["event"] == event and all(e.get(k) == v for k, v in fields.items())]
        if found:
            return found[0]
        time.sleep(0.02)
    raise AssertionError(f"no {event} line with {fields}: {[(e['event'], e.get('fault')) for e in logs]}")


def corpus_params() -> list[Any]:
    return [pytest.param(a, id=a.name) for a in CORPUS]


def test_the_corpus_covers_every_family_with_codes_of_the_catalogue(kit: Kit) -> None:
    assert {a.family for a in CORPUS} == {"xml", "firma", "protocolo"}
    assert all(isinstance(a.code, FaultCode) for a in CORPUS if a.observed != "transporte")
    assert all(a.build(kit).publisher == ATTACKER for a in CORPUS), "one attacker: its queue holds every falla"


@pytest.mark.parametrize("attack", corpus_params())
def test_an_attack_is_refused_with_its_code_logged_and_the_platform_still_serves_others(
        shooting: Range, attack: Attack, logs: list[dict[str, Any]]) -> None:
    shot = attack.build(shooting.kit)
    for before in shot.before:
        shooting.admit(before)
    mark = shooting.last_seq()

    if attack.observed == "transporte":
        with pytest.raises(PublishError, match="PRECONDITION_FAILED"):
            shooting.publish(shot)
    else:
        shooting.publish(shot)
        routed = shooting.routed_after(mark)
        assert routed.outcome == "rechazado" and routed.fault_code == attack.code
        record = shooting.local.parts.log.get(routed.record or 0)
        assert record.message_sha256 == digest(shot.body)
        [operational] = [r for r in shooting.local.parts.records.for_message(record.message_id)
                         if r.log_seq == record.seq]
        assert operational.outcome == "rechazado" and operational.fault_code == attack.code
        assert operational.size_bytes == len(shot.body)
        log_line(logs, "gateway.routed", record=record.seq, fault=str(attack.code), outcome="rechazado")
        falla = shooting.receive(shot.publisher, timeout=5)  # published before the gateway reported it
        assert falla is not None, f"{shot.publisher} got no falla"
        assert fault_code_of(falla) == attack.code
        assert shooting.check_falla(falla, shot.body) == record

    assert shooting.quiet() == [], "the attack reached nobody"
    legitimate = shooting.bystander()
    delivered = shooting.receive(REGISTRADURIA)
    assert delivered is not None and delivered.body == legitimate, "another entity is still served"
    if attack.observed == "transporte":
        assert [r.message_sha256 for r in shooting.records_after(mark)] == [digest(legitimate)], \
            "the gateway never saw the refused publish"


def test_the_whole_corpus_in_one_burst_between_legitimate_messages(shooting: Range) -> None:
    """Every attack fired back to back, each followed by a legitimate message from another entity: every
    legitimate message arrives, every attack gets its own code, nothing reaches the recipients attacked."""
    fire_burst(shooting, list(CORPUS))


def test_a_flood_from_one_entity_is_answered_message_by_message_while_others_are_served(shooting: Range) -> None:
    """300 refused requests from one entity, then legitimate traffic from another: each flood message gets
    its own falla, and the legitimate messages all arrive."""
    flood = [by_name("service-not-granted").build(shooting.kit) for _ in range(300)]
    for shot in flood:
        shooting.publish(shot)
    legitimate = {digest(shooting.bystander()) for _ in range(5)}
    assert {digest(d.body) for d in shooting.collect(REGISTRADURIA, len(legitimate), timeout=60)} == legitimate
    fallas = shooting.collect(ATTACKER, len(flood), timeout=60)
    assert [fault_code_of(f) for f in fallas] == [str(FaultCode.AUTHZ_DENIED)] * len(flood)
    flooded = {header.message_id for shot in flood if (header := header_of(shot.body)) is not None}
    assert {f.correlation_id for f in fallas} == flooded
    assert shooting.quiet() == []


def test_one_message_that_breaks_a_stage_does_not_take_its_batch_down(
        kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found with the corpus: a send time at hour 24, an unreadable certificate and a relative namespace URI
    each made a stage raise (fixed in broker/gelxml and broker/security). Any future such bug must cost only
    the message that triggers it."""
    poison = by_name("service-not-granted").build(kit)
    real_check = pipeline_module.check_message

    def breaks_on_poison(data: bytes, *args: Any, **kwargs: Any) -> Any:
        if data == poison.body:
            raise RuntimeError("una etapa falló de forma inesperada")
        return real_check(data, *args, **kwargs)

    with start_platform(kit, tmp_path / "gel.db") as local:
        shooting = Range(local, kit)
        gateway = local.parts.gateway
        gateway.stop()
        shooting.publish(poison)
        legitimate = {digest(shooting.bystander()) for _ in range(3)}
        transport = local.transport(shooting.gateway_id)
        waiting = [delivery for entity in (ATTACKER, ORCHESTRATOR) for delivery in shooting.drain_queue(
            transport, ingress_queue(entity))]
        assert len(waiting) == 4
        monkeypatch.setattr(pipeline_module, "check_message", breaks_on_poison)
        for delivery in waiting:
            gateway.handle(delivery)  # all four wait for the admission thread, which takes them as one batch
        gateway.start()
        parked = shooting.dead_letters(4, timeout=5)
        assert [p.body for p in parked] == [poison.body]
        assert {digest(d.body) for d in shooting.collect(REGISTRADURIA, 3, timeout=10)} == legitimate
