"""`gel`: the platform's command line. Each command group lives in `broker.commands`."""

from __future__ import annotations

import os
import sys

import typer

from broker.commands import (
    adapter,
    catalog,
    certs,
    chains,
    demo,
    gateway,
    log,
    schemas,
    serve,
    signing,
    topology,
    validate,
)
from broker.commands.output import err_console, print_json
from broker.gelxml.registry import SchemaCompileError
from broker.logs import configure_logging
from broker.settings import Settings, get_settings

app = typer.Typer(
    name="gel",
    help="GEL Broker: plataforma de interoperabilidad GEL-XML entre entidades públicas.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.command("validate")(validate.validate)
app.command("sign")(signing.sign)
app.command("stamp")(signing.stamp)
app.command("verify")(signing.verify)
app.add_typer(schemas.app, name="schemas")
app.add_typer(catalog.app, name="catalog")
app.add_typer(certs.app, name="certs")
app.add_typer(log.app, name="log")
app.add_typer(topology.app, name="topology")
app.add_typer(adapter.app, name="adapter")
app.add_typer(chains.app, name="chains")
app.add_typer(chains.tasks_app, name="tasks")
app.command("gateway")(gateway.gateway)
app.command("orchestrator")(chains.orchestrator)
app.command("serve")(serve.serve)
api_app = typer.Typer(help="API de la plataforma: credenciales de acceso.", no_args_is_help=True)
api_app.command("token-crear")(serve.token_crear)
app.add_typer(api_app, name="api")
app.command("demo")(demo.demo)


@app.command("config")
def config() -> None:
    """Muestra la configuración efectiva (variables GEL_*, archivo GEL_CONFIG y valores por defecto)."""
    settings = get_settings()
    print_json({name: getattr(settings, name) for name in Settings.model_fields})


def main() -> None:
    """Entry point: run the app; an unexpected error becomes a coded Spanish message, not a traceback."""
    try:
        settings = get_settings()
    except Exception as exc:
        err_console.print(f"error GEL-CONFIG-INVALID: la configuración no es válida: {exc}")
        sys.exit(2)
    configure_logging(settings.log_format, settings.log_level)
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("Interrumpido.")
        sys.exit(130)
    except SchemaCompileError as exc:
        err_console.print(f"error GEL-CONFIG-SCHEMAS: {exc}")
        sys.exit(2)
    except Exception as exc:
        if os.environ.get("GEL_DEBUG"):
            raise
        err_console.print(
            f"error GEL-INTERNAL: error interno inesperado ({type(exc).__name__}: {exc}). "
            "Repita con GEL_DEBUG=1 para ver el detalle técnico y repórtelo al equipo de la plataforma."
        )
        sys.exit(70)


if __name__ == "__main__":
    main()
