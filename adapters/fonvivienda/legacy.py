"""This package's adapter.yaml, connector and mappings, for its hand-written handlers (see adapters.sdk.package)."""

from __future__ import annotations

from pathlib import Path

from adapters.sdk.package import AdapterPackage

__all__ = ["ADAPTER_YAML", "checked", "connector", "mapping"]

ADAPTER_YAML = Path(__file__).with_name("adapter.yaml")
_PACKAGE = AdapterPackage(ADAPTER_YAML)
connector = _PACKAGE.connector
mapping = _PACKAGE.mapping
checked = _PACKAGE.checked
