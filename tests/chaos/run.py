"""A chaos run: start a stream of housing and environmental cases, inject faults at random points while they run,
let the platform settle, then count what was started, completed, lost and done twice."""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from lxml import etree

from adapters.legacy.applications import housing_applications
from adapters.legacy.world import AMBIENTAL, HOUSING
from broker.gelxml import GelFault
from broker.gelxml.envelope import ServiceRef, build_message, new_header, serialize
from broker.orchestrator.bus import ORCHESTRATOR_ID, open_orchestrator
from broker.security.signing import sign_element
from broker.transport.abc import OutgoingMessage, TransportError
from broker.transport.embedded import EmbeddedTransport
from broker.transport.rabbitmq import RabbitMQTransport
from broker.transport.topology import DEAD_LETTER_QUEUE, INGRESS_EXCHANGE, entity_key
from tests.chaos.platform import ChaosPlatform, chaos_platform
from tests.integration.ambiental_kit import APPLICANT, OFFICIALS, TASK_VALUES, filing
from tests.integration.chain_kit import FINISHED, caja_notifications

HOUSING_CHAIN = "vivienda-postulacion"
ENVIRONMENTAL_CHAIN = "ambiental-licencia"
CAJAS = ("CO/CCF/860007336", "CO/CCF/860066942")
FAULTS = ("pasarela", "orquestador", "adaptador", "rabbitmq", "postgresql")
REASON_HEADER = "x-gel-motivo"


@dataclass(frozen=True)
class ChaosConfig:
    housing: int = 200
    environmental: int = 10
    window: float = 300.0
    """Seconds over which the cases start and the faults are injected."""
    interval: tuple[float, float] = (6.0, 15.0)
    """Quiet time between the recovery from one fault and the next fault (uniform, seconds)."""
    downtime: tuple[float, float] = (0.5, 5.0)
    """How long a killed component or a stopped service stays down (uniform, seconds)."""
    faults: tuple[str, ...] = FAULTS
    seed: int = 2026
    settle: float = 900.0
    """Seconds allowed after the window for every started case to finish."""
    recovery_timeout: float = 240.0
    gateway_workers: int = 2


SHORT = ChaosConfig(housing=24, environmental=2, window=45.0, interval=(3.0, 6.0), downtime=(0.5, 2.0), settle=420.0)


@dataclass(frozen=True)
class FaultEvent:
    kind: str
    target: str
    at: float
    """Seconds since the run began."""
    down: float
    """Seconds the target was down on purpose."""
    recovered: float | None
    """Seconds from bringing the target back until every component served again; None if it never did."""
    error: str | None = None


@dataclass(frozen=True)
class ChaosReport:
    started: int
    completed: int
    failed: int
    lost: int
    duplicated: int
    findings: tuple[str, ...]
    dead_lettered: dict[str, int]
    refused: dict[str, int]
    faults: tuple[FaultEvent, ...]
    crashes: dict[str, tuple[str, ...]]
    seconds: float

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.completed + self.failed == self.started and all(
            f.recovered is not None for f in self.faults)

    def lines(self) -> list[str]:
        out = [f"Casos iniciados: {self.started}; terminados: {self.completed} completados y {self.failed} fallidos; "
               f"perdidos: {self.lost}; efectos duplicados: {self.duplicated}; duración {self.seconds:.0f} s.",
               f"Fallas inyectadas: {len(self.faults)}."]
        for fault in self.faults:
            recovered = "sin recuperarse" if fault.recovered is None else f"recuperado en {fault.recovered:.1f} s"
            error = f" — {fault.error}" if fault.error else ""
            out.append(f"  t={fault.at:6.1f} s  {fault.kind:<11} {fault.target:<14} caído {fault.down:.1f} s, "
                       f"{recovered}{error}")
        recoveries = sorted(f.recovered for f in self.faults if f.recovered is not None)
        if recoveries:
            out.append(f"Tiempo de recuperación: mediana {recoveries[len(recoveries) // 2]:.1f} s, "
                       f"máximo {recoveries[-1]:.1f} s.")
        dead = ", ".join(f"{reason} ({n})" for reason, n in sorted(self.dead_lettered.items())) or "ninguno"
        out.append(f"Mensajes en la cola de mensajes muertos: {sum(self.dead_lettered.values())}: {dead}.")
        refused = ", ".join(f"{code} ({n})" for code, n in sorted(self.refused.items())) or "ninguno"
        out.append(f"Rechazos de la pasarela: {refused}.")
        for name, crashes in sorted(self.crashes.items()):
            out.append(f"Salidas no provocadas de {name}: {len(crashes)} (reiniciado por el supervisor); "
                       f"la última: {crashes[-1]}")
        out += [f"  hallazgo: {finding}" for finding in self.findings]
        out.append(f"chaos: started={self.started} completed={self.completed + self.failed} lost={self.lost} "
                   f"duplicated={self.duplicated}")
        return out


class _Starter:
    """Files cases as the cajas and the applicant do: signed, published with a confirm, and sent again with the
    same bytes (the same idMensaje) until RabbitMQ confirms it."""

    def __init__(self, platform: ChaosPlatform) -> None:
        self.platform = platform
        self._transports: dict[str, RabbitMQTransport] = {}

    def file(self, sender: str, service: str, payload: etree._Element, *, give_up: float) -> str | None:
        header = new_header(sender=sender, recipient=ORCHESTRATOR_ID, service=ServiceRef(service, "1.0"))
        body = serialize(sign_element(build_message(header, payload), self.platform.pki.credential(sender)))
        message = OutgoingMessage(exchange=INGRESS_EXCHANGE, routing_key=entity_key(sender), body=body,
                                  message_id=header.message_id, user_id=sender)
        while time.monotonic() < give_up:
            try:
                self._transport(sender).publish_all([message], timeout=20)
                return header.message_id
            except TransportError:
                time.sleep(1.0)
        return None

    def _transport(self, sender: str) -> RabbitMQTransport:
        if sender not in self._transports:
            self._transports[sender] = RabbitMQTransport(
                self.platform.credentials.url(self.platform.amqp_url, sender), user_label=f"gel-caos:{sender}")
        return self._transports[sender]

    def close(self) -> None:
        for transport in self._transports.values():
            with suppress(Exception):
                transport.close()


def _workload(config: ChaosConfig) -> list[tuple[str, str, str, etree._Element]]:
    """(chain, sender, service, payload) for every case, the environmental ones spread among the housing ones."""
    cases: list[tuple[str, str, str, etree._Element]] = [
        (HOUSING_CHAIN, CAJAS[n % 2], "radicarPostulacion", application.payload)
        for n, application in enumerate(housing_applications(config.housing))]
    every = max(1, len(cases) // max(1, config.environmental))
    for n in range(config.environmental):
        cases.insert(min(len(cases), n * (every + 1)), (ENVIRONMENTAL_CHAIN, APPLICANT, "radicarSolicitudLicencia",
                                                        filing()))
    return cases


def _complete_tasks(platform: ChaosPlatform, stop: threading.Event) -> None:
    """The officials at their desks: every open task completed by its own entity, whatever is failing."""
    node = None
    while not stop.wait(1.0):
        try:
            if node is None:
                node = open_orchestrator(platform.settings, EmbeddedTransport("gel-caos-tareas"), lint=False)
            for task in node.orchestrator.store.tasks():
                with suppress(GelFault):
                    node.orchestrator.complete_task(task.id, TASK_VALUES[task.step], entity=task.entity,
                                                    official=OFFICIALS[task.entity])
        except Exception:  # PostgreSQL restarting: the desk tries again in a second
            if node is not None:
                with suppress(Exception):
                    node.store.close()
            node = None
    if node is not None:
        node.store.close()


def _instances(platform: ChaosPlatform) -> list[sa.Row[tuple[str, str, str, str | None, str]]] | None:
    engine = sa.create_engine(platform.settings.orchestrator_database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.text(
                "SELECT id, chain, radicado, start_key, status FROM chain_instances")))
    except sa.exc.SQLAlchemyError:
        return None
    finally:
        engine.dispose()


def _inject(platform: ChaosPlatform, kind: str, rng: random.Random, config: ChaosConfig,
            adapters: list[str]) -> tuple[str, float, Callable[[], None]]:
    down = rng.uniform(*config.downtime)
    if kind == "rabbitmq":
        return "nodo", down, lambda: platform.restart_rabbitmq(down)
    if kind == "postgresql":
        return "clúster", down, lambda: platform.restart_postgres(down)
    target = rng.choice(adapters) if kind == "adaptador" else kind
    return target, down, lambda: platform.kill(target, down)


def _inject_faults(platform: ChaosPlatform, config: ChaosConfig, began: float, until: float,
                   events: list[FaultEvent], rng: random.Random) -> None:
    adapters = [name for name in platform.components if name not in ("pasarela", "orquestador")]
    plan: list[str] = []
    while True:
        pause = rng.uniform(*config.interval)
        if time.monotonic() + pause >= until and len(events) >= len(config.faults):
            return
        time.sleep(pause)
        if not plan:
            plan = list(config.faults)
            rng.shuffle(plan)
        kind = plan.pop()
        target, down, action = _inject(platform, kind, rng, config, adapters)
        at = time.monotonic() - began
        error = None
        try:
            action()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        try:
            recovered: float | None = platform.wait_healthy(config.recovery_timeout)
        except TimeoutError as exc:
            recovered, error = None, str(exc)
        events.append(FaultEvent(kind, target, round(at, 1), round(down, 1),
                                 None if recovered is None else round(recovered, 1), error))
        print(f"[caos] t={at:6.1f} s {kind} {target}: caído {down:.1f} s, "
              + (f"recuperado en {recovered:.1f} s" if recovered is not None else f"SIN RECUPERARSE ({error})"),
              flush=True)


def _wait_settled(platform: ChaosPlatform, started: dict[str, str], deadline: float) -> None:
    while time.monotonic() < deadline:
        rows = _instances(platform)
        if rows is not None:
            finished = {r.start_key for r in rows if r.status in FINISHED}
            if set(started) <= finished:
                return
            print(f"[caos] esperando: {len(set(started) & finished)}/{len(started)} casos terminados", flush=True)
        time.sleep(5.0)


FAILURE_EVENTS = frozenset({"consumidor_fallo", "adapter.handler_bug", "adapter.unverifiable", "gateway.unexpected"})
"""What a process logs when a delivery goes back to its queue or to the dead-letter queue for a reason other than
an outage: quoted in the report when something was lost or parked, since CI keeps no process logs."""


def _logged_failures(platform: ChaosPlatform, limit: int = 10) -> list[str]:
    found: list[str] = []
    for component in platform.components.values():
        with suppress(OSError), component.log.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                with suppress(ValueError):
                    event = json.loads(line)
                    if isinstance(event, dict) and event.get("event") in FAILURE_EVENTS:
                        cause = str(event.get("exception") or event.get("code") or "").strip().splitlines()
                        found.append(f"{component.name} registró {event['event']} ({event.get('timestamp', '?')}, "
                                     f"mensaje {event.get('message_id', '?')}): {cause[-1] if cause else '?'}")
    return found[:limit]


def _dead_letters(platform: ChaosPlatform) -> dict[str, int]:
    gateway = next(e.id for e in platform.entities if e.kind == "pasarela")
    reasons: Counter[str] = Counter()
    with RabbitMQTransport(platform.credentials.url(platform.amqp_url, gateway), user_label="gel-caos-dlq") as t:
        while (delivery := t.get(DEAD_LETTER_QUEUE, timeout=1.0)) is not None:
            headers = delivery.headers
            death = (headers.get("x-death") or [{}])[0]
            reason = headers.get(REASON_HEADER) or f"{death.get('reason', 'desconocido')} en {death.get('queue', '?')}"
            reasons[str(reason)[:120]] += 1
            t.ack(delivery)
    return dict(reasons)


def _refusals(platform: ChaosPlatform) -> dict[str, int]:
    engine = sa.create_engine(platform.settings.database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return {code: n for code, n in connection.execute(sa.text(
                "SELECT fault_code, count(*) FROM operational_records WHERE fault_code IS NOT NULL "
                "GROUP BY fault_code"))}
    finally:
        engine.dispose()


def _sqlite(path: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    if not path.exists():
        return []
    with closing(sqlite3.connect(path, timeout=30)) as connection:
        return connection.execute(sql, params).fetchall()


def _duplicates(platform: ChaosPlatform, housing_instances: set[str]) -> list[str]:
    """Every effect that happened more than once, or that no committed step of a chain asked for."""
    engine = sa.create_engine(platform.settings.orchestrator_database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            sent = {m: (instance, step) for m, instance, step in connection.execute(sa.text(
                "SELECT message_id, instance, step FROM chain_messages"))}
            starts = Counter(k for (k,) in connection.execute(sa.text(
                "SELECT start_key FROM chain_instances WHERE start_key IS NOT NULL")))
    finally:
        engine.dispose()
    findings = [f"la solicitud {key} inició {n} instancias" for key, n in starts.items() if n > 1]
    stores = platform.world.folder / "almacenes"
    per_step: Counter[tuple[str, str]] = Counter()
    for name in platform.components:
        received = [str(m) for (m,) in _sqlite(stores / f"{name}.db", "SELECT message_id FROM adapter_inbox WHERE "
                                               "message_type = 'solicitud' AND sender = ?", ORCHESTRATOR_ID)]
        phantom = [m for m in received if m not in sent]
        findings += [f"{name} recibió {m}, una solicitud que ningún paso confirmado envió" for m in phantom]
        per_step.update(sent[m] for m in received if m in sent and sent[m][0] in housing_instances)
    findings += [f"el paso {step} de {instance} tuvo {n} efectos" for (instance, step), n in per_step.items() if n > 1]
    housing = platform.world.housing
    if housing is not None:
        decided = _sqlite(housing.fonvivienda_db, "SELECT RADICADO, count(*) FROM SFV_ASIGNACIONES "
                          "WHERE RADICADO LIKE 'VUV-%' GROUP BY RADICADO HAVING count(*) > 1")
        findings += [f"Fonvivienda decidió {n} veces {radicado}" for radicado, n in decided]
        notified = caja_notifications(housing)
        findings += [f"la caja notificó {n} veces {radicado}" for radicado, n in notified.items() if n > 1]
    others = platform.world.others
    if others is not None:
        acts = _sqlite(others.anla_db, "SELECT num_expediente, tipo_acto, count(*) FROM actos "
                       "GROUP BY num_expediente, tipo_acto HAVING count(*) > 1")
        findings += [f"la ANLA expidió {n} actos {kind} en {expediente}" for expediente, kind, n in acts]
    return findings


def run_chaos(config: ChaosConfig, folder: Path, *, amqp_url: str, postgres_url: str) -> ChaosReport:
    rng = random.Random(config.seed)
    adapters = [*HOUSING, *(a for a in AMBIENTAL if config.environmental)]
    workload = _workload(config)
    with chaos_platform(folder, amqp_url=amqp_url, postgres_url=postgres_url, adapters=adapters,
                        gateway_workers=config.gateway_workers) as platform:
        print(f"[caos] plataforma arriba: {len(platform.components)} procesos, vhost {platform.vhost}", flush=True)
        platform.supervise()
        began = time.monotonic()
        until = began + config.window
        stop = threading.Event()
        desk = threading.Thread(target=_complete_tasks, args=(platform, stop), name="chaos-tasks", daemon=True)
        desk.start()
        events: list[FaultEvent] = []
        injector = threading.Thread(target=_inject_faults, args=(platform, config, began, until, events, rng),
                                    name="chaos-faults", daemon=True)
        injector.start()
        starter = _Starter(platform)
        started: dict[str, str] = {}
        try:
            gap = config.window / max(1, len(workload))
            for chain, sender, service, payload in workload:
                message_id = starter.file(sender, service, payload, give_up=time.monotonic() + 240)
                if message_id is not None:
                    started[message_id] = chain
                time.sleep(max(0.0, began + gap * len(started) - time.monotonic()))
            injector.join()
            print(f"[caos] {len(started)} casos radicados y {len(events)} fallas inyectadas; esperando que terminen",
                  flush=True)
            _wait_settled(platform, started, time.monotonic() + config.settle)
        finally:
            stop.set()
            desk.join(timeout=30)
            starter.close()
        with suppress(TimeoutError):
            platform.wait_healthy(config.recovery_timeout)
        rows = _instances(platform) or []
        finished = {r.start_key: r for r in rows if r.status in FINISHED}
        completed = sum(1 for key in started if key in finished and finished[key].status == "completada")
        failed = sum(1 for key in started if key in finished and finished[key].status == "fallida")
        housing = {r.id for r in rows if r.chain == HOUSING_CHAIN}
        findings = _duplicates(platform, housing)
        lost = [key for key in started if key not in finished]
        dead = _dead_letters(platform)
        clues = _logged_failures(platform) if lost or dead else []
        report = ChaosReport(
            started=len(started), completed=completed, failed=failed, lost=len(lost), duplicated=len(findings),
            findings=tuple(findings + [f"caso sin terminar: solicitud {key} ({started[key]})" for key in lost[:20]]
                           + clues),
            dead_lettered=dead, refused=_refusals(platform), faults=tuple(events),
            crashes={c.name: tuple(c.crashes) for c in platform.components.values() if c.crashes},
            seconds=time.monotonic() - began)
        return report
