"""`gel validate`: check GEL-XML messages exactly as the gateway will."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from broker.commands.output import console, err_console, print_json
from broker.gelxml import Falla, FaultCode, GelFault, ValidatedMessage, check_message, falla, load_registry
from broker.gelxml.parsing import ParseLimits
from broker.settings import get_settings


def read_limited(path: Path, limits: ParseLimits) -> bytes:
    """A file's bytes, refusing (before reading it all) anything over the message size limit."""
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise GelFault(falla(FaultCode.PARSE_TOO_LARGE, size=size, limit=limits.max_bytes))
        with path.open("rb") as handle:
            return handle.read(limits.max_bytes + 1)
    except OSError as exc:
        raise GelFault(falla(FaultCode.IO_UNREADABLE, detail=exc.strerror or str(exc))) from None


def check_file(path: Path, limits: ParseLimits) -> ValidatedMessage | Falla:
    registry = load_registry(get_settings().schemas_dir)
    try:
        return check_message(read_limited(path, limits), registry, limits)
    except GelFault as exc:
        return exc.falla


def format_problem(path: Path, problem: Falla) -> str:
    location = problem.location
    line = location.line if location and location.line else 0
    where = f" (en {location.xpath})" if location and location.xpath else ""
    return f"{path}:{line}: {problem.code} {problem.message}{where}"


def validate(
    files: Annotated[list[Path], typer.Argument(help="Mensajes GEL-XML a validar.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Resultado en JSON para otros programas.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Mostrar solo los problemas.")] = False,
) -> None:
    """Valida mensajes GEL-XML (sobre y carga útil) como lo hará la pasarela.

    Sale con 0 si todos son válidos y con 1 si alguno tiene fallas; cada problema se informa en una línea
    ARCHIVO:LÍNEA: CÓDIGO descripción.
    """
    limits = get_settings().parse_limits
    results: list[dict[str, Any]] = []
    invalid = 0
    for path in files:
        outcome = check_file(path, limits)
        if isinstance(outcome, Falla):
            invalid += 1
            results.append({"archivo": str(path), "valido": False, "fallas": [p.to_dict() for p in outcome.all()]})
            if not as_json:
                for problem in outcome.all():
                    console.print(format_problem(path, problem), markup=False, soft_wrap=True)
            continue
        header = outcome.header
        results.append({
            "archivo": str(path), "valido": True, "servicio": header.service.code,
            "version": header.service.version, "tipoMensaje": header.message_type.value,
            "idMensaje": header.message_id, "entidadOrigen": header.sender, "entidadDestino": header.recipient,
        })
        if not as_json and not quiet:
            console.print(
                f"{path}: válido — {header.message_type.value} {header.service} de {header.sender} "
                f"para {header.recipient}", markup=False, soft_wrap=True,
            )
    if as_json:
        print_json(results)
    elif len(files) > 1:
        err_console.print(f"{len(files)} archivos: {len(files) - invalid} válidos, {invalid} con fallas.")
    raise typer.Exit(1 if invalid else 0)
