"""Put the platform topology on a RabbitMQ node: users with passwords, permissions, vhost, exchanges, queues,
bindings and policies, in one `rabbitmqctl import_definitions` (an upsert; applying twice changes nothing).

Passwords are generated once and kept in a credentials file (mode 0600, never committed) that the
platform's processes read to connect as their entity. Production deployments may instead hand users to
x509 (EXTERNAL) authentication and apply the repository's password-less definitions.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from broker.security.entities import Entity
from broker.transport.topology import VHOST, amqp_url_for, render_definitions

__all__ = ["AppliedTopology", "Credentials", "ProvisioningError", "apply_topology", "load_credentials"]


class ProvisioningError(Exception):
    """The topology could not be applied; the message says why and how to fix it (Spanish)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    vhost: str
    passwords: Mapping[str, str]

    def url(self, base_url: str, entity_id: str) -> str:
        """The AMQP URL on which `entity_id` connects as itself."""
        if entity_id not in self.passwords:
            raise ProvisioningError(f"no hay credenciales de RabbitMQ para {entity_id}: ejecute gel topology apply")
        return amqp_url_for(base_url, user=entity_id, password=self.passwords[entity_id], vhost=self.vhost)


@dataclass(frozen=True, slots=True)
class AppliedTopology:
    credentials: Credentials
    credentials_file: Path
    users: int
    queues: int


def _stored_passwords(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ProvisioningError(f"no existe {path}: ejecute gel topology apply para crear los usuarios") from exc
    except (OSError, ValueError) as exc:
        raise ProvisioningError(f"{path} no es un archivo de credenciales legible: {exc}") from exc
    return {str(k): str(v) for k, v in dict(data.get("users", {})).items()}


def load_credentials(path: Path, *, vhost: str) -> Credentials:
    """The entities' passwords (one per RabbitMQ user, whatever the vhost) for connecting to `vhost`."""
    return Credentials(vhost=vhost, passwords=_stored_passwords(path))


def _credentials_for(entities: list[Entity], path: Path, vhost: str) -> Credentials:
    """Reuse every stored password (RabbitMQ users are node-wide: a new one would lock out other vhosts'
    clients), generate the missing ones, and keep them all."""
    known = _stored_passwords(path) if path.exists() else {}
    passwords = {e.id: known.get(e.id) or secrets.token_urlsafe(24) for e in entities}
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump({"users": {**known, **passwords}}, handle, indent=2, ensure_ascii=False)
    os.chmod(path, 0o600)
    return Credentials(vhost=vhost, passwords=passwords)


def apply_topology(entities: Iterable[Entity], *, credentials_file: Path, vhost: str = VHOST,
                   rabbitmqctl: str = "rabbitmqctl", timeout: float = 120.0) -> AppliedTopology:
    """Import the rendered definitions (with this run's password hashes) into the local RabbitMQ node."""
    listed = list(entities)
    if shutil.which(rabbitmqctl) is None:
        raise ProvisioningError(f"no se encontró {rabbitmqctl}: ejecute este comando en el nodo de RabbitMQ o "
                                "importe deploy/rabbitmq/definitions.json desde la consola de administración")
    credentials = _credentials_for(listed, credentials_file, vhost)
    definitions = render_definitions(listed, vhost=vhost, passwords=credentials.passwords)
    try:
        done = subprocess.run([rabbitmqctl, "-q", "import_definitions", "--format", "json"],
                              input=json.dumps(definitions), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ProvisioningError(f"rabbitmqctl no terminó en {timeout:.0f} s: ¿está arriba el nodo?") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        reason = detail[-1] if detail else f"código {done.returncode}"
        raise ProvisioningError(f"RabbitMQ rechazó la topología: {reason}")
    return AppliedTopology(credentials=credentials, credentials_file=credentials_file, users=len(listed),
                           queues=len(definitions["queues"]))
