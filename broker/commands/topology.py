"""`gel topology`: the RabbitMQ topology derived from the entity registry, as a file or applied to a node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from broker.commands.output import console, fail
from broker.security.entities import EntityRegistry, load_entities
from broker.settings import PROJECT_ROOT, get_settings
from broker.transport.provisioning import ProvisioningError, apply_topology
from broker.transport.topology import VHOST, render_definitions

app = typer.Typer(
    help="Topología de RabbitMQ (vhost, intercambios, colas de quórum por entidad, usuarios y permisos) "
    "generada desde el registro de entidades.",
    no_args_is_help=True,
)

DEFINITIONS_FILE = PROJECT_ROOT / "deploy" / "rabbitmq" / "definitions.json"
VhostOption = Annotated[str | None, typer.Option("--vhost", help="Host virtual de RabbitMQ de la plataforma "
                                                "(por defecto GEL_RABBITMQ_VHOST).", show_default=False)]


def _registry() -> EntityRegistry:
    path = get_settings().entities_file
    try:
        return load_entities(path)
    except (OSError, ValueError) as exc:
        fail("GEL-CONFIG-ENTITIES", f"no se pudo leer el registro de entidades {path}: {exc}",
             "revise GEL_ENTITIES_FILE")


def definitions_text(registry: EntityRegistry, vhost: str = VHOST) -> str:
    """The repository's definitions document: no password hashes (see `render_definitions`)."""
    return json.dumps(render_definitions(registry, vhost=vhost), indent=2, ensure_ascii=False) + "\n"


@app.command("render")
def render(
    output: Annotated[Path, typer.Option("--salida", "-o", help="Archivo de definiciones a escribir; - para la "
                                         "salida estándar.")] = DEFINITIONS_FILE,
    vhost: VhostOption = None,
) -> None:
    """Genera las definiciones para `rabbitmqctl import_definitions`. Los usuarios quedan sin contraseña
    (asígnelas con gel topology apply, rabbitmqctl change_password o autenticación x509)."""
    text = definitions_text(_registry(), vhost or get_settings().rabbitmq_vhost)
    if str(output) == "-":
        typer.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    console.print(f"Definiciones escritas en {output}.")


@app.command("apply")
def apply(
    vhost: VhostOption = None,
    credentials: Annotated[Path | None, typer.Option("--credenciales", help="Archivo de contraseñas de los "
                                                     "usuarios (por defecto GEL_RABBITMQ_CREDENTIALS_FILE).")] = None,
) -> None:
    """Aplica la topología al nodo local de RabbitMQ con rabbitmqctl: crea o actualiza el vhost, los
    intercambios, las colas, las políticas y un usuario por entidad con sus permisos. Las contraseñas se
    generan una vez y se guardan con permisos 0600; aplicar dos veces no cambia nada."""
    registry = _registry()
    target = credentials or get_settings().rabbitmq_credentials_file
    vhost = vhost or get_settings().rabbitmq_vhost
    try:
        applied = apply_topology(registry, credentials_file=target, vhost=vhost)
    except ProvisioningError as exc:
        fail("GEL-TOPOLOGY-APPLY", str(exc))
    console.print(f"Topología aplicada en el vhost {vhost!r}: {applied.users} usuarios, {applied.queues} colas. "
                  f"Credenciales en {applied.credentials_file}.")
