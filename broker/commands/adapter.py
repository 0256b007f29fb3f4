"""`gel adapter run|check`: run an entity's adapter as a process, or check its configuration first."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from broker.commands.output import console, err_console, fail
from broker.security.entities import load_entities
from broker.settings import get_settings

app = typer.Typer(
    help="Adaptadores de entidad: conectan un sistema heredado con la plataforma sin reescribirlo.",
    no_args_is_help=True,
)

ConfigArgument = Annotated[Path, typer.Argument(help="Archivo adapter.yaml del adaptador.", exists=True,
                                                dir_okay=False, show_default=False)]


def _config(path: Path):  # type: ignore[no-untyped-def]
    from adapters.sdk.config import load_adapter_config

    try:
        return load_adapter_config(path)
    except ValueError as exc:
        fail("GEL-ADAPTER-CONFIG", str(exc), "corrija el archivo; la guía está en adapters/README.md")


@app.command("run")
def run(config_file: ConfigArgument) -> None:
    """Ejecuta el adaptador: atiende los servicios que presta la entidad, publica sus mensajes por la
    bandeja de salida y se detiene con Ctrl+C o SIGTERM sin perder mensajes."""
    from adapters.sdk.assembly import assemble
    from broker.transport.abc import TransportError
    from broker.transport.provisioning import ProvisioningError, load_credentials
    from broker.transport.rabbitmq import RabbitMQTransport

    settings = get_settings()
    config = _config(config_file)
    try:
        url = load_credentials(settings.rabbitmq_credentials_file, vhost=settings.rabbitmq_vhost).url(
            settings.amqp_url, config.entity)
        transport = RabbitMQTransport(url, user_label=f"gel-adaptador:{config.entity}")
    except ProvisioningError as exc:
        fail("GEL-ADAPTER-CREDENTIALS", str(exc), "ejecute gel topology apply en el nodo de RabbitMQ")
    except TransportError as exc:
        fail("GEL-ADAPTER-TRANSPORT", f"no fue posible conectar con RabbitMQ como {config.entity}: {exc}",
             "revise GEL_AMQP_URL, GEL_RABBITMQ_VHOST y que la topología esté aplicada")
    try:
        assembled = assemble(config, settings, transport)
    except ValueError as exc:
        transport.close()
        fail("GEL-ADAPTER-CONFIG", str(exc))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    assembled.adapter.start()
    services = ", ".join(f"{p.service} v{p.version}" for p in config.provides) or "ninguno"
    console.print(f"Adaptador de {config.entity} en marcha (servicios: {services}). Ctrl+C para detenerlo.",
                  soft_wrap=True)
    stop.wait()
    assembled.adapter.wait_idle(timeout=10)
    assembled.close()
    transport.close()
    console.print("Adaptador detenido.")


@app.command("check")
def check(config_file: ConfigArgument) -> None:
    """Revisa la configuración sin arrancar: la entidad existe y tiene certificado vigente, cada mapeo
    carga y corresponde a su esquema, y el sistema heredado responde."""
    from adapters.sdk.assembly import assemble
    from broker.transport.embedded import EmbeddedTransport

    settings = get_settings()
    config = _config(config_file)
    problems: list[str] = []
    if load_entities(settings.entities_file).get(config.entity) is None:
        problems.append(f"la entidad {config.entity} no está en el registro {settings.entities_file}")
    try:
        assembled = assemble(config, settings, EmbeddedTransport(config.entity))
    except Exception as exc:
        fail("GEL-ADAPTER-CONFIG", f"el adaptador no se pudo armar: {exc}")
    console.print(f"✓ certificado y clave de {config.entity}")
    console.print(f"✓ {len(config.provides)} servicios con su mapeo o manejador")
    if assembled.connector is not None:
        try:
            assembled.connector.check()
            kind = (config.connector or {}).get("type", "")
            console.print(f"✓ el sistema heredado responde (conector {kind})")
        except Exception as exc:
            problems.append(f"el sistema heredado no responde: {exc}")
    assembled.close()
    for problem in problems:
        err_console.print(f"[red]✗[/] {problem}")
    if problems:
        raise typer.Exit(1)
    console.print("Configuración correcta.")
