"""`gel log`: the tamper-evident message log (placeholder until the security layer lands)."""

import typer

app = typer.Typer(
    help="Registro de mensajes encadenado por hash: verificar y exportar evidencia.", no_args_is_help=True
)
