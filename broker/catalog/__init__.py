"""The service catalog: which services exist, who provides them, who may call them, and their publication."""

from broker.catalog.access import Catalog, ServiceEntry, ServiceStatus, load_catalog
from broker.catalog.errors import CatalogCode, CatalogError

__all__ = ["Catalog", "CatalogCode", "CatalogError", "ServiceEntry", "ServiceStatus", "load_catalog"]
