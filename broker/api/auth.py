"""Bearer tokens for the API: roles, the token file (SHA-256 hashes only) and the FastAPI dependencies.

Roles: `operador` sees everything; `entidad` is bound to one entity and sees what it takes part in (bodies
only of messages it sent or received); `publicador` is bound to one entity and publishes and manages that
entity's services in the catalog (every role may read the catalog); without a token only the citizen
tracking and the liveness probe answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from broker.api.errors import forbidden, unauthenticated
from broker.settings import Settings

__all__ = [
    "ENTITY",
    "OPERATOR",
    "PUBLISHER",
    "ROLES",
    "Principal",
    "TokenFileError",
    "create_token",
    "hash_token",
    "optional_principal",
    "principal_from_token",
    "require_principal",
]

OPERATOR, ENTITY, PUBLISHER = "operador", "entidad", "publicador"
ROLES = (OPERATOR, ENTITY, PUBLISHER)
_BOUND = (ENTITY, PUBLISHER)
_bearer = HTTPBearer(auto_error=False, description="Token de acceso emitido con `gel api token-crear`.")


@dataclass(frozen=True)
class Principal:
    role: str
    entity: str | None
    name: str

    @property
    def is_operator(self) -> bool:
        return self.role == OPERATOR


class TokenFileError(ValueError):
    """The token file cannot be read or a token request is invalid."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _read(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TokenFileError(f"el archivo de tokens {path} no se puede leer: {exc}") from exc
    tokens = data.get("tokens", {}) if isinstance(data, dict) else {}
    return tokens if isinstance(tokens, dict) else {}


_cache: dict[Path, tuple[float, dict[str, dict[str, Any]]]] = {}


def _tokens(path: Path) -> dict[str, dict[str, Any]]:
    try:
        stamp = path.stat().st_mtime
    except OSError:
        return {}
    cached = _cache.get(path)
    if cached is None or cached[0] != stamp:
        cached = (stamp, _read(path))
        _cache[path] = cached
    return cached[1]


def principal_from_token(token: str, settings: Settings) -> Principal | None:
    """The principal a bearer token stands for, or None when the token is unknown."""
    if not token:
        return None
    entry = _tokens(settings.api_tokens_file).get(hash_token(token))
    if entry is None or entry.get("rol") not in ROLES:
        return None
    entity = entry.get("entidad")
    if entry["rol"] in _BOUND and not entity:
        return None
    return Principal(role=str(entry["rol"]), entity=str(entity) if entity else None, name=str(entry.get("nombre", "")))


def create_token(path: Path, *, role: str, entity: str | None, name: str) -> str:
    """Add a token to the file (created with mode 0600) and return it; only its hash is stored."""
    if role not in ROLES:
        raise TokenFileError(f"rol desconocido {role!r}: use uno de {', '.join(ROLES)}")
    if role in _BOUND and not entity:
        raise TokenFileError(f"un token del rol {role} necesita el id de la entidad (--entidad)")
    token = secrets.token_urlsafe(32)
    tokens = _read(path)
    tokens[hash_token(token)] = {"rol": role, "entidad": entity if role in _BOUND else None, "nombre": name}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump({"tokens": tokens}, handle, ensure_ascii=False, indent=2)
    os.chmod(temporary, 0o600)
    temporary.replace(path)
    return token


def optional_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal | None:
    if credentials is None:
        return None
    principal = principal_from_token(credentials.credentials, request.app.state.settings)
    if principal is None:
        raise unauthenticated()
    return principal


def require_principal(principal: Annotated[Principal | None, Depends(optional_principal)]) -> Principal:
    """Any operator or entity token; the publisher role has nothing to read here yet."""
    if principal is None:
        raise unauthenticated()
    if principal.role not in (OPERATOR, ENTITY):
        raise forbidden()
    return principal


def require_operator(principal: Annotated[Principal, Depends(require_principal)]) -> Principal:
    if not principal.is_operator:
        raise forbidden("Solo el rol operador puede consultar este recurso.")
    return principal


def require_any_role(principal: Annotated[Principal | None, Depends(optional_principal)]) -> Principal:
    """Any valid token: the catalog is readable by operators, entities and publishers."""
    if principal is None:
        raise unauthenticated()
    return principal


def require_catalog_manager(principal: Annotated[Principal, Depends(require_any_role)]) -> Principal:
    if principal.role not in (OPERATOR, PUBLISHER):
        raise forbidden("Solo los roles publicador y operador pueden cambiar el catálogo.")
    return principal


Viewer = Annotated[Principal, Depends(require_principal)]
CatalogReader = Annotated[Principal, Depends(require_any_role)]
CatalogManagerRole = Annotated[Principal, Depends(require_catalog_manager)]
Operator = Annotated[Principal, Depends(require_operator)]
