"""What a hand-written handler's package shares with the SDK: its adapter.yaml's connector, its mappings, and a
check that an answer it built is valid GEL-XML before the runtime signs it.

`AdapterPackage(Path(__file__).with_name("adapter.yaml"))` in the package gives `connector()`, `mapping(name)`
and `checked(payload)`. The connector is rebuilt only when the expanded connector section changes (another
database URL in the environment); the old one is closed. A handler that takes a `HandlerContext` can use
`context.connector` (the one `gel adapter run` built) instead.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lxml import etree

from adapters.sdk.config import load_adapter_config
from adapters.sdk.connectors import Connector, connector_from_config
from adapters.sdk.mapping import ServiceMapping, load_mapping
from broker.gelxml import load_registry
from broker.gelxml.faults import FaultCode, fault
from broker.gelxml.namespaces import PERSONAL, qname
from broker.gelxml.registry import SchemaRegistry
from broker.settings import Settings

__all__ = ["AdapterPackage", "OwnConnector", "checked", "per_person", "schema_registry"]

_registry_lock = threading.Lock()
_registries: dict[Path, SchemaRegistry] = {}


def schema_registry() -> SchemaRegistry:
    """The configured GEL-XML schemas, compiled once per folder."""
    folder = Settings().schemas_dir.resolve()
    with _registry_lock:
        if folder not in _registries:
            _registries[folder] = load_registry(folder)
        return _registries[folder]


def checked(payload: etree._Element, entity: str) -> etree._Element:
    """`payload` if it is valid GEL-XML; otherwise GEL-ADAPTER-HANDLER_FAILED naming the first problem, so a
    handler bug reaches the caller as a coded falla instead of an answer the gateway refuses."""
    language = schema_registry().language
    if language.validate(payload):
        return payload
    first = language.error_log[0]  # type: ignore[index]
    raise fault(FaultCode.ADAPTER_HANDLER_FAILED, entity=entity,
                detail=f"la respuesta armada no es GEL-XML válido: {first.message}")


def per_person(request_payload: etree._Element) -> Iterator[etree._Element]:
    """The request once per `per:identificacion` it lists, each as if it named that person alone — how a
    single-record mapping reads a household request (the mapping has no repeated groups yet)."""
    for identificacion in request_payload.iterchildren(qname(PERSONAL, "identificacion")):
        asked = etree.Element(request_payload.tag)
        asked.append(copy.deepcopy(identificacion))
        yield asked


class OwnConnector:
    """The connector of the adapter.yaml at `config_file`, built once per expanded configuration and reused."""

    def __init__(self, config_file: Path) -> None:
        self.config_file = config_file
        self._lock = threading.Lock()
        self._key: str | None = None
        self._connector: Connector | None = None

    def get(self) -> Connector:
        config = load_adapter_config(self.config_file)
        if config.connector is None:
            raise ValueError(f"{self.config_file}: el adaptador no declara 'connector'")
        key = json.dumps([config.entity, config.connector], sort_keys=True, default=str)
        with self._lock:
            if self._connector is None or key != self._key:
                if self._connector is not None:
                    self._connector.close()
                self._connector = connector_from_config(config.entity, config.connector, base_dir=config.base_dir)
                self._key = key
            return self._connector

    def call(self, operation: str, **params: Any) -> list[dict[str, Any]]:
        return [dict(record) for record in self.get().call(operation, params)]

    def one(self, operation: str, **params: Any) -> dict[str, Any] | None:
        records = self.call(operation, **params)
        return records[0] if records else None

    def close(self) -> None:
        with self._lock:
            if self._connector is not None:
                self._connector.close()
            self._connector, self._key = None, None


class AdapterPackage:
    """One adapter package: its adapter.yaml, connector and `mappings/` folder."""

    def __init__(self, adapter_yaml: Path) -> None:
        self.adapter_yaml = adapter_yaml
        self._connector = OwnConnector(adapter_yaml)

    def connector(self) -> Connector:
        return self._connector.get()

    def mapping(self, name: str) -> ServiceMapping:
        """A mapping file of this package's `mappings/` folder, checked against its schema."""
        return load_mapping(self.adapter_yaml.parent / "mappings" / name, schema_registry())

    def checked(self, payload: etree._Element) -> etree._Element:
        return checked(payload, load_adapter_config(self.adapter_yaml).entity)
