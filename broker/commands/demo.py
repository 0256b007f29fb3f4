"""`gel demo`: the most complete flow the platform has, run end to end, saying what it did."""

from __future__ import annotations

import os
import shutil
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse

import typer
from sqlalchemy.exc import SQLAlchemyError

from broker.commands.demo_legacy import LegacySide, legacy_side
from broker.commands.demo_window import run_window
from broker.commands.output import console
from broker.gateway.local import LocalPlatform, TransportKind, open_platform
from broker.gelxml import GelFault, MessageType
from broker.gelxml.envelope import read_header, reissue
from broker.gelxml.parsing import parse_untrusted
from broker.logs import quieten
from broker.orchestrator.bus import open_orchestrator
from broker.security.entities import EntityRegistry, load_entities
from broker.security.evidence import check_record_evidence, export_evidence
from broker.security.message_log import MessageLog
from broker.security.pki import DevPKI
from broker.security.signing import sign_message
from broker.settings import Settings, get_settings
from broker.transport.abc import Delivery, PublishError, TransportError
from broker.transport.factory import rabbitmq_answers
from broker.transport.provisioning import ProvisioningError

FONVIVIENDA = "CO/GOB/830121208"
COLSUBSIDIO = "CO/CCF/860007336"
REGISTRADURIA = "CO/GOB/899999040"
ORCHESTRATOR = "CO/PLAT/900000002"
STAGES = "análisis → validación → autenticación → autorización → duplicados → sello de tiempo → registro → enrutamiento"


def _short(entities: EntityRegistry, entity_id: str, width: int = 22) -> str:
    entity = entities.get(entity_id)
    name = entity.name.split(" - ")[-1] if entity else entity_id
    return name if len(name) <= width else name[: width - 1] + "…"


def _choose_transport(settings: Settings) -> tuple[TransportKind, str]:
    host = urlparse(settings.amqp_url).hostname
    if settings.transport == "embedded":
        return "embedded", "embebido (GEL_TRANSPORT=embedded)"
    if not rabbitmq_answers(settings.amqp_url):
        if settings.transport == "rabbitmq":
            return "embedded", f"embebido: GEL_TRANSPORT=rabbitmq pero RabbitMQ no responde en {host}"
        return "embedded", f"embebido, porque RabbitMQ no responde en {host}"
    if shutil.which("rabbitmqctl") is None:
        return "embedded", ("embebido: RabbitMQ responde pero no hay rabbitmqctl para crear los usuarios por entidad "
                            "(ejecute gel topology apply en el nodo)")
    return "rabbitmq", f"RabbitMQ en {host} (vhost gel-demo, un usuario por entidad)"


def _open(settings: Settings) -> LocalPlatform:
    kind, note = _choose_transport(settings)
    if kind == "rabbitmq":
        try:
            platform = open_platform(settings, "rabbitmq")
        except (ProvisioningError, TransportError) as exc:
            kind, note = "embedded", f"embebido, porque RabbitMQ no aceptó la topología ({exc})"
        else:
            console.print(f"Transporte: {note}.", soft_wrap=True)
            return platform
    console.print(f"Transporte: {note}.", soft_wrap=True)
    return open_platform(settings, "embedded")


def _fault_of(delivery: Delivery | None) -> tuple[str, str]:
    if delivery is None:
        return "", "no llegó ninguna respuesta"
    return _fault_of_body(delivery.body)


def _message_id(data: bytes) -> str | None:
    try:
        return read_header(parse_untrusted(data)).message_id
    except (GelFault, ValueError, KeyError):
        return None


def _fault_of_body(body: bytes) -> tuple[str, str]:
    root = parse_untrusted(body)
    return (root.findtext("{*}cuerpo/{*}falla/{*}codFalla") or "",
            root.findtext("{*}cuerpo/{*}falla/{*}descripcion") or "")


def _note_stray(body: bytes) -> None:
    """A platform falla about an earlier run's message (a reply deadline that expired meanwhile)."""
    code, text = _fault_of_body(body)
    console.print(f"      [dim](aviso de la plataforma sobre un mensaje anterior: {code} {text})[/]", soft_wrap=True)


def _expect_fault(platform: LocalPlatform, publisher: str, data: bytes, expected: str, label: str) -> int:
    platform.send(publisher, data)
    sent_id = _message_id(data)
    while (delivery := platform.receive(publisher)) is not None:
        correlation = read_header(parse_untrusted(delivery.body)).correlation_id
        if sent_id is None or correlation == sent_id:
            break
        _note_stray(delivery.body)
    code, text = _fault_of(delivery)
    mark = "[green]✓[/]" if code == expected else "[red]✗[/]"
    console.print(f"   {mark} {label}: falla firmada {code or '(ninguna)'} — {text}", soft_wrap=True)
    return int(code != expected)


def demo(applications: Annotated[int, typer.Option(
        "--postulaciones", min=1, max=500, help="Cuántos hogares se postulan en la demostración.")] = 24) -> None:
    """Recorre la Ventanilla Única de Subsidios de Vivienda de punta a punta: las cajas de compensación radican
    un lote de postulaciones; el orquestador de cadenas consulta en paralelo a la Registraduría, la SNR, el
    Sisbén y Fonvivienda, que responden desde sus sistemas heredados por medio de sus adaptadores; Fonvivienda
    califica y asigna, y la caja notifica el resultado. Todo pasa por la pasarela (RabbitMQ, o el transporte
    embebido si RabbitMQ no responde), firmado, sellado y registrado. Luego muestra rechazos y ataques con su
    falla codificada y verifica el registro encadenado."""
    settings = get_settings()
    if "GEL_LOG_LEVEL" not in os.environ:
        quieten()
    entities = load_entities(settings.entities_file)
    samples = settings.schemas_dir / "samples"
    say = console.print
    say("[bold]GEL Broker — demostración: Ventanilla Única de Subsidios de Vivienda[/]")
    pki = DevPKI(settings.certs_dir)
    issued = pki.initialise(entities)
    say(f"PKI de desarrollo en {pki.directory} ({len(pki.list())} certificados, {len(issued)} emitidos ahora).",
        soft_wrap=True)
    platform = _open(settings)
    log = platform.parts.log
    first_seq = log.count() + 1
    say(f"Registro de mensajes: {log.url} (continúa en el registro n.º {first_seq}).", soft_wrap=True)
    surprises = 0
    try:
        surprises += _run_housing_window(settings, platform, entities, pki, samples / "valid", applications)
        surprises += _refusals(platform, pki, samples)
        surprises += _closing(log, pki, settings, first_seq)
    finally:
        platform.close()
    raise typer.Exit(1 if surprises else 0)


def _run_housing_window(settings: Settings, platform: LocalPlatform, entities: EntityRegistry, pki: DevPKI,
                        valid: Path, applications: int) -> int:
    """The window run by the orchestrator, answered by the entities' adapters from their legacy systems."""
    with ExitStack() as stack:
        try:
            side = stack.enter_context(legacy_side(settings, platform))
            node = open_orchestrator(settings, platform.transport(ORCHESTRATOR))
        except (OSError, RuntimeError, ValueError, SQLAlchemyError) as exc:
            console.print(f"  [red]Los adaptadores o el orquestador no arrancaron: {exc}[/]", soft_wrap=True)
            return 1
        stack.callback(node.close)
        try:
            node.start()
        except GelFault as exc:
            console.print(f"  [red]El orquestador no arrancó: {exc.falla.code} {exc.falla.message}[/]", soft_wrap=True)
            return 1
        result = run_window(platform, node, side, pki, applications)
        return result.surprises + _fan_out(platform, entities, valid, side)


def _fan_out(platform: LocalPlatform, entities: EntityRegistry, valid: Path, side: LegacySide) -> int:
    """Each of Fonvivienda's decisions reaches every subscriber in the catalog through one event its adapter
    emitted to the platform with the answer."""
    template = parse_untrusted((valid / "asignarSubsidio-evento.xml").read_bytes())
    subscribers = platform.parts.pipeline.recipients_of(read_header(template))
    origin = "emitidos por el adaptador de Fonvivienda con cada asignación"

    def got_it(subscriber: str) -> bool:
        if subscriber in side.adapters:
            arrived = [m for m in side.received[subscriber] if m.header.message_type is MessageType.EVENT]
            return any(m.header.sender == FONVIVIENDA for m in arrived)
        delivery = platform.receive(subscriber, timeout=5)
        return delivery is not None and read_header(parse_untrusted(delivery.body)).sender == FONVIVIENDA

    reached = [s for s in subscribers if got_it(s)]
    names = ", ".join(_short(entities, s, 30) for s in reached)
    ok = len(reached) == len(subscribers) > 0
    console.print(f"  Eventos asignarSubsidio {origin} → {len(reached)} suscriptores del catálogo: {names} "
                  f"{'[green]✓[/]' if ok else '[red]✗[/]'}", soft_wrap=True)
    return int(not ok)


def _refusals(platform: LocalPlatform, pki: DevPKI, samples: Path) -> int:
    say = console.print
    surprises = 0
    say("\n[bold]2. Mensajes defectuosos[/]: la pasarela devuelve al remitente una falla firmada y registra el "
        "rechazo", soft_wrap=True)
    for path in sorted((samples / "invalid").glob("GEL-*--vivienda-*.xml")):
        data = path.read_bytes()
        try:
            publisher = read_header(parse_untrusted(data)).sender
        except Exception:
            publisher = FONVIVIENDA
        surprises += _expect_fault(platform, publisher, data, path.name.split("--")[0], path.name)

    say("\n[bold]3. Ataques[/]")
    genuine = sign_message(reissue(parse_untrusted((samples / "valid" / "verificarIdentidad-solicitud.xml")
                                                   .read_bytes())), pki.credential(ORCHESTRATOR))
    platform.send(ORCHESTRATOR, genuine)
    platform.receive(REGISTRADURIA)
    answer = reissue(parse_untrusted((samples / "valid" / "verificarIdentidad-respuesta.xml").read_bytes()),
                     answering=genuine)
    platform.send(REGISTRADURIA, sign_message(answer, pki.credential(REGISTRADURIA)))
    platform.receive(ORCHESTRATOR)  # answered: no reply deadline is left open
    tampered = genuine.replace(b"1020304050", b"1020304059", 1)
    surprises += _expect_fault(platform, ORCHESTRATOR, tampered, "GEL-AUTH-BAD_SIGNATURE", "dato alterado tras firmar")
    reused = sign_message(tampered, pki.credential(ORCHESTRATOR))
    surprises += _expect_fault(platform, ORCHESTRATOR, reused, "GEL-DUP-REPLAY",
                               "idMensaje ya usado, con otro contenido")
    surprises += _expect_fault(platform, COLSUBSIDIO, genuine, "GEL-AUTH-TRANSPORT_USER",
                               "mensaje del orquestador publicado con la conexión de Colsubsidio")
    impostor = sign_message((samples / "valid" / "verificarIdentidad-respuesta.xml").read_bytes(),
                            pki.credential(COLSUBSIDIO))
    surprises += _expect_fault(platform, COLSUBSIDIO, impostor, "GEL-AUTH-SENDER_MISMATCH",
                               "Colsubsidio firma haciéndose pasar por la Registraduría")
    sisben = reissue(parse_untrusted((samples / "valid" / "consultarSisben-solicitud.xml").read_bytes()))
    unauthorised = sign_message(sign_message(sisben, pki.credential(ORCHESTRATOR)).replace(
        ORCHESTRATOR.encode(), COLSUBSIDIO.encode(), 1), pki.credential(COLSUBSIDIO))
    surprises += _expect_fault(platform, COLSUBSIDIO, unauthorised, "GEL-AUTHZ-DENIED",
                               "Colsubsidio consulta el SISBEN sin estar autorizada en el catálogo")
    try:
        platform.send(COLSUBSIDIO, genuine, user_id=ORCHESTRATOR)
    except PublishError:
        say("   [green]✓[/] user_id falsificado: el transporte rechazó la publicación (RabbitMQ comprueba user_id)",
            soft_wrap=True)
    else:
        surprises += 1
        say("   [red]✗ user_id falsificado: el transporte aceptó la publicación[/]")
    return surprises


def _closing(log: MessageLog, pki: DevPKI, settings: Settings, first_seq: int) -> int:
    say = console.print
    say("\n[bold]4. Registro encadenado[/]")
    report = log.verify(check_record_evidence(pki.trust_store()))
    surprises = 0
    if report.ok:
        say(f"  Registro íntegro: {report.checked} registros verificados (cadena de hashes, firmas y sellos).",
            soft_wrap=True)
    else:
        surprises += 1
        say(f"  [red]{report.fault.code if report.fault else ''}: {report.fault.message if report.fault else ''}[/]")
    last = log.count()
    folder = (Path(settings.database_url.removeprefix("sqlite:///")).parent
              if settings.database_url.startswith("sqlite:///") else Path("var"))
    zip_path = export_evidence(log, _last_accepted(log, first_seq, last), folder / "evidencia-demo.zip",
                               pki.directory)
    say(f"  Evidencia del último mensaje aceptado: {zip_path}", soft_wrap=True)
    say("  Compruébela sin GEL Broker: descomprima y siga LEAME.txt (xmlsec1 --verify …, openssl ts -verify …).",
        soft_wrap=True)
    say("\n[bold]Hecho.[/] La ventanilla de vivienda de punta a punta: el orquestador condujo cada postulación entre "
        "las entidades, los adaptadores respondieron desde los sistemas heredados, cada mensaje cruzó la pasarela "
        "firmado, sellado y registrado, y el registro encadenado verifica. Siga un trámite con gel chains status "
        "RADICADO y vea todos con gel chains list.", soft_wrap=True)
    return surprises


def _last_accepted(log: MessageLog, first: int, last: int) -> int:
    for seq in range(last, first - 1, -1):
        if log.get(seq).outcome == "aceptado":
            return seq
    return last
