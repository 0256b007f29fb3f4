"""The oferente's adapter.yaml and connector (the sales system's exchange folder) for its event callback."""

from __future__ import annotations

from pathlib import Path

from adapters.sdk.package import AdapterPackage

__all__ = ["ADAPTER_YAML", "connector"]

ADAPTER_YAML = Path(__file__).with_name("adapter.yaml")
connector = AdapterPackage(ADAPTER_YAML).connector
