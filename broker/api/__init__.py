"""The platform's HTTP API (`gel serve`): chains, tasks, messages, evidence, health, metrics and tracking."""

from broker.api.app import ROUTERS, create_app
from broker.api.auth import Principal, principal_from_token

__all__ = ["ROUTERS", "Principal", "create_app", "principal_from_token"]
