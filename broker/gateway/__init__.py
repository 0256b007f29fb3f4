"""The gateway: the pipeline stages composed (parse, validate, authenticate, de-duplicate, stamp, record)."""

from broker.gateway.pipeline import Admitted, Pipeline, Rejected

__all__ = ["Admitted", "Pipeline", "Rejected"]
