"""What the chain tests share: a whole platform on one machine — gateway, the orchestrator on the bus, the
entities' adapters over freshly seeded legacy systems — and ways to start cases and wait for them."""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from adapters.legacy.seed import SeededLegacy
from adapters.legacy.world import LegacyWorld, legacy_world, running_adapters
from adapters.sdk.assembly import AssembledAdapter
from broker.gateway.local import LocalPlatform, open_platform
from broker.gelxml import SchemaRegistry
from broker.gelxml.envelope import ServiceRef, build_message, new_header, serialize
from broker.orchestrator.bus import ORCHESTRATOR_ID, OrchestratorNode, open_orchestrator
from broker.orchestrator.store import InstanceRow
from broker.security.pki import DevPKI
from broker.security.signing import sign_element
from broker.settings import Settings
from broker.transport.provisioning import Credentials
from tests.conftest import ENTITIES_FILE, ROOT

FINISHED = ("completada", "fallida")


@dataclass
class ChainScene:
    platform: LocalPlatform
    node: OrchestratorNode
    world: LegacyWorld
    adapters: dict[str, AssembledAdapter]
    pki: DevPKI
    settings: Settings

    def request(self, sender: str, service: str, payload: etree._Element, *, recipient: str = ORCHESTRATOR_ID) -> str:
        """Publish a signed request from `sender` (a caja radicating, an applicant filing) through the gateway."""
        header = new_header(sender=sender, recipient=recipient, service=ServiceRef(service, "1.0"))
        self.platform.send(sender, serialize(sign_element(build_message(header, payload), self.pki.credential(sender))))
        return header.message_id

    def instances(self, chain: str) -> list[InstanceRow]:
        return self.node.orchestrator.store.search(chain=chain, limit=10_000)

    def wait_until(self, condition: Callable[[], bool], timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.1)
        return False

    def wait_finished(self, chain: str, count: int, timeout: float = 120.0) -> list[InstanceRow]:
        deadline = time.monotonic() + timeout
        rows: list[InstanceRow] = []
        while time.monotonic() < deadline:
            rows = self.instances(chain)
            if len(rows) >= count and all(r.status in FINISHED for r in rows):
                return rows
            time.sleep(0.2)
        states = sorted((r.radicado, r.status, r.steps) for r in rows)
        raise AssertionError(f"{chain}: {len(rows)} instances, not all finished: {states}")


def only_chain(folder: Path, name: str) -> Path:
    """A chains folder holding the shipped definition `name` alone: other chains' edits do not stop a test."""
    chains = folder / "cadenas"
    chains.mkdir()
    shutil.copy(ROOT / "chains" / f"{name}.yaml", chains)
    return chains


def chain_settings(folder: Path, pki: DevPKI, *, chains_dir: Path | None = None) -> Settings:
    return Settings(certs_dir=pki.directory, database_url=f"sqlite:///{folder / 'gel.db'}",
                    orchestrator_database_url=f"sqlite:///{folder / 'orquestador.db'}",
                    schemas_dir=ROOT / "schemas", entities_file=ENTITIES_FILE,
                    chains_dir=chains_dir or ROOT / "chains")


@contextmanager
def chain_scene(kind: str, folder: Path, *, pki: DevPKI, registry: SchemaRegistry, adapters: Sequence[str],
                credentials: Credentials | None = None, chains_dir: Path | None = None,
                orchestrator: bool = True) -> Iterator[ChainScene]:
    """The platform on `kind` ("embedded" or "rabbitmq" with the test vhost's `credentials`), the named
    entity adapters over legacy systems seeded in `folder`, and (unless `orchestrator=False`, for tests that
    run it as a process of its own) the orchestrator with the chains of `chains_dir`."""
    settings = chain_settings(folder, pki, chains_dir=chains_dir)
    with ExitStack() as stack:
        world = stack.enter_context(legacy_world(folder / "legado", adapters))
        platform = open_platform(settings, kind, credentials=credentials)  # type: ignore[arg-type]
        stack.callback(platform.close)
        running = stack.enter_context(running_adapters(settings, platform.transport, adapters, registry=registry))
        node = open_orchestrator(settings, platform.transport(ORCHESTRATOR_ID), registry=registry,
                                 relay_interval=0.2)
        stack.callback(node.close)
        if orchestrator:
            node.start()
        yield ChainScene(platform, node, world, running, pki, settings)


def inbox_requests(store_db: Path, service: str) -> list[str]:
    """The idMensaje of every request of `service` an adapter's inbox holds."""
    with closing(sqlite3.connect(store_db)) as connection:
        return [r[0] for r in connection.execute(
            "SELECT message_id FROM adapter_inbox WHERE message_type = 'solicitud' AND service LIKE ?",
            (f"{service} %",))]


def caja_notifications(housing: SeededLegacy) -> Counter[str]:
    """How many notification files each housing radicado has in the cajas' outgoing folders (Colsubsidio's
    NOTIF_…_<radicado>_…_….txt, Compensar's <prefix>_<radicado>_…)."""
    return Counter(path.name.split("_")[-3] if path.name.startswith("NOTIF") else path.name.split("_")[1]
                   for caja in (housing.colsubsidio_dir, housing.compensar_dir)
                   for path in (Path(caja) / "salida").glob("*VUV-*"))
