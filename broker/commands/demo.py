"""`gel demo`: the most complete flow the platform has, run end to end, saying what it did."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlparse

import typer
from sqlalchemy.exc import SQLAlchemyError

from broker.commands.demo_legacy import LegacySide, legacy_side
from broker.commands.output import console
from broker.gateway.gateway import HEADER_TIMESTAMP
from broker.gateway.local import LocalPlatform, TransportKind, open_platform
from broker.gelxml import GelFault, MessageType
from broker.gelxml.envelope import read_header, reissue
from broker.gelxml.parsing import parse_untrusted
from broker.logs import quieten
from broker.security.entities import EntityRegistry, load_entities
from broker.security.evidence import check_record_evidence, export_evidence
from broker.security.message_log import MessageLog
from broker.security.pki import DevPKI, TrustStore
from broker.security.receipts import build_receipt, verify_receipt
from broker.security.signing import sign_message
from broker.security.timestamp import verify_token
from broker.security.verification import verify_message
from broker.settings import Settings, get_settings
from broker.transport.abc import Delivery, PublishError, TransportError
from broker.transport.factory import rabbitmq_answers
from broker.transport.provisioning import ProvisioningError

HOUSING_ORDER = (
    "radicarPostulacion", "verificarIdentidad", "consultarPropiedad", "consultarSisben",
    "consultarSubsidiosPrevios", "consultarDisponibilidadRecursos", "calificarPostulacion",
    "asignarSubsidio", "notificarResultado", "movilizarSubsidio",
)


def _housing_steps(valid: Path) -> list[Path]:
    return [valid / f"{code}-{kind}.xml" for code in HOUSING_ORDER for kind in ("solicitud", "respuesta")
            if (valid / f"{code}-{kind}.xml").exists()]


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


def _check_arrival(delivery: Delivery, trust: TrustStore) -> int:
    """What the recipient's adapter does on arrival: verify the sender's signature and the platform's stamp."""
    verify_message(delivery.body, trust, window=None)
    token = base64.b64decode(delivery.headers[HEADER_TIMESTAMP])
    return int(verify_token(token, digest=hashlib.sha256(delivery.body).digest(), trust=trust).serial)


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


def demo() -> None:
    """Recorre la Ventanilla Única de Subsidios de Vivienda a través de la plataforma: cada entidad publica
    su mensaje firmado en RabbitMQ (o en el transporte embebido si RabbitMQ no responde), la pasarela lo
    analiza, valida, autentica, autoriza, sella y registra, y lo entrega en la cola del destinatario, que
    verifica firma y sello y devuelve un acuse. Luego muestra rechazos y ataques con su falla codificada."""
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
        surprises += _run_housing_chain(settings, platform, entities, pki, samples / "valid")
        surprises += _refusals(platform, pki, samples)
        surprises += _closing(log, pki, settings, first_seq)
    finally:
        platform.close()
    raise typer.Exit(1 if surprises else 0)


def _run_housing_chain(settings: Settings, platform: LocalPlatform, entities: EntityRegistry, pki: DevPKI,
                       valid: Path) -> int:
    """The chain answered by the entities' adapters from their legacy systems; replayed samples if they cannot
    start (the demo says why)."""
    with ExitStack() as stack:
        side: LegacySide | None
        try:
            side = stack.enter_context(legacy_side(settings, platform))
        except (OSError, RuntimeError, ValueError, SQLAlchemyError) as exc:
            console.print(f"  [yellow]Los adaptadores no arrancaron ({exc}); la cadena usa las respuestas de "
                          "muestra.[/]", soft_wrap=True)
            side = None
        return _housing_chain(platform, entities, pki, valid, side) + _fan_out(platform, entities, pki, valid, side)


def _arrival(platform: LocalPlatform, side: LegacySide | None, entity: str, trust: TrustStore
             ) -> tuple[bytes, str] | None:
    """The next message for `entity` and how its arrival was checked (its adapter, or the demo itself)."""
    if side is not None and entity in side.adapters:
        incoming = side.next_for(entity)
        return (incoming.body, "verificado por su adaptador") if incoming is not None else None
    while (delivery := platform.receive(entity)) is not None:
        if HEADER_TIMESTAMP in delivery.headers:
            return delivery.body, f"sello n.º {_check_arrival(delivery, trust)}"
        _note_stray(delivery.body)
    return None


def _note_stray(body: bytes) -> None:
    """A platform falla about an earlier run's message (a reply deadline that expired meanwhile)."""
    code, text = _fault_of_body(body)
    console.print(f"      [dim](aviso de la plataforma sobre un mensaje anterior: {code} {text})[/]", soft_wrap=True)


def _housing_chain(platform: LocalPlatform, entities: EntityRegistry, pki: DevPKI, valid: Path,
                   side: LegacySide | None) -> int:
    say = console.print
    trust = pki.trust_store()
    say(f"\n[bold]1. La cadena de vivienda atraviesa la plataforma[/]\n   Etapas de la pasarela: {STAGES}",
        soft_wrap=True)
    if side is not None:
        say(f"   Responden los adaptadores de {len(side.adapters)} entidades desde sus sistemas heredados sembrados "
            "en var/legacy (la Registraduría, con su servicio JSON en un proceso aparte).", soft_wrap=True)
    requests: dict[str, bytes] = {}
    answered: set[str] = set()
    surprises, shown, messages, started = 0, 0, 0, time.perf_counter()
    for path in _housing_steps(valid):
        code, kind = path.stem.rsplit("-", 1)
        if kind == "respuesta" and code in answered:
            continue
        message = reissue(parse_untrusted(path.read_bytes()), answering=requests.get(code) if kind == "respuesta"
                          else None)
        header = read_header(message)
        signed = sign_message(message, pki.credential(header.sender))
        requests.setdefault(code, signed)
        shown += 1
        sent = time.perf_counter()
        platform.send(header.sender, signed)
        route = f"{_short(entities, header.sender):22} → {_short(entities, header.recipient):22}"
        if side is not None and kind == "solicitud" and header.recipient in side.adapters:
            answered.add(code)
            outcome = _answered_by_adapter(platform, side, header.sender, header.recipient, signed, trust)
            messages += 2
            if outcome is None:
                surprises += 1
                say(f"  {shown:2}. [red]{code}: el adaptador de {header.recipient} no respondió como se esperaba[/]",
                    soft_wrap=True)
                continue
            say(f"  {shown:2}. solicitud {code:31} {route} [green]✓[/] respondida por su adaptador "
                f"(conector {side.connectors[header.recipient]}) en {(time.perf_counter() - sent) * 1000:5.1f} ms, "
                f"{outcome}, acuse firmado de vuelta", soft_wrap=True)
            continue
        messages += 1
        arrived = _arrival(platform, side, header.recipient, trust)
        if arrived is None or arrived[0] != signed:
            surprises += 1
            fault, text = _fault_of(platform.receive(header.sender, timeout=1))
            say(f"  {shown:2}. [red]{path.name}: no llegó a su destino {fault} {text}[/]", soft_wrap=True)
            continue
        end_to_end = (time.perf_counter() - sent) * 1000
        platform.send(header.recipient, build_receipt(arrived[0], pki.credential(header.recipient)))
        receipt = _arrival(platform, side, header.sender, trust)
        if receipt is None:
            surprises += 1
            say(f"  {shown:2}. [red]{path.name}: el acuse no volvió al remitente[/]", soft_wrap=True)
            continue
        verify_receipt(receipt[0], signed, trust)
        say(f"  {shown:2}. {header.message_type.value:9} {header.service.code:31} {route} [green]✓[/] total "
            f"{end_to_end:5.1f} ms, {arrived[1]}, acuse firmado de vuelta", soft_wrap=True)
    elapsed = time.perf_counter() - started
    carrier = "RabbitMQ" if platform.kind == "rabbitmq" else "el transporte embebido"
    say(f"  {messages} mensajes entregados en {elapsed:.2f} s por {carrier}, cada uno con su acuse: cada destinatario "
        "verificó la firma del remitente y el sello de tiempo de la plataforma.", soft_wrap=True)
    return surprises


def _answered_by_adapter(platform: LocalPlatform, side: LegacySide, sender: str, recipient: str, request: bytes,
                         trust: TrustStore) -> str | None:
    """Collect the provider adapter's receipt and answer at the caller; a short account of the answer."""
    answer: bytes | None = None
    receipt: bytes | None = None
    for _ in range(2):
        arrived = _arrival(platform, side, sender, trust)
        if arrived is None:
            return None
        kind = read_header(parse_untrusted(arrived[0])).message_type
        if kind is MessageType.RECEIPT:
            receipt = arrived[0]
        else:
            answer = arrived[0]
    if answer is None or receipt is None:
        return None
    verify_receipt(receipt, request, trust)
    verified = verify_message(answer, trust, window=None)
    if verified.signer != recipient:
        return None
    if verified.header.message_type is MessageType.FAULT:
        code, text = _fault_of_body(answer)
        return f"[yellow]falla {code}[/] ({text})"
    return "respuesta firmada"


def _fan_out(platform: LocalPlatform, entities: EntityRegistry, pki: DevPKI, valid: Path,
             side: LegacySide | None) -> int:
    """Fonvivienda's decision reaches every subscriber in the catalog through one event to the platform: the
    event its adapter emitted with the answer, or (without adapters) the sample event published here."""
    template = parse_untrusted((valid / "asignarSubsidio-evento.xml").read_bytes())
    subscribers = platform.parts.pipeline.recipients_of(read_header(template))
    if side is None:
        event = sign_message(reissue(template), pki.credential(FONVIVIENDA))
        platform.send(FONVIVIENDA, event)
        origin = "publicado una vez por Fonvivienda"
    else:
        origin = "emitido por el adaptador de Fonvivienda con su respuesta"

    def got_it(subscriber: str) -> bool:
        if side is not None and subscriber in side.adapters:
            arrived = [m for m in side.received[subscriber] if m.header.message_type is MessageType.EVENT]
            return any(m.header.sender == FONVIVIENDA for m in arrived)
        delivery = platform.receive(subscriber, timeout=5)
        return delivery is not None and read_header(parse_untrusted(delivery.body)).sender == FONVIVIENDA

    reached = [s for s in subscribers if got_it(s)]
    names = ", ".join(_short(entities, s, 30) for s in reached)
    ok = len(reached) == len(subscribers) > 0
    console.print(f"  Evento asignarSubsidio {origin} → {len(reached)} suscriptores del catálogo: {names} "
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
    say("\n[bold]Hecho.[/] Mensajes firmados que cruzan la plataforma por RabbitMQ con usuario por entidad, pasarela "
        "con todas sus etapas, fallas firmadas y registro verificable. La orquestación de la cadena y los "
        "adaptadores de los sistemas heredados son las siguientes entregas.", soft_wrap=True)
    return surprises


def _last_accepted(log: MessageLog, first: int, last: int) -> int:
    for seq in range(last, first - 1, -1):
        if log.get(seq).outcome == "aceptado":
            return seq
    return last
