"""The orchestrator killed (SIGKILL) at random points while 200 housing cases run concurrently, and started
again each time: every case finishes, and every step had exactly one effect — one request per step reached
its provider (a re-sent request carries the same idMensaje and the provider's inbox drops it), one decision
per radicado in Fonvivienda's system, one notification file per radicado at the caja."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

from adapters.legacy.applications import housing_applications
from adapters.legacy.world import HOUSING
from broker.gelxml import SchemaRegistry
from broker.security.pki import DevPKI
from broker.settings import Settings
from broker.transport.provisioning import Credentials
from tests.conftest import ROOT
from tests.integration.chain_kit import ChainScene, caja_notifications, chain_scene

pytestmark = pytest.mark.rabbitmq

CASES = 200
CAJAS = ("CO/CCF/860007336", "CO/CCF/860066942")
PROVIDERS = {"registraduria": "verificarIdentidad", "snr": "consultarPropiedad", "sisben": "consultarSisben",
             "fonvivienda": None, "colsubsidio": "notificarResultado", "compensar": "notificarResultado"}


class Orchestrator:
    """`gel orchestrator` as a process of its own, on the test's vhost and stores."""

    def __init__(self, scene: ChainScene, credentials: Credentials, amqp_url: str, log: Path) -> None:
        settings = scene.settings
        self.env = {**os.environ, "GEL_CERTS_DIR": str(settings.certs_dir),
                    "GEL_ORCHESTRATOR_DATABASE_URL": settings.orchestrator_database_url,
                    "GEL_CHAINS_DIR": str(settings.chains_dir), "GEL_SCHEMAS_DIR": str(settings.schemas_dir),
                    "GEL_ENTITIES_FILE": str(settings.entities_file), "GEL_AMQP_URL": amqp_url,
                    "GEL_RABBITMQ_VHOST": credentials.vhost,
                    "GEL_RABBITMQ_CREDENTIALS_FILE": str(Settings().rabbitmq_credentials_file),
                    "GEL_LOG_FORMAT": "json"}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen([sys.executable, "-m", "broker.cli", "orchestrator"], cwd=ROOT,
                                            env=self.env, stdout=sink, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.kills += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def statuses(database: Path) -> Counter[str]:
    with closing(sqlite3.connect(database, timeout=30)) as connection:
        return Counter(r[0] for r in connection.execute("SELECT status FROM chain_instances"))


def test_killed_at_random_points_every_case_finishes_with_one_effect_per_step(
        tmp_path: Path, pki: DevPKI, registry: SchemaRegistry, rabbitmq_platform: tuple[str, Credentials]) -> None:
    amqp_url, credentials = rabbitmq_platform
    with chain_scene("rabbitmq", tmp_path, pki=pki, registry=registry, adapters=HOUSING, credentials=credentials,
                     orchestrator=False) as scene:
        database = Path(scene.settings.orchestrator_database_url.removeprefix("sqlite:///"))
        orchestrator = Orchestrator(scene, credentials, amqp_url, tmp_path / "orquestador.log")
        orchestrator.start()
        applications = housing_applications(CASES)
        for number, application in enumerate(applications):
            scene.request(CAJAS[number % 2], "radicarPostulacion", application.payload)
        rng = random.Random(2026)
        stop = threading.Event()

        def chaos() -> None:
            while not stop.wait(rng.uniform(1.5, 5.0)) and orchestrator.kills < 6:
                orchestrator.kill()
                orchestrator.start()

        killer = threading.Thread(target=chaos, daemon=True)
        killer.start()
        deadline = time.monotonic() + 900
        try:
            while time.monotonic() < deadline:
                counts = statuses(database) if database.exists() else Counter()
                if sum(counts.values()) >= CASES and counts["en_curso"] == 0 and counts["compensando"] == 0:
                    break
                time.sleep(1)
        finally:
            stop.set()
            killer.join(timeout=30)
            orchestrator.stop()
        assert orchestrator.kills >= 3, "the orchestrator was not killed often enough to mean anything"
        counts = statuses(database)
        assert counts == Counter({"completada": CASES}), (counts, (tmp_path / "orquestador.log").read_text()[-3000:])

        with closing(sqlite3.connect(database)) as connection:
            sent = {m: (instance, step) for m, instance, step in
                    connection.execute("SELECT message_id, instance, step FROM chain_messages")}
            radicados = {r[0]: r[1] for r in connection.execute("SELECT radicado, outcome FROM chain_instances")}
        stores = scene.world.folder / "almacenes"
        effects: Counter[tuple[str, str]] = Counter()
        for name in PROVIDERS:
            with closing(sqlite3.connect(stores / f"{name}.db")) as connection:
                received = [r[0] for r in connection.execute(
                    "SELECT message_id FROM adapter_inbox WHERE message_type = 'solicitud' AND sender = ?",
                    ("CO/PLAT/900000002",))]
            assert set(received) <= set(sent), f"{name} got a request the orchestrator never recorded"
            effects.update(sent[m] for m in received)
        assert effects and max(effects.values()) == 1, [k for k, v in effects.items() if v > 1][:5]
        assert len(effects) == len(sent), "a recorded request never reached its provider"

        assert scene.world.housing is not None
        with closing(sqlite3.connect(scene.world.housing.fonvivienda_db)) as connection:
            decided = Counter(r[0] for r in connection.execute(
                "SELECT RADICADO FROM SFV_ASIGNACIONES WHERE RADICADO LIKE 'VUV-%'"))
        assigned = {r for r, outcome in radicados.items() if outcome == "asignado"}
        assert assigned and set(decided) >= assigned and max(decided.values()) == 1
        notified = caja_notifications(scene.world.housing)
        assert set(notified) == set(radicados) and max(notified.values()) == 1
