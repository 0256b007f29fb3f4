"""`gel schemas`: the GEL-XML language — conformance lint, data-element catalogue, services."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from broker.commands.output import console, err_console, print_json
from broker.gelxml import load_registry
from broker.gelxml.catalogue import data_elements
from broker.gelxml.lint import Severity, lint_paths
from broker.settings import get_settings

app = typer.Typer(help="El lenguaje común GEL-XML: revisar esquemas y consultar el catálogo.", no_args_is_help=True)


@app.command("lint")
def lint(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Esquemas o carpetas (por defecto, los esquemas de la plataforma).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Hallazgos en JSON.")] = False,
) -> None:
    """Revisa que los esquemas cumplan las convenciones GEL-XML (nombres, documentación, metadatos,
    espacio de nombres versionado, sin comodines). Sale con 1 si hay algún error."""
    schemas_dir = get_settings().schemas_dir
    findings = lint_paths(paths or [schemas_dir], reference=[schemas_dir])
    errors = sum(1 for f in findings if f.severity == Severity.ERROR)
    if as_json:
        print_json([f.to_dict() for f in findings])
    else:
        for finding in findings:
            console.print(finding.format(), markup=False, soft_wrap=True)
        warnings = len(findings) - errors
        err_console.print(f"{errors} errores, {warnings} avisos." if findings else "Sin hallazgos: los esquemas "
                          "cumplen las convenciones GEL-XML.")
    raise typer.Exit(1 if errors else 0)


@app.command("catalog")
def catalog(as_json: Annotated[bool, typer.Option("--json", help="Catálogo en JSON.")] = False) -> None:
    """Lista los elementos de datos comunes con sus metadatos (fuente, usos, validación, relaciones)."""
    elements = data_elements(load_registry(get_settings().schemas_dir))
    if as_json:
        print_json([e.to_dict() for e in elements])
        return
    table = Table(title=f"Catálogo de elementos de datos GEL-XML ({len(elements)})", show_lines=False)
    for column in ("Elemento", "Descripción", "Fuente", "Validación", "Incorporado"):
        table.add_column(column, overflow="fold")
    for element in elements:
        table.add_row(element.qualified_name, element.documentation, element.source, element.validation,
                      element.incorporated)
    console.print(table)


@app.command("services")
def services(as_json: Annotated[bool, typer.Option("--json", help="Servicios en JSON.")] = False) -> None:
    """Lista los servicios cuyos esquemas están registrados (código, versión, dominio, raíces)."""
    registry = load_registry(get_settings().schemas_dir)
    rows = [
        {"codServicio": s.code, "version": s.version, "dominio": s.domain, "espacioNombres": s.namespace,
         "entrada": s.request_root, "salida": s.response_root, "descripcion": s.description}
        for s in registry.services.values()
    ]
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"Servicios registrados ({len(rows)})")
    for column in ("Servicio", "Versión", "Dominio", "Descripción"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["codServicio"], row["version"], row["dominio"], row["descripcion"][:120])
    console.print(table)


@app.command("bundle")
def bundle(output: Annotated[Path, typer.Option("-o", "--output", help="Archivo XSD a escribir.")]) -> None:
    """Escribe un esquema que importa todo el lenguaje, para validar con herramientas estándar
    (xmllint --schema ARCHIVO mensaje.xml)."""
    output.write_bytes(load_registry(get_settings().schemas_dir).driver_xsd())
    err_console.print(f"Esquema del lenguaje escrito en {output}.")
