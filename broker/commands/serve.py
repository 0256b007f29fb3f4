"""`gel serve`: the platform's HTTP API; `token_crear`: issue an API token (shown once, stored hashed)."""

from __future__ import annotations

from typing import Annotated

import typer

from broker.commands.output import console, fail

__all__ = ["serve", "token_crear"]


def serve(
    host: Annotated[str, typer.Option("--host", help="Dirección en la que escucha la API.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Puerto de la API.", min=1, max=65535)] = 8080,
) -> None:
    """Inicia la API de la plataforma (OpenAPI en /openapi.json, documentación en /docs): cadenas, tareas,
    mensajes, evidencia, salud, métricas de Prometheus y seguimiento ciudadano; además el tablero de operación
    (/tablero, con un token de operador de gel api token-crear) y la página pública de seguimiento
    (/seguimiento)."""
    import uvicorn

    from broker.api import create_app

    console.print(f"API de la plataforma en http://{host}:{port} (documentación en /docs, tablero en /tablero, "
                  "seguimiento ciudadano en /seguimiento)", soft_wrap=True)
    uvicorn.run(create_app(), host=host, port=port, log_level="info")


def token_crear(
    rol: Annotated[str, typer.Option("--rol", help="Rol del token: operador, entidad o publicador.")],
    nombre: Annotated[str, typer.Option("--nombre", help="A quién se entrega el token (persona o sistema).")],
    entidad: Annotated[str | None, typer.Option(
        "--entidad", help="Id de la entidad (obligatorio con los roles entidad y publicador), p. ej. CO/GOB/899999040.",
    )] = None,
) -> None:
    """Crea un token de acceso a la API y lo muestra una sola vez; el archivo guarda solo su resumen SHA-256."""
    from broker.api.auth import TokenFileError, create_token
    from broker.settings import get_settings

    settings = get_settings()
    if entidad is not None and settings.entities_file.exists():
        from broker.security.entities import load_entities

        if load_entities(settings.entities_file).get(entidad) is None:
            fail("GEL-API-INVALID", f"la entidad {entidad} no está registrada en {settings.entities_file}")
    try:
        token = create_token(settings.api_tokens_file, role=rol, entity=entidad, name=nombre)
    except (TokenFileError, OSError) as exc:
        fail("GEL-API-INVALID", str(exc))
    console.print(f"Token creado para {nombre} (rol {rol}). Guárdelo ahora: no se volverá a mostrar.")
    console.print(token, soft_wrap=True)
