"""From an adapter.yaml to a running `Adapter`: the one place that wires config, PKI, store, connector,
mappings and handlers. `gel adapter run` and the tests use it."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from lxml import etree

from adapters.sdk.config import AdapterConfig, ProvidedService
from adapters.sdk.connectors.base import Connector, LegacyNotFound, describe_params
from adapters.sdk.runtime import Adapter, Handler, Incoming, RetryPolicy
from adapters.sdk.store import AdapterStore
from broker.gelxml import load_registry
from broker.gelxml.registry import SchemaRegistry
from broker.security.pki import DevPKI, LiveTrustStore
from broker.settings import Settings
from broker.transport.abc import Transport

__all__ = ["AssembledAdapter", "assemble", "import_callable", "mapped_handler"]


@dataclass
class AssembledAdapter:
    adapter: Adapter
    store: AdapterStore
    connector: Connector | None
    config: AdapterConfig | None = None

    def close(self) -> None:
        self.adapter.stop()
        if self.connector is not None:
            self.connector.close()
        self.store.close()


def import_callable(reference: str) -> Callable[..., object]:
    """`package.module:function` → the function; a clear Spanish error when it is not there."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{reference!r} no tiene la forma modulo:funcion")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"no se encontró {reference}: {exc}") from exc
    if not callable(found):
        raise ValueError(f"{reference} no es una función")
    return cast(Callable[..., object], found)


def mapped_handler(provided: ProvidedService, config: AdapterConfig, connector: Connector,
                   registry: SchemaRegistry) -> Handler:
    """Request payload → legacy parameters (mapping) → connector operation → first record (→ derived fields)
    → response payload."""
    from adapters.sdk.mapping import load_mapping

    assert provided.mapping is not None and provided.operation is not None
    mapping = load_mapping(config.path(provided.mapping), registry)
    operation = provided.operation
    derive = import_callable(provided.derive) if provided.derive else None

    def handle(request: Incoming) -> etree._Element:
        assert request.payload is not None
        params = mapping.solicitud.to_legacy(request.payload)
        records = connector.call(operation, params)
        if not records:
            raise LegacyNotFound(connector.entity, what=describe_params(params))
        record = dict(records[0])
        if derive is not None:
            record = cast(dict[str, object], derive(params, record))
        return mapping.respuesta.to_gel(record)

    return handle


def assemble(config: AdapterConfig, settings: Settings, transport: Transport, *,
             registry: SchemaRegistry | None = None) -> AssembledAdapter:
    pki = DevPKI(settings.certs_dir)
    connector: Connector | None = None
    if config.connector is not None:
        from adapters.sdk.connectors import connector_from_config

        connector = connector_from_config(config.entity, config.connector, base_dir=config.base_dir)
    handlers: dict[tuple[str, str], Handler] = {}
    for provided in config.provides:
        if provided.handler is not None:
            handlers[(provided.service, provided.version)] = cast(Handler, import_callable(provided.handler))
        else:
            assert connector is not None
            registry = registry or load_registry(settings.schemas_dir)
            handlers[(provided.service, provided.version)] = mapped_handler(provided, config, connector, registry)
    store = AdapterStore(config.store_url)
    adapter = Adapter(
        config.entity, transport, pki.credential(config.entity), LiveTrustStore(pki.directory), store, handlers,
        retry=RetryPolicy(config.retry.attempts, config.retry.initial, config.retry.maximum),
        receipts=config.receipts, prefetch=config.prefetch, connector=connector,
        on_message=cast(Callable[[Incoming], None], import_callable(config.on_message)) if config.on_message else None,
    )
    return AssembledAdapter(adapter=adapter, store=store, connector=connector, config=config)
