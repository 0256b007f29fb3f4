"""`gel gateway --workers 2` as an operator runs it: two worker processes compete on every ingress queue, every
message crosses once, and SIGTERM stops them cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from broker.gelxml.envelope import read_header, reissue
from broker.gelxml.parsing import parse_untrusted
from broker.security.entities import load_entities
from broker.security.message_log import MessageLog
from broker.security.pki import DevPKI
from broker.security.signing import sign_message
from broker.transport.abc import OutgoingMessage
from broker.transport.provisioning import Credentials
from broker.transport.rabbitmq import RabbitMQTransport
from broker.transport.topology import INGRESS_EXCHANGE, entity_key, entity_queue, ingress_queues
from tests.conftest import ENTITIES_FILE, ROOT, SAMPLES
from tests.integration.conftest import rabbitmqctl

pytestmark = pytest.mark.rabbitmq

ORCHESTRATOR = "CO/PLAT/900000002"
REGISTRADURIA = "CO/GOB/899999040"
COUNT = 200


def _consumers_on_ingress(vhost: str) -> list[int]:
    """The consumers of each ingress queue (every worker takes every one of them)."""
    queues = ingress_queues(load_entities(ENTITIES_FILE))
    counts: dict[str, int] = {}
    for line in rabbitmqctl("list_queues", "-p", vhost, "name", "consumers").splitlines():
        name, _, consumers = line.partition("\t")
        counts[name] = int(consumers) if consumers.strip().isdigit() else 0
    return [counts.get(name, 0) for name in queues]


def test_two_worker_processes_share_ingress_and_stop_on_sigterm(
        rabbitmq_platform: tuple[str, Credentials], pki: DevPKI, tmp_path: Path) -> None:
    base_url, credentials = rabbitmq_platform
    database = tmp_path / "gel.db"
    env = {**os.environ, "GEL_CERTS_DIR": str(pki.directory), "GEL_DATABASE_URL": f"sqlite:///{database}",
           "GEL_RABBITMQ_VHOST": credentials.vhost, "GEL_TRANSPORT": "rabbitmq",
           "GEL_AMQP_URL": base_url, "GEL_LOG_LEVEL": "WARNING"}
    gateway = subprocess.Popen([sys.executable, "-m", "broker.cli", "gateway", "--workers", "2"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sender = RabbitMQTransport(credentials.url(base_url, ORCHESTRATOR))
    receiver = RabbitMQTransport(credentials.url(base_url, REGISTRADURIA))
    try:
        deadline = time.monotonic() + 60
        while min(_consumers_on_ingress(credentials.vhost)) < 2:
            assert gateway.poll() is None, gateway.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the two workers never started consuming"
            time.sleep(0.5)
        template = parse_untrusted((SAMPLES / "valid" / "verificarIdentidad-solicitud.xml").read_bytes())
        bodies = [sign_message(reissue(template), pki.credential(ORCHESTRATOR)) for _ in range(COUNT)]
        ids = {read_header(parse_untrusted(b)).message_id for b in bodies}
        sender.publish_all([OutgoingMessage(INGRESS_EXCHANGE, entity_key(ORCHESTRATOR), b, user_id=ORCHESTRATOR)
                            for b in bodies])
        received: list[str] = []
        while len(received) < COUNT and time.monotonic() < deadline + 60:
            delivery = receiver.get(entity_queue(REGISTRADURIA), timeout=5)
            if delivery is not None:
                receiver.ack(delivery)
                received.append(delivery.message_id or "")
        assert sorted(received) == sorted(ids)
    finally:
        sender.close()
        receiver.close()
        gateway.send_signal(signal.SIGTERM)
        out, err = gateway.communicate(timeout=60)
    assert gateway.returncode == 0, out + err
    assert "Pasarela detenida." in out and "Traceback" not in err
    with MessageLog(f"sqlite:///{database}") as log:
        accepted = [r for r in log.records() if r.outcome == "aceptado"]
        assert {r.message_id for r in accepted} == ids and len(accepted) == COUNT
        assert log.verify().ok
    deadline = time.monotonic() + 30
    while any(_consumers_on_ingress(credentials.vhost)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(_consumers_on_ingress(credentials.vhost)), "a worker kept consuming after SIGTERM"
