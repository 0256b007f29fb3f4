"""The service catalog: which services exist, who provides them, who may call them."""

from broker.catalog.access import Catalog, ServiceEntry, ServiceStatus, load_catalog

__all__ = ["Catalog", "ServiceEntry", "ServiceStatus", "load_catalog"]
