"""The hostile corpus over real RabbitMQ (a vhost of this module's own, per-entity users and permissions): the
broker itself refuses a forged `user_id`, and the whole corpus fired in one burst is answered as on the
embedded transport while legitimate traffic keeps flowing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from broker.transport.abc import PublishError
from broker.transport.provisioning import Credentials
from tests.security.attacks import ATTACKER, CORPUS, REGISTRADURIA, VICTIM, Kit, by_name
from tests.security.conftest import start_platform
from tests.security.harness import Range, digest, fire_burst

pytestmark = pytest.mark.rabbitmq


@pytest.fixture(scope="module")
def target(kit: Kit, tmp_path_factory: pytest.TempPathFactory,
           rabbitmq_platform: tuple[str, Credentials]) -> Iterator[Range]:
    with start_platform(kit, tmp_path_factory.mktemp("corpus-rabbitmq") / "gel.db",
                        credentials=rabbitmq_platform[1]) as local:
        yield Range(local, kit)


def test_rabbitmq_itself_refuses_a_user_id_that_is_not_the_connections(shooting: Range) -> None:
    """The attacker publishes a message genuinely signed by the victim with user_id = the victim: RabbitMQ
    closes the channel with PRECONDITION_FAILED, the gateway never sees it, and the attacker's connection
    and everybody else go on working."""
    shot = by_name("forged-amqp-user-id").build(shooting.kit)
    assert shot.user_id == VICTIM and shot.publisher == ATTACKER
    mark = shooting.last_seq()
    with pytest.raises(PublishError, match="PRECONDITION_FAILED"):
        shooting.publish(shot)
    legitimate = shooting.bystander()
    delivered = shooting.receive(REGISTRADURIA)
    assert delivered is not None and delivered.body == legitimate
    assert [r.message_sha256 for r in shooting.records_after(mark)] == [digest(legitimate)]
    assert shooting.quiet(timeout=0.3) == []

    honest = by_name("missing-amqp-user-id").build(shooting.kit)
    shooting.publish(honest)  # the same connection still publishes (and is answered)
    falla = shooting.receive(ATTACKER)
    assert falla is not None
    assert shooting.check_falla(falla, honest.body).fault_code == "GEL-AUTH-TRANSPORT_USER"


def test_the_whole_corpus_in_one_burst_over_rabbitmq(shooting: Range) -> None:
    fire_burst(shooting, list(CORPUS))
