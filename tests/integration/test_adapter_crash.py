"""An adapter killed with SIGKILL while handling a request, then restarted, answers exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters.sdk.runtime import Adapter
from adapters.sdk.store import AdapterStore
from broker.gateway.local import open_platform
from broker.gelxml import MessageType
from broker.security.pki import DevPKI
from broker.settings import Settings
from broker.transport.provisioning import Credentials
from broker.transport.topology import entity_queue
from tests.conftest import ENTITIES_FILE, ROOT
from tests.integration.adapter_kit import Inbox, sample_payload
from tests.integration.conftest import rabbitmqctl
from tests.integration.test_adapter_runtime import IDENTITY, ORCHESTRATOR, REGISTRADURIA

pytestmark = pytest.mark.rabbitmq


def _consumers(vhost: str, queue: str) -> int:
    for line in rabbitmqctl("list_queues", "-p", vhost, "name", "consumers").splitlines():
        name, _, count = line.partition("\t")
        if name == queue:
            return int(count)
    return 0


def _start_adapter(config: Path, env: dict[str, str], vhost: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-m", "broker.cli", "adapter", "run", str(config)], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while _consumers(vhost, entity_queue(REGISTRADURIA)) < 1:
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the adapter never started consuming"
        time.sleep(0.3)
    return process


def test_an_adapter_killed_while_handling_answers_exactly_once_after_restart(
        rabbitmq_platform: tuple[str, Credentials], pki: DevPKI, tmp_path: Path) -> None:
    base_url, credentials = rabbitmq_platform
    settings = Settings(certs_dir=pki.directory, database_url=f"sqlite:///{tmp_path / 'gel.db'}",
                        schemas_dir=ROOT / "schemas", entities_file=ENTITIES_FILE)
    platform = open_platform(settings, "rabbitmq", credentials=credentials)
    store = tmp_path / "registraduria.db"
    config = tmp_path / "adapter.yaml"
    config.write_text(
        f"entity: {REGISTRADURIA}\n"
        "provides:\n"
        "  - {service: verificarIdentidad, version: '1.0', handler: 'tests.integration.slow_identity:answer'}\n"
        f"store: sqlite:///{store}\n", encoding="utf-8")
    journal = tmp_path / "journal.txt"
    env = {**os.environ, "GEL_CERTS_DIR": str(pki.directory), "GEL_RABBITMQ_VHOST": credentials.vhost,
           "GEL_AMQP_URL": base_url, "GEL_TEST_JOURNAL": str(journal), "GEL_LOG_LEVEL": "WARNING"}
    inbox = Inbox()
    caller = Adapter(ORCHESTRATOR, platform.transport(ORCHESTRATOR), pki.credential(ORCHESTRATOR),
                     pki.trust_store(), AdapterStore(f"sqlite:///{tmp_path / 'orquestador.db'}"), {},
                     on_message=inbox, relay_interval=0.2)
    caller.start()
    first = _start_adapter(config, env, credentials.vhost)
    second = None
    try:
        request_id = caller.call(IDENTITY, REGISTRADURIA, sample_payload("verificarIdentidad-solicitud.xml"))
        deadline = time.monotonic() + 30
        while not journal.exists():
            assert time.monotonic() < deadline, "the request never reached the handler"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert inbox.of_type(MessageType.RESPONSE) == [], "nothing was answered before the kill"

        second = _start_adapter(config, env, credentials.vhost)
        inbox.wait_for(2, timeout=30)
        time.sleep(2)  # a second answer, if there were one, would arrive meanwhile
        responses = inbox.of_type(MessageType.RESPONSE)
        assert [r.header.correlation_id for r in responses] == [request_id]
        assert journal.read_text(encoding="utf-8").split() == [request_id, request_id], (
            "the request was handled again after the crash, since nothing had been committed for it")
    finally:
        if second is not None:
            second.send_signal(signal.SIGTERM)
            _, err = second.communicate(timeout=30)
            assert second.returncode == 0, err[-3000:]
        caller.stop()
        caller.store.close()
        platform.close()
    provider_store = AdapterStore(f"sqlite:///{store}")
    try:
        replies = [r for r in provider_store.sent(answers=request_id) if r.message_type == "respuesta"]
        assert len(replies) == 1 and replies[0].published
    finally:
        provider_store.close()
