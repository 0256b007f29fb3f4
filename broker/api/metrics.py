"""Prometheus exposition, computed from the stores at scrape time (no state in the API process).

Queue depths come from RabbitMQ itself (broker/api/queues.py), one sample per queue (label `cola`): each entity's
ingress queue (`gel.entrada.<key>`: what it sent and the gateway has not taken yet) and inbox, and the dead-letter
queue. When they cannot be read, or the platform runs on the embedded transport, the depth families are left out
and `gel_cola_disponible` is 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from sqlalchemy import func, select

from broker.api.queries import Stores
from broker.api.queues import queue_depths
from broker.gateway.records import operational_records as ops

__all__ = ["render_metrics"]

BUCKETS_MS = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0)


class _PlatformCollector:
    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    def collect(self) -> Iterator[Metric]:
        yield from self._messages()
        yield from self._chains()
        yield from self._queues()

    def _messages(self) -> Iterator[Metric]:
        with self.stores.operational.connect() as connection:
            counts = connection.execute(select(ops.c.outcome, ops.c.fault_code, func.count())
                                        .group_by(ops.c.outcome, ops.c.fault_code)).all()
            durations = [float(d) for (d,) in connection.execute(select(ops.c.duration_ms)
                                                                 .where(ops.c.outcome == "entregado")).all()]
        messages = CounterMetricFamily("gel_mensajes", "Tramos de mensajes por resultado y código de falla.",
                                       labels=["resultado", "codigo_falla"])
        for outcome, code, count in counts:
            messages.add_metric([outcome, code or ""], count)
        yield messages
        buckets = [(str(bound), sum(1 for d in durations if d <= bound)) for bound in BUCKETS_MS]
        buckets.append(("+Inf", len(durations)))
        yield HistogramMetricFamily("gel_mensaje_duracion_ms", "Duración de los tramos entregados (ms).",
                                    buckets=buckets, sum_value=sum(durations))

    def _chains(self) -> Iterator[Metric]:
        store = self.stores.orchestrator
        chains = GaugeMetricFamily("gel_cadenas", "Instancias de cadena por cadena y estado.",
                                   labels=["cadena", "estado"])
        for (chain, status), count in sorted(store.counts().items()):
            chains.add_metric([chain, status], count)
        yield chains
        late = Counter(r.chain for r in store.search(late=True, limit=1_000_000))
        overdue = GaugeMetricFamily("gel_cadenas_vencidas", "Instancias que superaron el plazo legal.",
                                    labels=["cadena"])
        for chain, count in sorted(late.items()):
            overdue.add_metric([chain], count)
        yield overdue
        tasks = Counter(t.entity for t in store.tasks())
        open_tasks = GaugeMetricFamily("gel_tareas_abiertas", "Tareas humanas abiertas por entidad.",
                                       labels=["entidad"])
        for entity, count in sorted(tasks.items()):
            open_tasks.add_metric([entity], count)
        yield open_tasks

    def _queues(self) -> Iterator[Metric]:
        depths = queue_depths(self.stores.settings, self.stores.entities)
        available = GaugeMetricFamily("gel_cola_disponible",
                                      "1 si se leyó la profundidad de las colas en RabbitMQ, 0 si no.")
        available.add_metric([], 1 if depths is not None else 0)
        yield available
        if depths is None:
            return
        ready = GaugeMetricFamily("gel_cola_mensajes", "Mensajes listos para entregar, por cola.", labels=["cola"])
        consumers = GaugeMetricFamily("gel_cola_consumidores", "Consumidores conectados, por cola.",
                                      labels=["cola"])
        for depth in depths:
            ready.add_metric([depth.queue], depth.ready)
            consumers.add_metric([depth.queue], depth.consumers)
        yield ready
        yield consumers


def render_metrics(stores: Stores) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_PlatformCollector(stores))
    return generate_latest(registry)
