"""The demo's legacy side: seeded legacy systems, the identity registry's JSON service as a separate
process, and the housing window's entity adapters answering from them on the demo platform."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from adapters.legacy.seed import seed
from adapters.sdk.assembly import AssembledAdapter, assemble
from adapters.sdk.config import load_adapter_config
from adapters.sdk.runtime import Incoming
from broker.gateway.local import LocalPlatform
from broker.settings import PROJECT_ROOT, Settings

__all__ = ["HOUSING_ADAPTERS", "LegacySide", "legacy_side"]

HOUSING_ADAPTERS = ("registraduria", "sisben", "snr", "fonvivienda", "fiduprevisora", "colsubsidio", "compensar")


@dataclass
class LegacySide:
    """Running adapters by entity id, what each handed to its application, and how each reaches its system."""

    adapters: dict[str, AssembledAdapter]
    connectors: dict[str, str]
    received: dict[str, list[Incoming]] = field(default_factory=dict)

    def next_for(self, entity: str, timeout: float = 10.0) -> Incoming | None:
        """The next message the entity's adapter received that was not a request it answered itself."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.received.get(entity):
                return self.received[entity].pop(0)
            time.sleep(0.02)
        return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"el servicio heredado de identidad terminó al arrancar (código {process.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"el servicio heredado de identidad no abrió el puerto {port}")


@contextmanager
def legacy_side(settings: Settings, platform: LocalPlatform) -> Iterator[LegacySide]:
    """Seed var/legacy, start the identity service as its own process and the housing adapters; stop all after."""
    folder = PROJECT_ROOT / "var" / "legacy"
    seeded = seed(folder)
    port = _free_port()
    identity = subprocess.Popen([sys.executable, "-m", "adapters.legacy.identity_app", str(port), "--datos",
                                 str(seeded.identity_json)], cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    saved = {name: os.environ.get(name) for name in ("GEL_REGISTRADURIA_URL",)}
    os.environ["GEL_REGISTRADURIA_URL"] = f"http://127.0.0.1:{port}"
    side = LegacySide(adapters={}, connectors={})
    try:
        _wait_for_port(port, identity)
        for name in HOUSING_ADAPTERS:
            config = load_adapter_config(PROJECT_ROOT / "adapters" / name / "adapter.yaml")
            assembled = assemble(config, settings, platform.transport(config.entity))
            side.received[config.entity] = []
            assembled.adapter.on_message = side.received[config.entity].append
            assembled.adapter.start()
            side.adapters[config.entity] = assembled
            side.connectors[config.entity] = str((config.connector or {}).get("type", "python"))
        yield side
    finally:
        for assembled in side.adapters.values():
            assembled.adapter.wait_idle(timeout=5)
            assembled.close()
        identity.terminate()
        identity.wait(timeout=10)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
