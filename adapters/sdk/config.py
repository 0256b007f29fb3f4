"""`adapter.yaml`: who the adapter is, what it answers and with which legacy system.

```yaml
entity: CO/GOB/899999040                 # the entity id (its certificate and RabbitMQ user)
connector:
  type: http
  base_url: "http://127.0.0.1:8701"
  operations: {buscar: {path: "/ciudadanos/{TipoDoc}/{NumeroDoc}"}}
provides:
  - {service: verificarIdentidad, version: "1.0", mapping: mappings/verificarIdentidad.yaml, operation: buscar}
  - {service: otroServicio, version: "1.0", handler: "mi_paquete.modulo:atender"}   # hand-written handler
calls: [{service: consultarSisben, version: "1.0"}]
store: sqlite:///var/adapters/registraduria.db   # inbox and outbox (default var/adapters/<entity key>.db)
retry: {attempts: 5, initial: 0.5, maximum: 10}
receipts: true
on_message: "mi_paquete.modulo:recibir"   # responses, fallas, receipts and events for this entity
```
A handler written as `def atender(request, context)` also gets a `HandlerContext`: the entity's connector and
`context.emit(...)`, which sends a message (an event announcing the decision) in the same transaction as the
answer.
Relative paths are resolved against the folder of the adapter.yaml. Strings may use `${VARIABLE}` or
`${VARIABLE:-default}` (environment variables, for secrets and per-deployment URLs) and `${PROJECT_ROOT}`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from broker.security.entities import ENTITY_ID
from broker.settings import PROJECT_ROOT
from broker.transport.topology import entity_key

__all__ = ["AdapterConfig", "CalledService", "ProvidedService", "RetrySettings", "load_adapter_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProvidedService(_Strict):
    service: str
    version: str = "1.0"
    mapping: Path | None = None
    operation: str | None = None
    handler: str | None = Field(default=None, description="module:function answering the request")
    derive: str | None = Field(default=None, description="module:function(params, record) -> record, run "
                               "between the legacy answer and the response mapping (computed fields)")

    @model_validator(mode="after")
    def _one_way_to_answer(self) -> ProvidedService:
        if (self.handler is None) == (self.mapping is None):
            raise ValueError(f"el servicio {self.service} necesita 'handler' o 'mapping' (uno de los dos)")
        if self.mapping is not None and not self.operation:
            raise ValueError(f"el servicio {self.service} usa un mapeo y necesita 'operation' del conector")
        return self


class CalledService(_Strict):
    service: str
    version: str = "1.0"


class RetrySettings(_Strict):
    attempts: int = Field(default=5, ge=1, le=50)
    initial: float = Field(default=0.5, gt=0)
    maximum: float = Field(default=10.0, gt=0)


class AdapterConfig(_Strict):
    entity: str
    name: str | None = None
    connector: dict[str, Any] | None = None
    provides: tuple[ProvidedService, ...] = ()
    calls: tuple[CalledService, ...] = ()
    store: str | None = None
    retry: RetrySettings = RetrySettings()
    receipts: bool = True
    on_message: str | None = Field(default=None, description="module:function receiving every verified message "
                                   "that is not a request this adapter answers (responses, fallas, receipts, events)")
    prefetch: int = Field(default=16, ge=1, le=1000)
    base_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _entity_id(self) -> AdapterConfig:
        if not ENTITY_ID.match(self.entity):
            raise ValueError(f"entity {self.entity!r} no es un id de entidad (CO/<CLASE>/<NIT de 9 dígitos>)")
        if any(p.mapping is not None for p in self.provides) and self.connector is None:
            raise ValueError("hay servicios con mapeo pero no hay 'connector'")
        return self

    def path(self, value: Path) -> Path:
        return value if value.is_absolute() else self.base_dir / value

    @property
    def store_url(self) -> str:
        if self.store:
            return self.store
        folder = PROJECT_ROOT / "var" / "adapters"
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / (entity_key(self.entity) + '.db')}"


_VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-((?:(?!\$\{)[^}])*))?\}")
"""`${NAME}` or `${NAME:-default}`; a default holding another `${…}` is expanded from the inside out."""


def _expand(value: Any, path: Path) -> Any:
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            found = os.environ.get(name, str(PROJECT_ROOT) if name == "PROJECT_ROOT" else default)
            if found is None:
                raise ValueError(f"{path}: la variable de entorno {name} no está definida y no tiene valor por defecto")
            return found

        expanded = _VARIABLE.sub(substitute, value)
        return expanded if expanded == value else _expand(expanded, path)
    if isinstance(value, dict):
        return {k: _expand(v, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, path) for v in value]
    return value


def load_adapter_config(path: Path) -> AdapterConfig:
    """Read and check an adapter.yaml; problems are one Spanish ValueError naming the file and the field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: no se pudo leer ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: se esperaba un documento YAML con claves (entity, provides, …)")
    try:
        return AdapterConfig(**_expand(data, path), base_dir=path.resolve().parent)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(raíz)'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{path}: {problems}") from None
