"""`gel log`: verify the hash-chained message log, show a record, export a record's evidence."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.exc import SQLAlchemyError

from broker.commands.output import console, fail, print_json
from broker.gelxml import GelFault
from broker.security.evidence import check_record_evidence, export_evidence, find_record
from broker.security.message_log import MessageLog
from broker.security.pki import TrustStore
from broker.settings import get_settings

app = typer.Typer(
    help="Registro de mensajes encadenado por hash: verificar, consultar y exportar evidencia.",
    no_args_is_help=True,
)

IdArgument = Annotated[str, typer.Argument(help="Número de registro o idMensaje.", show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Resultado en JSON para otros programas.")]
PROGRESS_THRESHOLD = 1000


def _hidden_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(URL ilegible)"


@contextmanager
def _opened_log() -> Iterator[MessageLog]:
    """The configured log; a database that cannot be reached is a coded error, not a traceback."""
    url = get_settings().database_url
    try:
        log = MessageLog(url)
    except (SQLAlchemyError, OSError) as exc:
        fail("GEL-CONFIG-DATABASE", f"no se pudo abrir la base de datos {_hidden_url(url)} "
             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
             "revise GEL_DATABASE_URL y que el servidor de base de datos esté disponible")
    try:
        yield log
    except SQLAlchemyError as exc:
        fail("GEL-CONFIG-DATABASE", f"error de la base de datos {_hidden_url(url)} "
             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
    except GelFault as exc:
        fail(str(exc.falla.code), exc.falla.message)
    finally:
        log.close()


@app.command("verify")
def verify(
    as_json: JsonOption = False,
    no_evidence: Annotated[bool, typer.Option(
        "--sin-evidencia", help="Comprobar solo la cadena de resúmenes, sin volver a verificar firmas y sellos.",
    )] = False,
) -> None:
    """Verifica el log completo: cadena de resúmenes, orden, registros faltantes, firmas y sellos de tiempo.

    Sale con 0 si el log está íntegro y con 1 si encuentra un registro alterado, faltante, fuera de orden o
    con evidencia que no verifica (informa el primero).
    """
    settings = get_settings()
    with _opened_log() as log:
        check = None if no_evidence else check_record_evidence(TrustStore.from_dir(settings.certs_dir))
        total = log.count()
        if console.is_terminal and not as_json and total >= PROGRESS_THRESHOLD:
            with Progress(TextColumn("Verificando el log"), BarColumn(), MofNCompleteColumn(),
                          TimeRemainingColumn(), console=console, transient=True) as bar:
                task = bar.add_task("log", total=total)
                result = log.verify(check, progress=lambda done: bar.update(task, completed=done))
        else:
            result = log.verify(check)
    if as_json:
        print_json({
            "integro": result.ok, "verificados": result.checked, "registro": result.record,
            "falla": result.fault.to_dict() if result.fault is not None else None,
        })
    elif result.fault is None:
        console.print(f"Registro íntegro: {result.checked} registros verificados.")
    else:
        console.print(f"{result.fault.code} {result.fault.message}", markup=False, soft_wrap=True)
        console.print(f"Verificados sin problema antes de ese: {result.checked}.", markup=False)
    raise typer.Exit(0 if result.ok else 1)


@app.command("show")
def show(record_id: IdArgument, as_json: JsonOption = False) -> None:
    """Muestra el resumen de un registro del log (por número o por idMensaje)."""
    with _opened_log() as log:
        record = find_record(log, record_id)
    if as_json:
        print_json(record.to_dict())
        return
    lines = [
        f"Registro {record.seq} ({record.recorded_at.isoformat()})",
        f"  idMensaje:  {record.message_id}",
        f"  tipo:       {record.message_type} — servicio {record.service}",
        f"  origen:     {record.sender}",
        f"  destino:    {record.recipient}",
        f"  resultado:  {record.outcome}" + (f" ({record.fault_code})" if record.fault_code else ""),
        f"  mensaje:    {len(record.message)} bytes, SHA-256 {record.message_sha256}",
        f"  sello:      {'sí, SHA-256 ' + (record.token_sha256 or '') if record.token is not None else 'no'}",
        f"  enrutamiento: {', '.join(f'{k}={v}' for k, v in sorted(record.routing.items())) or '—'}",
        f"  prev_hash:  {record.prev_hash}",
        f"  record_hash: {record.record_hash}",
    ]
    console.print("\n".join(lines), markup=False, soft_wrap=True)


@app.command("export")
def export(
    record_id: IdArgument,
    output: Annotated[Path, typer.Option("--output", "-o", help="Archivo zip de salida.")] = Path("evidencia.zip"),
) -> None:
    """Exporta en un zip la evidencia de un registro, comprobable por un tercero con xmlsec1 y openssl.

    El zip trae el mensaje tal como llegó, su sello de tiempo, los certificados, el registro y un LEAME.txt
    con las órdenes exactas para comprobarlo.
    """
    settings = get_settings()
    with _opened_log() as log:
        path = export_evidence(log, record_id, output, settings.certs_dir)
    console.print(f"{path}: evidencia exportada (lea LEAME.txt para comprobarla).", markup=False)
