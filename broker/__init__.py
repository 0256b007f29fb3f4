"""GEL Broker: interoperability message broker for inter-entity trámite chains."""

__version__ = "0.1.0"
