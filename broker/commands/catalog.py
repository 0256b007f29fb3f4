"""`gel catalog`: the service catalog from the platform's command line (acts as an operator)."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from broker.catalog import CatalogError, ServiceStatus
from broker.catalog.management import Actor, CatalogManager, open_manager
from broker.catalog.publication import read_manifest
from broker.catalog.store import ServiceRecord
from broker.commands.output import console, err_console, fail, print_json
from broker.settings import get_settings

app = typer.Typer(help="Catálogo de servicios de intercambio: publicar, consultar, cambiar estado y accesos.",
                  no_args_is_help=True)

Code = Annotated[str, typer.Argument(help="Código del servicio (p. ej. consultarSisben).")]
Version = Annotated[str, typer.Argument(help="Versión (p. ej. 1.0).")]
STATUS_WORDS = {ServiceStatus.ACTIVE: "activo", ServiceStatus.DEPRECATED: "obsoleto (migre a una versión activa)",
                ServiceStatus.RETIRED: "retirado (la pasarela lo rechaza)"}


def _actor() -> Actor:
    return Actor(name=f"cli:{getpass.getuser()}")


@contextmanager
def _manager() -> Iterator[CatalogManager]:
    manager = open_manager(get_settings())
    try:
        yield manager
    except CatalogError as exc:
        for finding in exc.findings:
            where = f"{finding['archivo']}:{finding['linea'] or 0}"
            err_console.print(f"  {where}: {finding['codigo']} {finding['descripcion']}", markup=False,
                              soft_wrap=True)
        fail(str(exc.code), exc.message, exit_code=1)
    finally:
        manager.store.close()


def record_dict(record: ServiceRecord) -> dict[str, object]:
    return {
        "codServicio": record.code, "version": record.version, "dominio": record.domain,
        "estado": record.status.value, "entidadPropietaria": record.owner, "descripcion": record.description,
        "proveedores": list(record.providers), "consumidores": list(record.callers),
        "suscriptores": list(record.subscribers), "plazoRespuestaSegundos": record.reply_within_seconds,
        "origen": record.origin, "muestras": list(record.sample_kinds), "publicadoEl": record.published_at,
        "publicadoPor": record.published_by, "actualizadoEl": record.updated_at,
    }


def _show(record: ServiceRecord) -> None:
    console.print(f"[bold]{record.code} {record.version}[/] — {STATUS_WORDS[record.status]}")
    console.print(f"  {record.description}", markup=False)
    console.print(f"  propietaria: {record.owner}; proveedores: {', '.join(record.providers) or '—'}")
    console.print(f"  consumidores autorizados: {', '.join(record.callers) or 'ninguno (nadie puede llamarlo)'}")
    if record.subscribers:
        console.print(f"  suscriptores de eventos: {', '.join(record.subscribers)}")
    if record.reply_within_seconds:
        console.print(f"  plazo de respuesta: {record.reply_within_seconds} s")


@app.command("publish")
def publish(
    manifest: Annotated[Path, typer.Argument(help="Manifiesto YAML de la publicación (esquema, entidades, muestras).",
                                             exists=True, dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Resultado en JSON.")] = False,
) -> None:
    """Publica una versión de servicio: el esquema debe pasar `gel schemas lint` y compilar con el lenguaje, y
    las muestras deben ser mensajes válidos. La pasarela la aplica en segundos, sin reiniciar.

    El manifiesto tiene: esquema, entidadPropietaria, proveedores, consumidores, suscriptores,
    plazoRespuestaSegundos, descripcion y muestras (solicitud, respuesta, evento)."""
    with _manager() as manager:
        record, checked, created = manager.publish(read_manifest(manifest), _actor())
    if as_json:
        print_json({"creado": created, "servicio": record_dict(record), "avisos": list(checked.warnings)})
        return
    for warning in checked.warnings:
        err_console.print(f"  aviso {warning['codigo']}: {warning['descripcion']}", markup=False)
    console.print("Publicado:" if created else "Ya estaba publicado con el mismo esquema:")
    _show(record)


@app.command("list")
def list_services(
    estado: Annotated[ServiceStatus | None, typer.Option(help="Solo los servicios en este estado.")] = None,
    entidad: Annotated[str | None, typer.Option(help="Solo los de esta entidad (propietaria o proveedora).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Catálogo en JSON.")] = False,
) -> None:
    """Lista las versiones de servicio del catálogo con su estado y propietaria."""
    with _manager() as manager:
        records = [r for r in manager.store.records() if (estado is None or r.status == estado)
                   and (entidad is None or entidad == r.owner or entidad in r.providers)]
    if as_json:
        print_json([record_dict(r) for r in records])
        return
    table = Table(title=f"Catálogo de servicios ({len(records)})")
    for column in ("Servicio", "Versión", "Estado", "Propietaria", "Consumidores", "Descripción"):
        table.add_column(column, overflow="fold")
    for r in records:
        table.add_row(r.code, r.version, r.status.value, r.owner, str(len(r.callers)), r.description[:90])
    console.print(table)


@app.command("show")
def show(code: Code, version: Version,
         as_json: Annotated[bool, typer.Option("--json", help="En JSON.")] = False) -> None:
    """Muestra una versión de servicio, sus accesos y su historial de cambios."""
    with _manager() as manager:
        record = manager.store.record(code, version)
        history = manager.store.history(code, version)
    if as_json:
        print_json({**record_dict(record), "historial": [
            {"fecha": h.at, "actor": h.actor, "accion": h.action, "detalle": h.detail} for h in history]})
        return
    _show(record)
    for change in history:
        console.print(f"  {change.at[:19]}  {change.action:<16} {change.actor}  {change.detail}", markup=False)


@app.command("status")
def status(code: Code, version: Version,
           estado: Annotated[ServiceStatus, typer.Argument(help="activo, obsoleto o retirado.")]) -> None:
    """Cambia el estado de una versión: obsoleto sigue funcionando con aviso; retirado lo rechaza la pasarela."""
    with _manager() as manager:
        record = manager.set_status(code, version, estado, _actor())
    _show(record)


@app.command("grant")
def grant(code: Code, version: Version,
          entidad: Annotated[str, typer.Argument(help="Entidad que podrá llamar el servicio.")]) -> None:
    """Otorga a una entidad el acceso a una versión de servicio (por defecto nadie lo tiene)."""
    with _manager() as manager:
        record = manager.grant(code, version, entidad, _actor())
    _show(record)


@app.command("revoke")
def revoke(code: Code, version: Version,
           entidad: Annotated[str, typer.Argument(help="Entidad que dejará de poder llamarlo.")]) -> None:
    """Revoca el acceso de una entidad; la pasarela lo aplica en segundos."""
    with _manager() as manager:
        record = manager.revoke(code, version, entidad, _actor())
    _show(record)
