"""The chains' entity adapters, as shipped (adapters/<entity>/adapter.yaml), over seeded legacy systems:
the Registraduría behind a live legacy JSON service, SISBEN behind its SQL table — answering the
orchestrator through the platform, on both transports. The legacy JSON service runs as a process of its own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from adapters.legacy.seed import seed
from adapters.sdk.assembly import AssembledAdapter, assemble
from adapters.sdk.config import load_adapter_config
from adapters.sdk.runtime import Adapter, Incoming
from adapters.sdk.store import AdapterStore
from broker.gateway.local import LocalPlatform, open_platform
from broker.gelxml import FaultCode, MessageType, SchemaRegistry
from broker.gelxml.envelope import ServiceRef
from broker.security.pki import DevPKI
from broker.settings import Settings
from tests.conftest import ENTITIES_FILE, ROOT
from tests.integration.adapter_kit import Inbox, text
from tests.integration.adapter_kit import sample_payload as payload
from tests.integration.test_adapter_runtime import ORCHESTRATOR

SISBEN = "CO/GOB/899999011"


@dataclass(frozen=True)
class LegacyService:
    url: str


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, LegacyService]]:
    """Seeded legacy data, and the Registraduría's JSON service running as its own process."""
    folder = tmp_path_factory.mktemp("legacy")
    seeded = seed(folder)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "adapters.legacy.identity_app", str(port), "--datos",
                                str(seeded.identity_json)], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, "the legacy identity service did not start"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the legacy identity service never opened its port"
                time.sleep(0.1)
        yield folder, LegacyService(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(timeout=10)


@dataclass
class Chain:
    platform: LocalPlatform
    caller: Adapter
    inbox: Inbox

    def ask(self, service: str, recipient: str, body: etree._Element) -> Incoming:
        request_id = self.caller.call(ServiceRef(service, "1.0"), recipient, body)
        for _ in range(3):
            got = [m for m in self.inbox.wait_for(len(self.inbox.messages) + 1)
                   if m.header.correlation_id == request_id and m.header.message_type is not MessageType.RECEIPT]
            if got:
                return got[0]
        raise AssertionError(f"no answer to {service}")


@pytest.fixture(params=["embedded", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def chain(request: pytest.FixtureRequest, tmp_path: Path, pki: DevPKI, registry: SchemaRegistry,
          legacy: tuple[Path, LegacyService], monkeypatch: pytest.MonkeyPatch) -> Iterator[Chain]:
    folder, server = legacy
    monkeypatch.setenv("GEL_REGISTRADURIA_URL", server.url)
    monkeypatch.setenv("GEL_REGISTRADURIA_STORE", f"sqlite:///{tmp_path / 'registraduria.db'}")
    monkeypatch.setenv("GEL_SISBEN_DB_URL", f"sqlite:///{folder / 'sisben.db'}")
    monkeypatch.setenv("GEL_SISBEN_STORE", f"sqlite:///{tmp_path / 'sisben.db'}")
    settings = Settings(certs_dir=pki.directory, database_url=f"sqlite:///{tmp_path / 'gel.db'}",
                        schemas_dir=ROOT / "schemas", entities_file=ENTITIES_FILE)
    credentials = request.getfixturevalue("rabbitmq_platform")[1] if request.param == "rabbitmq" else None
    platform = open_platform(settings, request.param, credentials=credentials)
    adapters: list[AssembledAdapter] = []
    for name in ("registraduria", "sisben"):
        config = load_adapter_config(ROOT / "adapters" / name / "adapter.yaml")
        assembled = assemble(config, settings, platform.transport(config.entity), registry=registry)
        assembled.adapter.start()
        adapters.append(assembled)
    inbox = Inbox()
    caller = Adapter(ORCHESTRATOR, platform.transport(ORCHESTRATOR), pki.credential(ORCHESTRATOR),
                     pki.trust_store(), AdapterStore(f"sqlite:///{tmp_path / 'orquestador.db'}"), {},
                     on_message=inbox, relay_interval=0.2)
    caller.start()
    yield Chain(platform, caller, inbox)
    caller.stop()
    caller.store.close()
    for assembled in adapters:
        assembled.close()
    platform.close()


def test_the_registraduria_answers_from_its_legacy_json_service(chain: Chain) -> None:
    answer = chain.ask("verificarIdentidad", "CO/GOB/899999040", payload("verificarIdentidad-solicitud.xml"))
    assert answer.header.message_type is MessageType.RESPONSE and answer.signer == "CO/GOB/899999040"
    assert text(answer, "codEstadoDocumento") == "VIGENTE" and text(answer, "nomEstadoDocumento") == "Vigente"
    assert (text(answer, "primerNombre"), text(answer, "segundoNombre")) == ("MARÍA", "FERNANDA")
    assert (text(answer, "primerApellido"), text(answer, "segundoApellido")) == ("GÓMEZ", "RUIZ")
    assert text(answer, "fechaNacimiento") == "1990-04-12" and text(answer, "coincidenciaNombre") == "true"


def test_a_declared_name_that_differs_from_the_register_does_not_match(chain: Chain) -> None:
    request = payload("verificarIdentidad-solicitud.xml")
    request.find(".//{*}primerApellido").text = "GÓMES"  # type: ignore[union-attr]
    answer = chain.ask("verificarIdentidad", "CO/GOB/899999040", request)
    assert text(answer, "coincidenciaNombre") == "false"


def test_a_compound_surname_from_the_one_field_legacy_record_is_split_right(chain: Chain) -> None:
    request = payload("verificarIdentidad-solicitud.xml")
    request.find(".//{*}numDocumento").text = "79845123"  # type: ignore[union-attr]
    answer = chain.ask("verificarIdentidad", "CO/GOB/899999040", request)
    assert (text(answer, "primerApellido"), text(answer, "segundoApellido")) == ("DE LA TORRE", "PÉREZ")
    assert text(answer, "coincidenciaNombre") == "false", "the request declared María's names"


def test_someone_the_registraduria_does_not_know_is_a_coded_falla(chain: Chain) -> None:
    request = payload("verificarIdentidad-solicitud.xml")
    request.find(".//{*}numDocumento").text = "999999999"  # type: ignore[union-attr]
    answer = chain.ask("verificarIdentidad", "CO/GOB/899999040", request)
    assert answer.header.message_type is MessageType.FAULT
    assert text(answer, "codFalla") == FaultCode.ADAPTER_NOT_FOUND
    assert "999999999" in (text(answer, "descripcion") or "")


def test_sisben_answers_from_its_sql_table(chain: Chain) -> None:
    answer = chain.ask("consultarSisben", SISBEN, payload("consultarSisben-solicitud.xml"))
    assert answer.signer == SISBEN and text(answer, "encontrado") == "true"
    assert (text(answer, "codGrupoSisben"), text(answer, "codMunicipio")) == ("C3", "25754")
    assert text(answer, "fechaEncuesta") == "2024-03-15"


def test_someone_never_surveyed_is_an_answer_not_a_fault(chain: Chain) -> None:
    request = payload("consultarSisben-solicitud.xml")
    request.find(".//{*}numDocumento").text = "999999999"  # type: ignore[union-attr]
    answer = chain.ask("consultarSisben", SISBEN, request)
    assert answer.header.message_type is MessageType.RESPONSE
    assert text(answer, "encontrado") == "false" and text(answer, "codGrupoSisben") is None


def test_gel_adapter_check_reports_a_reachable_and_an_unreachable_legacy_system(
        legacy: tuple[Path, LegacyService], pki: DevPKI, tmp_path: Path) -> None:
    folder, server = legacy
    env = {**os.environ, "GEL_CERTS_DIR": str(pki.directory), "GEL_SISBEN_DB_URL": f"sqlite:///{folder / 'sisben.db'}",
           "GEL_SISBEN_STORE": f"sqlite:///{tmp_path / 's.db'}", "GEL_REGISTRADURIA_URL": server.url,
           "GEL_REGISTRADURIA_STORE": f"sqlite:///{tmp_path / 'r.db'}"}
    for name in ("sisben", "registraduria"):
        done = subprocess.run([sys.executable, "-m", "broker.cli", "adapter", "check", f"adapters/{name}/adapter.yaml"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Configuración correcta." in done.stdout
    env["GEL_SISBEN_DB_URL"] = f"sqlite:///{tmp_path / 'no-existe.db'}"
    done = subprocess.run([sys.executable, "-m", "broker.cli", "adapter", "check", "adapters/sisben/adapter.yaml"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "no responde" in done.stderr and "Traceback" not in done.stderr
