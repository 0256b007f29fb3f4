"""How this adapter's Python handlers reach its legacy system and its mappings.

The SDK calls a `handler:` with the verified request only; it does not hand over the connector it built
from adapter.yaml. So the handlers build theirs from the same adapter.yaml: the file is read (and its
`${VARIABLES}` expanded) on every call, and one connector is kept per distinct expanded configuration, so a
handler always talks to the system the environment names, exactly like the assembled connector.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from lxml import etree

from adapters.sdk.config import load_adapter_config
from adapters.sdk.connectors import Connector, connector_from_config
from adapters.sdk.mapping import ServiceMapping, load_mapping
from broker.gelxml import load_registry
from broker.gelxml.faults import FaultCode, fault
from broker.gelxml.registry import SchemaRegistry
from broker.settings import get_settings

__all__ = ["ADAPTER_YAML", "checked", "connector", "mapping", "registry"]

ADAPTER_YAML = Path(__file__).with_name("adapter.yaml")


def connector() -> Connector:
    config = load_adapter_config(ADAPTER_YAML)
    if config.connector is None:
        raise ValueError(f"{ADAPTER_YAML}: falta 'connector'")
    return _connector(config.entity, json.dumps(config.connector, sort_keys=True, default=str))


@lru_cache(maxsize=4)
def _connector(entity: str, spec: str) -> Connector:
    return connector_from_config(entity, json.loads(spec), base_dir=ADAPTER_YAML.parent)


def registry() -> SchemaRegistry:
    return load_registry(get_settings().schemas_dir)


def mapping(name: str) -> ServiceMapping:
    """A mapping file of this adapter's `mappings/` folder, checked against its schema."""
    return load_mapping(ADAPTER_YAML.parent / "mappings" / name, registry())


def checked(payload: etree._Element) -> etree._Element:
    """The answer a handler assembled from several mapped pieces, once it is valid GEL-XML; otherwise a coded
    falla (the caller never receives an invalid answer)."""
    language = registry().language
    if not language.validate(payload):
        problem = cast(Any, language.error_log)[0].message
        raise fault(FaultCode.ADAPTER_HANDLER_FAILED, entity=load_adapter_config(ADAPTER_YAML).entity,
                    detail=f"la respuesta armada no es GEL-XML válido: {problem}")
    return payload
