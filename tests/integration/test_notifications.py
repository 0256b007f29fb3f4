"""The citizens' notification channel (CO/PLAT/900000003, notificarCiudadano) sending real e-mail: a real SMTP
server (aiosmtpd) on loopback receives what the orchestrator asked the platform to send, on both transports.
Also: a server that is down is retried, then a coded falla; a refused recipient is a coded falla at once; a
greylisted recipient (4xx, then accepted) is retried and delivered; STARTTLS is negotiated when configured."""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from lxml import etree

from adapters.notificaciones import handler as notification_handler
from adapters.sdk.assembly import AssembledAdapter, assemble
from adapters.sdk.config import RetrySettings, load_adapter_config
from adapters.sdk.notify import MAIL_REJECTED, RECIPIENT_REFUSED, Email, MailRejected, MailSender, SmtpSettings
from adapters.sdk.runtime import Adapter, Incoming
from adapters.sdk.store import AdapterStore
from broker.gateway.local import LocalPlatform, open_platform
from broker.gelxml import FaultCode, MessageType, SchemaRegistry
from broker.gelxml.envelope import ServiceRef
from broker.security.pki import DevPKI
from broker.settings import Settings
from tests.conftest import ENTITIES_FILE, ROOT
from tests.integration.adapter_kit import sample_payload, text

ORCHESTRATOR = "CO/PLAT/900000002"
CHANNEL = "CO/PLAT/900000003"
SERVICE = ServiceRef("notificarCiudadano", "1.0")
RETRY = RetrySettings(attempts=3, initial=0.2, maximum=0.5)
REFUSED_DOMAIN = "buzon-inexistente.gov.co"
GREYLISTED_DOMAIN = "lista-gris.gov.co"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class MailServer:
    """aiosmtpd's handler: refuses one domain for good (550), delays another once (451), keeps the rest."""

    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    recipients_tried: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        with self.changed:
            self.recipients_tried.append(address)
            tries = self.recipients_tried.count(address)
        if address.endswith("@" + REFUSED_DOMAIN):
            return "550 5.1.1 El buzón no existe"
        if address.endswith("@" + GREYLISTED_DOMAIN) and tries == 1:
            return "451 4.7.1 Lista gris: intente de nuevo más tarde"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.changed:
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content)))
            self.changed.notify_all()
        return "250 2.0.0 Mensaje aceptado para entrega"

    def raw_for(self, address: str) -> list[bytes]:
        with self.changed:
            return [raw for _sender, rcpt, raw in self.received if address in rcpt]

    def for_recipient(self, address: str) -> list[EmailMessage]:
        return [message_from_bytes(raw, policy=default_policy) for raw in self.raw_for(address)]


class DeadServer:
    """A port where something accepts TCP connections and drops them at once: a mail server that is down."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.socket.settimeout(0.2)
        self.port = int(self.socket.getsockname()[1])
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.socket.accept()
            except TimeoutError:
                continue
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.socket.close()


@dataclass
class Channel:
    platform: LocalPlatform
    caller: Adapter
    answers: list[Incoming]
    changed: threading.Condition
    mail: MailServer

    def ask(self, body: etree._Element, timeout: float = 30) -> tuple[str, Incoming]:
        request_id = self.caller.call(SERVICE, CHANNEL, body)

        def found() -> Incoming | None:
            return next((m for m in self.answers if m.header.correlation_id == request_id
                         and m.header.message_type in (MessageType.RESPONSE, MessageType.FAULT)), None)

        with self.changed:
            self.changed.wait_for(lambda: found() is not None, timeout=timeout)
            answer = found()
        assert answer is not None, "no answer from the notification channel"
        return request_id, answer


def request(**texts: str) -> etree._Element:
    return sample_payload("notificarCiudadano-solicitud.xml", **texts)


@pytest.fixture(scope="module")
def mail() -> Iterator[tuple[MailServer, int]]:
    server, port = MailServer(), free_port()
    controller = Controller(server, hostname="127.0.0.1", port=port)
    controller.start()
    yield server, port
    controller.stop()
    notification_handler.LEGACY.close()


@pytest.fixture(scope="module", params=["embedded", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def channel(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pki: DevPKI,
            registry: SchemaRegistry, mail: tuple[MailServer, int]) -> Iterator[Channel]:
    folder = tmp_path_factory.mktemp(f"notificaciones-{request.param}")
    server, port = mail
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GEL_SMTP_HOST", "127.0.0.1")
        env.setenv("GEL_SMTP_PORT", str(port))
        env.setenv("GEL_SMTP_TIMEOUT", "3")
        env.setenv("GEL_NOTIFICACIONES_STORE", f"sqlite:///{folder / 'notificaciones.db'}")
        settings = Settings(certs_dir=pki.directory, database_url=f"sqlite:///{folder / 'gel.db'}",
                            schemas_dir=ROOT / "schemas", entities_file=ENTITIES_FILE)
        credentials = request.getfixturevalue("rabbitmq_platform")[1] if request.param == "rabbitmq" else None
        platform = open_platform(settings, request.param, credentials=credentials)
        # The shipped backoff (6 attempts up to 30 s) made short for the test; everything else as shipped.
        config = load_adapter_config(ROOT / "adapters" / "notificaciones" / "adapter.yaml").model_copy(
            update={"retry": RETRY})
        assembled: AssembledAdapter = assemble(config, settings, platform.transport(CHANNEL), registry=registry)
        assembled.adapter.start()
        answers: list[Incoming] = []
        changed = threading.Condition()

        def on_message(incoming: Incoming) -> None:
            with changed:
                answers.append(incoming)
                changed.notify_all()

        caller = Adapter(ORCHESTRATOR, platform.transport(ORCHESTRATOR), pki.credential(ORCHESTRATOR),
                         pki.trust_store(), AdapterStore(f"sqlite:///{folder / 'orquestador.db'}"), {},
                         on_message=on_message, relay_interval=0.2)
        caller.start()
        yield Channel(platform, caller, answers, changed, server)
        caller.stop()
        caller.store.close()
        assembled.close()
        platform.close()


def test_the_citizen_receives_the_email_with_accents_intact(channel: Channel) -> None:
    sample = request()
    request_id, answer = channel.ask(sample)
    assert answer.header.message_type is MessageType.RESPONSE and answer.signer == CHANNEL
    assert text(answer, "aceptado") == "true"
    assert text(answer, "idMensajeCorreo") == f"<{request_id}@notificaciones.gel.gov.co>"
    accepted = datetime.fromisoformat(text(answer, "fechaHoraAceptacion") or "")
    assert accepted.utcoffset() is not None and accepted.utcoffset().total_seconds() == -5 * 3600  # type: ignore[union-attr]

    delivered = [m for m in channel.mail.for_recipient("lucia.alvarez@energiaandina.com.co")
                 if m["Message-ID"] == text(answer, "idMensajeCorreo")]
    assert len(delivered) == 1, "exactly one e-mail for the request"
    email = delivered[0]
    assert email["To"].addresses[0].display_name == "LUCÍA ESPERANZA ÁLVAREZ PEÑA"
    assert email["To"].addresses[0].addr_spec == "lucia.alvarez@energiaandina.com.co"
    assert email["Subject"] == sample.findtext("{*}asunto") == "Su trámite AMB-2026-000045: la ANLA expidió el auto " \
                                                              "de inicio"
    body = email.get_content().replace("\r\n", "\n")  # SMTP carries CRLF line ends
    assert body.strip() == (sample.findtext("{*}cuerpo") or "").strip()
    assert body.startswith("Señora Lucía Esperanza Álvarez Peña:") and "AUTO-2026-08734" in body
    assert email.get_content_charset() == "utf-8"
    assert all(raw.isascii() for raw in channel.mail.raw_for("lucia.alvarez@energiaandina.com.co")), \
        "7-bit on the wire (RFC 2047 headers, quoted-printable body): any relay carries it"
    assert email["X-GEL-Radicado"] == "AMB-2026-000045" and email["Auto-Submitted"] == "auto-generated"
    assert email["X-GEL-IdCadena"] == "7f3fcb3b-1252-40c2-bde9-e3d42e466eeb"
    assert email["From"].addresses[0].addr_spec == "no-responder@notificaciones.gel.gov.co"


def test_a_refused_recipient_is_a_coded_falla_without_retries(channel: Channel) -> None:
    address = f"nadie.{channel.platform.kind}@{REFUSED_DOMAIN}"
    _request_id, answer = channel.ask(request(correoElectronico=address))
    assert answer.header.message_type is MessageType.FAULT
    assert text(answer, "codFalla") == RECIPIENT_REFUSED and text(answer, "reintentable") == "false"
    assert address in (text(answer, "descripcion") or "") and "550" in (text(answer, "descripcion") or "")
    assert channel.mail.recipients_tried.count(address) == 1, "a permanent refusal is not retried"
    assert channel.mail.for_recipient(address) == []


def test_a_greylisted_recipient_is_retried_and_delivered(channel: Channel) -> None:
    address = f"ciudadana.{channel.platform.kind}@{GREYLISTED_DOMAIN}"
    _request_id, answer = channel.ask(request(correoElectronico=address))
    assert answer.header.message_type is MessageType.RESPONSE and text(answer, "aceptado") == "true"
    assert channel.mail.recipients_tried.count(address) == 2, "451 the first time, accepted on the retry"
    assert len(channel.mail.for_recipient(address)) == 1


def test_a_mail_server_that_is_down_is_retried_then_a_coded_falla(channel: Channel,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    down = DeadServer()
    try:
        monkeypatch.setenv("GEL_SMTP_PORT", str(down.port))
        _request_id, answer = channel.ask(request())
    finally:
        down.close()
    assert answer.header.message_type is MessageType.FAULT
    assert text(answer, "codFalla") == FaultCode.ADAPTER_LEGACY_UNAVAILABLE
    assert text(answer, "reintentable") == "true"
    assert "cerró la conexión" in (text(answer, "descripcion") or "")
    assert down.connections == RETRY.attempts, "one connection per attempt of the adapter's retry policy"


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (IP subject alternative name) and its key, for a STARTTLS test server."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "correo de prueba")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "correo.pem", folder / "correo.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_starttls_is_negotiated_when_configured_and_required_by_the_server(tmp_path: Path) -> None:
    cert_file, key_file = self_signed_certificate(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert_file, key_file)
    server, port = MailServer(), free_port()
    controller = Controller(server, hostname="127.0.0.1", port=port, tls_context=tls, require_starttls=True)
    controller.start()
    try:
        secure = MailSender(CHANNEL, SmtpSettings.resolve({"port": port, "starttls": True, "ca_file": str(cert_file)},
                                                          environ={}))
        email = Email(to="ana.ruiz@correo.gov.co", to_name="ANA RUIZ", subject="Prueba cifrada", body="Señal íntegra.",
                      message_id=secure.message_id_for("prueba-tls"))
        sent = secure.send(email)
        delivered = server.for_recipient("ana.ruiz@correo.gov.co")
        assert [m["Message-ID"] for m in delivered] == [sent.message_id] == ["<prueba-tls@notificaciones.gel.gov.co>"]
        plain = MailSender(CHANNEL, SmtpSettings.resolve({"port": port}, environ={}))
        with pytest.raises(MailRejected) as refused:
            plain.send(email)
        assert refused.value.falla.code == MAIL_REJECTED and "530" in refused.value.falla.message
    finally:
        controller.stop()


def test_gel_adapter_check_reaches_the_mail_server(mail: tuple[MailServer, int], pki: DevPKI, tmp_path: Path) -> None:
    _server, port = mail
    env = {**os.environ, "GEL_CERTS_DIR": str(pki.directory), "GEL_SMTP_HOST": "127.0.0.1", "GEL_SMTP_PORT": str(port),
           "GEL_NOTIFICACIONES_STORE": f"sqlite:///{tmp_path / 'n.db'}"}
    command = [sys.executable, "-m", "broker.cli", "adapter", "check", "adapters/notificaciones/adapter.yaml"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "el sistema heredado responde (conector python)" in done.stdout, done.stderr
    env["GEL_SMTP_PORT"] = str(free_port())
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "no responde" in done.stderr and "Traceback" not in done.stderr
