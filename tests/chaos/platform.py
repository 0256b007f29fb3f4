"""The platform under chaos: every component a process of its own (as in a deployment), a supervisor that
restarts what dies (as Kubernetes or systemd would), and the real services restarted in place."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from adapters.legacy.world import LegacyWorld, legacy_world
from adapters.sdk.config import load_adapter_config
from broker.orchestrator.bus import ORCHESTRATOR_ID
from broker.security.entities import EntityRegistry, load_entities
from broker.security.pki import DevPKI
from broker.settings import Settings
from broker.transport.provisioning import Credentials, apply_topology
from broker.transport.topology import entity_queue, ingress_queues
from tests.conftest import postgres_databases

ROOT = Path(__file__).resolve().parents[2]
ENTITIES_FILE = ROOT / "deploy" / "entities.yaml"
RABBITMQCTL_TIMEOUT = 120.0


def rabbitmqctl(*args: str, timeout: float = RABBITMQCTL_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


@dataclass
class Component:
    """One process of the platform: how to start it and which queues prove it is serving."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    queues: tuple[str, ...]
    process: subprocess.Popen[bytes] | None = None
    held_down: bool = False
    """Killed on purpose and not yet started again: the supervisor leaves it alone."""
    kills: int = 0
    crashes: list[str] = field(default_factory=list)
    """Exits nobody asked for (exit code and the log's last line), each restarted by the supervisor."""

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=sink, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group (a gateway's workers die with it, as in a crashed container)."""
        self.held_down = True
        if self.process is not None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.kills += 1

    def restart(self) -> None:
        self.start()
        self.held_down = False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def last_log_line(self) -> str:
        try:
            lines = self.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1][:300] if lines else ""


@dataclass
class ChaosPlatform:
    folder: Path
    vhost: str
    credentials: Credentials
    amqp_url: str
    settings: Settings
    pki: DevPKI
    entities: EntityRegistry
    world: LegacyWorld
    components: dict[str, Component]
    postgres_cluster: tuple[str, str] | None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- processes --------------------------------------------------------------------------------------
    def supervise(self) -> threading.Thread:
        """Restart every component that exits without being killed on purpose, as an orchestrator of
        containers would, and keep the reason."""
        def loop() -> None:
            while not self._stop.wait(0.5):
                with self._lock:
                    for component in self.components.values():
                        if component.held_down or component.running():
                            continue
                        code = component.process.returncode if component.process else None
                        component.crashes.append(f"código {code}: {component.last_log_line()}")
                        component.start()
        thread = threading.Thread(target=loop, name="chaos-supervisor", daemon=True)
        thread.start()
        return thread

    def kill(self, name: str, downtime: float) -> None:
        """SIGKILL `name`, wait until RabbitMQ has dropped its consumers (so that serving again means the new
        process serves), keep it down for `downtime` and start it again."""
        component = self.components[name]
        with self._lock:
            component.kill()
        began = time.monotonic()
        while time.monotonic() - began < 30:
            counts = self.consumers()
            if counts is not None and not any(counts.get(q, 0) for q in component.queues):
                break
            time.sleep(0.2)
        time.sleep(max(0.0, downtime - (time.monotonic() - began)))
        with self._lock:
            component.restart()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            for component in self.components.values():
                component.held_down = True
                component.stop()

    # -- services ---------------------------------------------------------------------------------------
    def restart_rabbitmq(self, downtime: float) -> None:
        """Stop RabbitMQ's application on the node (every connection drops, every queue stops) and start it."""
        stopped = rabbitmqctl("stop_app")
        if stopped.returncode != 0:
            raise RuntimeError(f"rabbitmqctl stop_app: {stopped.stderr.strip() or stopped.stdout.strip()}")
        time.sleep(downtime)
        started = rabbitmqctl("start_app")
        if started.returncode != 0:
            raise RuntimeError(f"rabbitmqctl start_app: {started.stderr.strip() or started.stdout.strip()}")
        rabbitmqctl("await_startup", "--timeout", "120")

    def restart_postgres(self, downtime: float) -> None:
        """Stop PostgreSQL in immediate mode (a crash: no checkpoint, recovery from the WAL) and start it."""
        if self.postgres_cluster is None:
            raise RuntimeError("no se encontró el clúster de PostgreSQL (pg_ctlcluster)")
        version, name = self.postgres_cluster
        base = ["pg_ctlcluster", "--skip-systemctl-redirect", version, name]
        subprocess.run([*base, "stop", "-m", "immediate"], capture_output=True, timeout=60, check=True)
        time.sleep(downtime)
        subprocess.run([*base, "start"], capture_output=True, timeout=120, check=True)

    # -- health -----------------------------------------------------------------------------------------
    def consumers(self) -> dict[str, int] | None:
        """Consumers per queue of the chaos vhost; None while RabbitMQ does not answer."""
        try:
            listed = rabbitmqctl("list_queues", "-p", self.vhost, "name", "consumers", timeout=30)
        except subprocess.TimeoutExpired:
            return None
        if listed.returncode != 0:
            return None
        counts = {}
        for line in listed.stdout.splitlines():
            name, _, count = line.partition("\t")
            if count.strip().isdigit():
                counts[name] = int(count)
        return counts

    def postgres_answers(self) -> bool:
        engine = sa.create_engine(self.settings.database_url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
            return True
        except sa.exc.SQLAlchemyError:
            return False
        finally:
            engine.dispose()

    def unhealthy(self) -> list[str]:
        """What is not serving yet: components not running or with no consumer on their queues, services down."""
        missing = [f"{c.name} (detenido)" for c in self.components.values() if not c.running()]
        counts = self.consumers()
        if counts is None:
            return [*missing, "RabbitMQ"]
        missing += [c.name for c in self.components.values()
                    if c.running() and not any(counts.get(q, 0) > 0 for q in c.queues)]
        if not self.postgres_answers():
            missing.append("PostgreSQL")
        return missing

    def wait_healthy(self, timeout: float) -> float:
        """Seconds until everything serves again; raises TimeoutError naming what never came back."""
        began = time.monotonic()
        while True:
            missing = self.unhealthy()
            if not missing:
                return time.monotonic() - began
            if time.monotonic() - began > timeout:
                raise TimeoutError(f"sin recuperarse en {timeout:.0f} s: {', '.join(missing)}")
            time.sleep(0.5)


def postgres_cluster() -> tuple[str, str] | None:
    """The (version, name) of the local PostgreSQL cluster that pg_ctlcluster manages."""
    if shutil.which("pg_ctlcluster") is None:
        return None
    base = Path("/etc/postgresql")
    for version in sorted(base.iterdir()) if base.is_dir() else []:
        if (version / "main").is_dir():
            return version.name, "main"
    return None


def _component_env(settings: Settings, vhost: str, amqp_url: str) -> dict[str, str]:
    return {**os.environ, "GEL_CERTS_DIR": str(settings.certs_dir), "GEL_DATABASE_URL": settings.database_url,
            "GEL_ORCHESTRATOR_DATABASE_URL": settings.orchestrator_database_url, "GEL_AMQP_URL": amqp_url,
            "GEL_RABBITMQ_VHOST": vhost, "GEL_TRANSPORT": "rabbitmq",
            "GEL_RABBITMQ_CREDENTIALS_FILE": str(settings.rabbitmq_credentials_file),
            "GEL_ENTITIES_FILE": str(ENTITIES_FILE), "GEL_LOG_FORMAT": "json", "GEL_LOG_LEVEL": "WARNING",
            "GEL_PUBLISHED_SCHEMAS_DIR": str(settings.published_schemas_dir)}


def _components(settings: Settings, env: dict[str, str], entities: EntityRegistry, adapters: Sequence[str],
                logs: Path, gateway_workers: int) -> dict[str, Component]:
    gel = [sys.executable, "-m", "broker.cli"]
    found = {
        "pasarela": Component("pasarela", [*gel, "gateway", "--workers", str(gateway_workers)], env,
                              logs / "pasarela.log", tuple(ingress_queues(entities))),
        "orquestador": Component("orquestador", [*gel, "orchestrator"], env, logs / "orquestador.log",
                                 (entity_queue(ORCHESTRATOR_ID),)),
    }
    for name in adapters:
        path = ROOT / "adapters" / name / "adapter.yaml"
        entity = load_adapter_config(path).entity
        found[name] = Component(name, [*gel, "adapter", "run", str(path)], env, logs / f"{name}.log",
                                (entity_queue(entity),))
    return found


@contextmanager
def chaos_platform(folder: Path, *, amqp_url: str, postgres_url: str, adapters: Sequence[str],
                   gateway_workers: int = 2, start_timeout: float = 180.0) -> Iterator[ChaosPlatform]:
    """The platform as processes on a vhost and two PostgreSQL databases of its own, over freshly seeded legacy
    systems; everything is stopped and dropped afterwards."""
    entities = load_entities(ENTITIES_FILE)
    pki = DevPKI(folder / "pki")
    pki.initialise(entities)
    tag = uuid.uuid4().hex[:8]
    vhost = f"gel-chaos-{tag}"
    logs = folder / "registros"
    logs.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        credentials_file = Settings().rabbitmq_credentials_file
        applied = apply_topology(entities, credentials_file=credentials_file, vhost=vhost)
        stack.callback(lambda: rabbitmqctl("delete_vhost", vhost))
        platform_db, orchestrator_db = stack.enter_context(
            postgres_databases(postgres_url, [f"gel_chaos_{tag}_plataforma", f"gel_chaos_{tag}_orquestador"]))
        settings = Settings(certs_dir=pki.directory, database_url=platform_db,
                            orchestrator_database_url=orchestrator_db, entities_file=ENTITIES_FILE,
                            rabbitmq_vhost=vhost, rabbitmq_credentials_file=credentials_file,
                            published_schemas_dir=folder / "esquemas-publicados")
        world = stack.enter_context(legacy_world(folder / "legado", adapters))
        env = _component_env(settings, vhost, amqp_url)
        platform = ChaosPlatform(folder=folder, vhost=vhost, credentials=applied.credentials, amqp_url=amqp_url,
                                 settings=settings, pki=pki, entities=entities, world=world,
                                 components=_components(settings, env, entities, adapters, logs, gateway_workers),
                                 postgres_cluster=postgres_cluster())
        stack.callback(platform.stop)
        for component in platform.components.values():
            component.start()
        platform.wait_healthy(start_timeout)
        yield platform
