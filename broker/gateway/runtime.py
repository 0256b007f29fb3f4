"""Assemble a gateway worker from the settings: the one place that wires registry, PKI, TSA, log, catalog."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from broker.catalog.live import LiveCatalog, open_catalog
from broker.gateway.deadlines import ReplyDeadlines
from broker.gateway.gateway import Gateway, Routed
from broker.gateway.pipeline import LogReplayGuard, Pipeline
from broker.gateway.records import OperationalRecords
from broker.gelxml import load_registry
from broker.security.entities import load_entities
from broker.security.message_log import MessageLog
from broker.security.pki import DevPKI, LiveTrustStore
from broker.security.timestamp import TimeStampAuthority
from broker.settings import Settings
from broker.transport.abc import Transport
from broker.transport.provisioning import load_credentials
from broker.transport.topology import DELIVERER_KIND, ingress_publishers

__all__ = ["GatewayParts", "build_gateway", "gateway_amqp_url", "platform_entity"]


@dataclass(frozen=True, slots=True)
class GatewayParts:
    gateway: Gateway
    pipeline: Pipeline
    log: MessageLog
    records: OperationalRecords
    deadlines: ReplyDeadlines

    def close(self) -> None:
        self.gateway.stop()
        if isinstance(self.pipeline.catalog, LiveCatalog):
            self.pipeline.catalog.store.close()
        self.log.close()
        self.records.close()
        self.deadlines.close()


def platform_entity(settings: Settings, kind: str = DELIVERER_KIND) -> str:
    """The id of the platform component of `kind` (pasarela, orquestador) in the entity registry."""
    found = load_entities(settings.entities_file).of_kind(kind)
    if not found:
        raise ValueError(f"el registro de entidades {settings.entities_file} no tiene ninguna entidad de tipo {kind}")
    return found[0].id


def gateway_amqp_url(settings: Settings) -> str:
    """The gateway connects as the `pasarela` entity's RabbitMQ user (credentials from `gel topology apply`)."""
    credentials = load_credentials(settings.rabbitmq_credentials_file, vhost=settings.rabbitmq_vhost)
    return credentials.url(settings.amqp_url, platform_entity(settings))


def build_gateway(settings: Settings, transport: Transport, *, on_routed: Callable[[Routed], None] | None = None,
                  prefetch: int = 64) -> GatewayParts:
    """A gateway worker over `transport` that will consume the ingress queue of every entity registered now."""
    pki = DevPKI(settings.certs_dir)
    platform_id = platform_entity(settings)
    publishers = ingress_publishers(load_entities(settings.entities_file))
    log = MessageLog(settings.database_url)
    registry = load_registry(settings.schemas_dir)
    pipeline = Pipeline(
        registry=registry, trust=LiveTrustStore(pki.directory),
        tsa=TimeStampAuthority(pki.tsa_credential()), log=log, replay=LogReplayGuard(log),
        window=timedelta(seconds=settings.replay_window_seconds), limits=settings.parse_limits,
        catalog=open_catalog(settings, registry), platform_id=platform_id,
    )
    records = OperationalRecords(settings.database_url)
    deadlines = ReplyDeadlines(settings.database_url)
    gateway = Gateway(transport, pipeline, pki.credential(platform_id), platform_id=platform_id,
                      publishers=publishers, prefetch=prefetch, records=records, deadlines=deadlines,
                      on_routed=on_routed)
    return GatewayParts(gateway=gateway, pipeline=pipeline, log=log, records=records, deadlines=deadlines)
