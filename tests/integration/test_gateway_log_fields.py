"""The gateway's log lines name the chain a message belongs to (idCadena) and, for a refusal, the pipeline
stage that refused it (etapa), on the embedded transport with the platform's own field names."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from structlog.testing import capture_logs

from broker.gateway.local import LocalPlatform, open_platform
from broker.gelxml.envelope import Header, read_header, reissue
from broker.gelxml.parsing import parse_untrusted
from broker.logs import platform_fields
from broker.security.pki import DevPKI
from broker.security.signing import sign_message
from broker.settings import Settings
from tests.conftest import ENTITIES_FILE, ROOT, SAMPLES

ORCHESTRATOR = "CO/PLAT/900000002"
REGISTRADURIA = "CO/GOB/899999040"
CATALOG_FILE = ROOT / "deploy" / "catalog.yaml"


@pytest.fixture
def platform(tmp_path: Path, pki: DevPKI) -> Iterator[LocalPlatform]:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG_FILE.read_text(encoding="utf-8").replace(
        "{code: verificarIdentidad, version: \"1.0\", status: activo, reply_within_seconds: 120,",
        "{code: verificarIdentidad, version: \"1.0\", status: activo, reply_within_seconds: 1,"), encoding="utf-8")
    settings = Settings(certs_dir=pki.directory, database_url=f"sqlite:///{tmp_path / 'gel.db'}",
                        schemas_dir=ROOT / "schemas", entities_file=ENTITIES_FILE, catalog_file=catalog)
    started = open_platform(settings, "embedded")
    yield started
    started.close()


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs(processors=[platform_fields]) as captured:
        yield captured


def request(pki: DevPKI) -> tuple[bytes, Header]:
    body = sign_message(reissue(parse_untrusted((SAMPLES / "valid" / "verificarIdentidad-solicitud.xml")
                                                .read_bytes())), pki.credential(ORCHESTRATOR))
    header = read_header(parse_untrusted(body))
    assert header.chain_id, "the sample belongs to a chain"
    return body, header


def line(logs: list[dict[str, Any]], event: str, message_id: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in list(logs) if e["event"] == event and e.get("idMensaje") == message_id]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no {event} line for {message_id}: {[e['event'] for e in logs]}")


def test_a_routed_message_is_logged_with_its_chain(platform: LocalPlatform, pki: DevPKI,
                                                   logs: list[dict[str, Any]]) -> None:
    body, header = request(pki)
    platform.send(ORCHESTRATOR, body)
    assert platform.receive(REGISTRADURIA) is not None
    routed = line(logs, "gateway.routed", header.message_id)
    assert routed["idCadena"] == header.chain_id and routed["entidad"] == ORCHESTRATOR
    assert routed["etapa"] == "enrutamiento" and routed["outcome"] == "entregado"
    assert not {"chain_id", "message_id", "entity", "stage"} & routed.keys()

    platform.parts.gateway.sweep(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
    timed_out = line(logs, "gateway.reply_timeout", header.message_id)
    assert timed_out["idCadena"] == header.chain_id and timed_out["entidad"] == ORCHESTRATOR


def test_a_refusal_is_logged_with_its_chain_and_the_stage_that_refused_it(platform: LocalPlatform, pki: DevPKI,
                                                                          logs: list[dict[str, Any]]) -> None:
    body, header = request(pki)
    platform.send(ORCHESTRATOR, body.replace(b"1020304050", b"1020304051"))
    assert platform.receive(ORCHESTRATOR) is not None, "the falla reaches the sender"
    refused = line(logs, "gateway.routed", header.message_id)
    assert refused["outcome"] == "rechazado" and refused["fault"] == "GEL-AUTH-BAD_SIGNATURE"
    assert refused["idCadena"] == header.chain_id and refused["etapa"] == "autenticacion"


def test_a_retry_is_logged_with_its_chain(platform: LocalPlatform, pki: DevPKI, logs: list[dict[str, Any]],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def database_down(*_: object, **__: object) -> None:
        raise OperationalError("INSERT INTO message_log", {}, Exception("la base de datos no responde"))

    monkeypatch.setattr(platform.parts.log, "append_many", database_down)
    body, header = request(pki)
    platform.send(ORCHESTRATOR, body)
    retry = line(logs, "gateway.retry", header.message_id)
    assert retry["idCadena"] == header.chain_id and retry["entidad"] == ORCHESTRATOR
    parked = line(logs, "gateway.dead_letter", header.message_id, timeout=20)
    assert parked["idCadena"] == header.chain_id
