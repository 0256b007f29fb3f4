"""The demo's legacy side: seeded legacy systems in var/legacy, the identity registry's JSON service as a
separate process, and the housing window's entity adapters answering from them on the demo platform."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from adapters.legacy.world import legacy_world, running_adapters
from adapters.sdk.assembly import AssembledAdapter
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


@contextmanager
def legacy_side(settings: Settings, platform: LocalPlatform) -> Iterator[LegacySide]:
    """Seed var/legacy, start the identity service as its own process and the housing adapters; stop all after."""
    with legacy_world(PROJECT_ROOT / "var" / "legacy", HOUSING_ADAPTERS), \
            running_adapters(settings, platform.transport, HOUSING_ADAPTERS) as running:
        side = LegacySide(adapters={}, connectors={})
        for assembled in running.values():
            entity = assembled.adapter.entity
            side.received[entity] = []
            assembled.adapter.on_message = side.received[entity].append
            side.adapters[entity] = assembled
            connector = (assembled.config.connector if assembled.config else None) or {}
            side.connectors[entity] = str(connector.get("type", "python"))
        yield side
