"""The orchestrator as an entity on the bus (CO/PLAT/900000002): its own certificate, queue, inbox and
outbox. Requests to entity services leave through the outbox in the transaction of the transition that
decided them; answers come back to its queue, correlated by idCorrelacion; events about a case are
matched by idCadena or radicado; the chains' start services (a caja radicating an application) are
answered with the radicado at once."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lxml import etree
from sqlalchemy.engine import Connection

from adapters.sdk.runtime import Adapter, Handler, Incoming
from adapters.sdk.store import AdapterStore
from broker.catalog.live import open_catalog
from broker.gelxml.envelope import MessageType
from broker.gelxml.faults import FaultCode, fault
from broker.gelxml.lint import Severity
from broker.gelxml.registry import SchemaRegistry
from broker.logs import get_logger
from broker.orchestrator.definition import ChainDefinition, DefinitionError, load_library
from broker.orchestrator.engine import Engine, InstanceState, Send
from broker.orchestrator.expressions import ExpressionError
from broker.orchestrator.lint import lint_definition
from broker.orchestrator.payloads import PayloadError, build_payload, capture
from broker.orchestrator.runtime import Orchestrator
from broker.orchestrator.store import OrchestratorStore
from broker.security.pki import DevPKI, LiveTrustStore
from broker.settings import Settings
from broker.storage import during_outage
from broker.transport.abc import Transport

__all__ = ["ORCHESTRATOR_ID", "BusDispatcher", "OrchestratorNode", "open_orchestrator"]

ORCHESTRATOR_ID = "CO/PLAT/900000002"


class BusDispatcher:
    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter

    def send(self, connection: Connection, state: InstanceState, effect: Send) -> None:
        outgoing = self.adapter.sign(effect.call.service, effect.recipient, effect.payload,
                                     message_type=MessageType.REQUEST, chain_id=state.id, radicado=state.radicado,
                                     message_id=effect.message_id)
        self.adapter.store.enqueue([outgoing], connection=connection)

    def committed(self) -> None:
        self.adapter.wake()


@dataclass
class OrchestratorNode:
    """The running orchestrator: the bus adapter, the engine's runtime and the timer loop."""

    adapter: Adapter
    orchestrator: Orchestrator
    store: AdapterStore
    tick: float = 0.25

    def __post_init__(self) -> None:
        self.log = get_logger(component="orquestador", entidad=self.adapter.entity)
        self._stopping = threading.Event()
        self._timers: threading.Thread | None = None

    def start(self) -> None:
        """Check every definition against what running instances started with (GEL-CHAIN-VERSION_CHANGED when
        one was edited without a new version), then start consuming and firing timers."""
        for definition in self.orchestrator.library.values():
            self.orchestrator.start_definition(definition)
        self._stopping.clear()
        self.adapter.start()
        self._timers = threading.Thread(target=self._timer_loop, name="gel-orquestador-temporizadores", daemon=True)
        self._timers.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._timers is not None:
            self._timers.join(timeout=10)
            self._timers = None
        self.adapter.stop()

    def close(self) -> None:
        self.stop()
        self.store.close()

    def _timer_loop(self) -> None:
        while not self._stopping.wait(self.tick):
            try:
                self.orchestrator.fire_due_timers()
            except Exception as exc:
                if during_outage(exc, self.store.answers):
                    self.log.warning("orquestador.store_unavailable", reason=f"{type(exc).__name__}: {exc}"[:200])
                else:
                    self.log.exception("orquestador.temporizadores_fallaron")

    def receive(self, incoming: Incoming) -> None:
        header = incoming.header
        if header.message_type in (MessageType.RESPONSE, MessageType.FAULT) and header.correlation_id:
            known = self.orchestrator.on_reply(correlation=header.correlation_id,
                                               fault_reply=header.message_type is MessageType.FAULT,
                                               payload=incoming.payload, message_id=header.message_id)
            if not known:
                self.log.warning("orquestador.respuesta_sin_instancia", message_id=header.message_id)
        elif header.message_type is MessageType.EVENT:
            key = header.chain_id or header.radicado or ""
            if not self.orchestrator.on_event(key=key, service=header.service, sender=header.sender,
                                              payload=incoming.payload, message_id=header.message_id):
                self.log.warning("orquestador.evento_sin_instancia", message_id=header.message_id)


def _start_handler(orchestrator: Orchestrator, definition: ChainDefinition, registry: SchemaRegistry) -> Handler:
    """Answers a chain's start service: the request's data become the instance's inputs, and the reply
    (radicado, state) is built from the new instance's context. A repeated request starts nothing new."""
    assert definition.start is not None
    spec = definition.start
    service = registry.service(spec.service.code, spec.service.version)
    if service is None:
        raise ValueError(f"la cadena {definition.name} empieza con {spec.service}, que no está en los esquemas")

    def handle(request: Incoming) -> etree._Element:
        assert request.payload is not None
        inputs: Mapping[str, Any] = capture(request.payload, service.namespace, spec.captures)
        row = orchestrator.start(definition.name, inputs, key=request.header.message_id,
                                 started_by=request.header.sender, version=definition.version)
        try:
            return build_payload(service.root_tag(service.response_root), service.namespace, spec.reply,
                                 row.state.get("context", {}), registry)
        except (PayloadError, ExpressionError) as exc:
            raise fault(FaultCode.CHAIN_START_FAILED, chain=definition.name,
                        detail=f"radicado {row.radicado}: la respuesta no se pudo construir ({exc})") from exc

    return handle


def open_orchestrator(settings: Settings, transport: Transport, *, store_url: str | None = None,
                      registry: SchemaRegistry | None = None,
                      library: Mapping[tuple[str, int], ChainDefinition] | None = None,
                      relay_interval: float = 0.5, prefetch: int = 32, lint: bool = True) -> OrchestratorNode:
    """Wire the orchestrator from settings: PKI, chain library, store (outbox and instances share it). With
    `lint`, a definition with `gel chains lint` errors is refused before anything runs."""
    live = open_catalog(settings, registry)
    snapshot = live.current()
    live.store.close()
    registry, catalog = snapshot.registry, snapshot.catalog
    library = dict(library) if library is not None else load_library(settings.chains_dir)
    for definition in library.values() if lint else ():
        errors = [f for f in lint_definition(definition, registry=registry, catalog=catalog)
                  if f.severity == Severity.ERROR]
        if errors:
            raise DefinitionError(f"La cadena {definition.source} tiene errores (gel chains lint): "
                                  + "; ".join(f.format() for f in errors))
    pki = DevPKI(settings.certs_dir)
    store = AdapterStore(store_url or settings.orchestrator_database_url)
    adapter = Adapter(ORCHESTRATOR_ID, transport, pki.credential(ORCHESTRATOR_ID), LiveTrustStore(pki.directory),
                      store, {}, relay_interval=relay_interval, prefetch=prefetch)
    orchestrator = Orchestrator(OrchestratorStore(store.engine), Engine(registry), library, BusDispatcher(adapter),
                                folder=str(settings.chains_dir))
    latest_versions: dict[str, ChainDefinition] = {}
    for definition in library.values():
        if definition.start is not None and (definition.name not in latest_versions
                                             or latest_versions[definition.name].version < definition.version):
            latest_versions[definition.name] = definition
    for definition in latest_versions.values():
        assert definition.start is not None
        adapter.handlers[(definition.start.service.code, definition.start.service.version)] = _start_handler(
            orchestrator, definition, registry)
    node = OrchestratorNode(adapter=adapter, orchestrator=orchestrator, store=store)
    adapter.on_message = node.receive
    return node
