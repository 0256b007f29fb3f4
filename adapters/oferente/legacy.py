"""How the oferente's event callback reaches its legacy system (the sales system's exchange folder).

The SDK builds the connector of adapter.yaml but hands it to nobody outside a mapped service, so the callback
builds its own from the same file: the file is read (and its `${VARIABLES}` expanded) on every call, and one
connector is kept per distinct expanded configuration.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from adapters.sdk.config import load_adapter_config
from adapters.sdk.connectors import Connector, connector_from_config

__all__ = ["ADAPTER_YAML", "connector"]

ADAPTER_YAML = Path(__file__).with_name("adapter.yaml")


def connector() -> Connector:
    config = load_adapter_config(ADAPTER_YAML)
    if config.connector is None:
        raise ValueError(f"{ADAPTER_YAML}: falta 'connector'")
    return _connector(config.entity, json.dumps(config.connector, sort_keys=True, default=str))


@lru_cache(maxsize=4)
def _connector(entity: str, spec: str) -> Connector:
    return connector_from_config(entity, json.loads(spec), base_dir=ADAPTER_YAML.parent)
