"""`gel demo`: the most complete flow the platform has, run end to end, saying what it did."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import typer

from broker.commands.output import console
from broker.gateway import Admitted, Pipeline, Rejected
from broker.gelxml import load_registry
from broker.gelxml.envelope import read_header
from broker.gelxml.parsing import parse_untrusted
from broker.security.entities import EntityRegistry, load_entities
from broker.security.evidence import check_record_evidence, export_evidence
from broker.security.message_log import MessageLog
from broker.security.pki import DevPKI
from broker.security.receipts import build_receipt, verify_receipt
from broker.security.signing import sign_message
from broker.security.timestamp import TimeStampAuthority
from broker.security.verification import MemoryReplayGuard
from broker.settings import Settings, get_settings

HOUSING_ORDER = (
    "radicarPostulacion", "verificarIdentidad", "consultarPropiedad", "consultarSisben",
    "consultarSubsidiosPrevios", "consultarDisponibilidadRecursos", "calificarPostulacion",
    "asignarSubsidio", "notificarResultado", "movilizarSubsidio",
)


def _housing_steps(valid: Path) -> list[Path]:
    return [valid / f"{code}-{kind}.xml" for code in HOUSING_ORDER for kind in ("solicitud", "respuesta")
            if (valid / f"{code}-{kind}.xml").exists()]


def _rabbitmq_answers(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 5672), timeout=0.5):
            return True
    except OSError:
        return False


def _short(entities: EntityRegistry, entity_id: str, width: int = 22) -> str:
    entity = entities.get(entity_id)
    name = entity.name.split(" - ")[-1] if entity else entity_id
    return name if len(name) <= width else name[: width - 1] + "…"


def _transport_note(settings: Settings) -> str:
    if settings.transport == "embedded":
        where = "embebido (GEL_TRANSPORT=embedded)"
    elif _rabbitmq_answers(settings.amqp_url):
        where = f"RabbitMQ, que responde en {urlparse(settings.amqp_url).hostname}"
    else:
        where = "embebido, porque RabbitMQ no responde"
    return (f"Transporte: {where}. El enrutamiento entre colas aún no está construido: esta demostración "
            "recorre en proceso las etapas de admisión de la pasarela.")


def demo() -> None:
    """Recorre la Ventanilla Única de Subsidios de Vivienda: cada mensaje se valida, se firma con el
    certificado de su entidad, se autentica, se sella en el tiempo y queda en el registro encadenado."""
    settings = get_settings()
    registry = load_registry(settings.schemas_dir)
    entities = load_entities(settings.entities_file)
    samples = settings.schemas_dir / "samples"
    say = console.print
    say("[bold]GEL Broker — demostración: Ventanilla Única de Subsidios de Vivienda[/]")
    say(_transport_note(settings), soft_wrap=True)

    pki = DevPKI(settings.certs_dir)
    issued = pki.initialise(entities)
    say(f"PKI de desarrollo en {pki.directory} ({len(pki.list())} certificados, {len(issued)} emitidos ahora).",
        soft_wrap=True)
    trust = pki.trust_store()
    log = MessageLog(settings.database_url)
    first_seq = log.count() + 1
    say(f"Registro de mensajes: {log.url} (continúa en el registro n.º {first_seq}).", soft_wrap=True)
    pipeline = Pipeline(registry=registry, trust=trust, tsa=TimeStampAuthority(pki.tsa_credential()), log=log,
                        replay=MemoryReplayGuard(timedelta(days=1)), window=None, limits=settings.parse_limits)
    surprises = 0

    say("\n[bold]1. La cadena de vivienda[/] (validación → firma → autenticación → sello de tiempo → registro → acuse)",
        soft_wrap=True)
    signed_messages: list[bytes] = []
    for index, path in enumerate(_housing_steps(samples / "valid"), start=1):
        header = read_header(parse_untrusted(path.read_bytes()))
        signed = sign_message(path.read_bytes(), pki.credential(header.sender))
        outcome = pipeline.admit(signed)
        if isinstance(outcome, Rejected):
            surprises += 1
            say(f"  {index:2}. [red]{path.name}: {outcome.falla.code} {outcome.falla.message}[/]", soft_wrap=True)
            continue
        receipt = build_receipt(signed, pki.credential(header.recipient))
        verify_receipt(receipt, signed, trust)
        signed_messages.append(signed)
        say(f"  {index:2}. {header.message_type.value:9} {header.service.code:31} "
            f"{_short(entities, header.sender):22} → {_short(entities, header.recipient):22} "
            f"[green]✓[/] registro n.º {outcome.record.seq}, sello {outcome.token.gen_time:%H:%M:%S}, acuse firmado",
            soft_wrap=True)

    say("\n[bold]2. Mensajes defectuosos[/]: cada uno se rechaza con su código y también queda registrado",
        soft_wrap=True)
    for path in sorted((samples / "invalid").glob("GEL-*--vivienda-*.xml")):
        surprises += _expect_rejection(pipeline, path.read_bytes(), path.name.split("--")[0], path.name)

    say("\n[bold]3. Ataques[/]")
    if signed_messages:
        genuine = signed_messages[-1]
        tampered = genuine.replace(b"39000000", b"93000000", 1)
        surprises += _expect_rejection(pipeline, tampered, "GEL-AUTH-BAD_SIGNATURE", "valor alterado tras firmar")
        surprises += _expect_rejection(pipeline, signed_messages[0], "GEL-DUP-REPLAY", "reenvío del mismo mensaje")
        source = (samples / "valid" / "verificarIdentidad-respuesta.xml").read_bytes()
        impostor = sign_message(source, pki.credential("CO/CCF/860007336"))
        surprises += _expect_rejection(pipeline, impostor, "GEL-AUTH-SENDER_MISMATCH",
                                       "Colsubsidio firma haciéndose pasar por la Registraduría")

    say("\n[bold]4. Registro encadenado[/]")
    report = log.verify(check_record_evidence(trust))
    if report.ok:
        say(f"  Registro íntegro: {report.checked} registros verificados (cadena de hashes, firmas y sellos).",
            soft_wrap=True)
    else:
        surprises += 1
        say(f"  [red]{report.fault.code if report.fault else ''}: {report.fault.message if report.fault else ''}[/]")
    last = log.count()
    evidence = Path(settings.database_url.removeprefix("sqlite:///")).parent if settings.database_url.startswith(
        "sqlite:///") else Path("var")
    zip_path = export_evidence(log, _last_accepted(log, first_seq, last), evidence / "evidencia-demo.zip",
                               pki.directory)
    say(f"  Evidencia del último mensaje aceptado: {zip_path}", soft_wrap=True)
    say("  Compruébela sin GEL Broker: descomprima y siga LEAME.txt (xmlsec1 --verify …, openssl ts -verify …).",
        soft_wrap=True)
    log.close()
    say("\n[bold]Hecho.[/] Análisis endurecido, validación, firma, autenticación, sellado, registro y acuses. "
        "Faltan el enrutamiento por RabbitMQ y la orquestación de la cadena (siguientes entregas).", soft_wrap=True)
    raise typer.Exit(1 if surprises else 0)


def _last_accepted(log: MessageLog, first: int, last: int) -> int:
    for seq in range(last, first - 1, -1):
        if log.get(seq).outcome == "aceptado":
            return seq
    return last


def _expect_rejection(pipeline: Pipeline, data: bytes, expected: str, label: str) -> int:
    outcome = pipeline.admit(data)
    if isinstance(outcome, Admitted):
        console.print(f"   [red]✗ {label}: aceptado (se esperaba {expected})[/]", soft_wrap=True)
        return 1
    mark = "[green]✓[/]" if outcome.falla.code == expected else "[red]✗[/]"
    console.print(f"   {mark} {label}: {outcome.falla.code} — {outcome.falla.message} "
                  f"(registro n.º {outcome.record.seq})", soft_wrap=True)
    return int(outcome.falla.code != expected)
