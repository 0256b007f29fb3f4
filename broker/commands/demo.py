"""`gel demo`: the most complete flow the platform has, run end to end, saying what it did."""

from __future__ import annotations

from pathlib import Path

import typer

from broker.commands.output import console
from broker.gelxml import GelFault, check_message, load_registry
from broker.settings import get_settings


def demo() -> None:
    """Recorre la Ventanilla Única de Subsidios de Vivienda con los mensajes de ejemplo y muestra cada paso."""
    settings = get_settings()
    registry = load_registry(settings.schemas_dir)
    samples = settings.schemas_dir / "samples"
    console.print("[bold]GEL Broker — demostración: Ventanilla Única de Subsidios de Vivienda[/]")
    console.print(f"Lenguaje GEL-XML: {len(registry.services)} servicios registrados en {settings.schemas_dir}.")
    steps = _housing_steps(samples / "valid")
    failures = 0
    for index, path in enumerate(steps, start=1):
        try:
            message = check_message(path.read_bytes(), registry, settings.parse_limits)
        except GelFault as exc:
            failures += 1
            console.print(f"  {index:2}. [red]{path.name}: {exc.falla.code} {exc.falla.message}[/]")
            continue
        h = message.header
        console.print(
            f"  {index:2}. {h.message_type.value:9} {h.service.code:32} {h.sender} → {h.recipient}  [green]válido[/]"
        )
    rejected = sorted((samples / "invalid").glob("GEL-*--vivienda-*.xml"))
    console.print(f"Mensajes defectuosos de vivienda: {len(rejected)}; cada uno se rechaza con su código:")
    for path in rejected:
        expected = path.name.split("--")[0]
        try:
            check_message(path.read_bytes(), registry, settings.parse_limits)
            failures += 1
            console.print(f"   [red]{path.name}: aceptado (se esperaba {expected})[/]")
        except GelFault as exc:
            mark = "[green]✓[/]" if exc.falla.code == expected else "[red]✗[/]"
            failures += exc.falla.code != expected
            console.print(f"   {mark} {exc.falla.code}: {exc.falla.message}", soft_wrap=True)
    console.print(
        "Hecho: análisis endurecido y validación de sobre y carga útil. La firma, el enrutamiento por "
        "RabbitMQ y la orquestación de la cadena llegan con las siguientes entregas."
    )
    raise typer.Exit(1 if failures else 0)


HOUSING_ORDER = (
    "radicarPostulacion", "verificarIdentidad", "consultarPropiedad", "consultarSisben",
    "consultarSubsidiosPrevios", "consultarDisponibilidadRecursos", "calificarPostulacion",
    "asignarSubsidio", "notificarResultado", "movilizarSubsidio",
)


def _housing_steps(valid: Path) -> list[Path]:
    steps: list[Path] = []
    for code in HOUSING_ORDER:
        for kind in ("solicitud", "respuesta"):
            path = valid / f"{code}-{kind}.xml"
            if path.exists():
                steps.append(path)
    return steps
