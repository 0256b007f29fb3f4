"""The entities' side of a whole platform on one machine: seeded legacy systems, their stand-in services
(the Registraduría's JSON service, the PSE payment service, a mail relay for the notification channel) and the
entity adapters answering from them. The demo and the chain tests run the chains against this world."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from adapters.legacy import seed as housing_seed
from adapters.legacy import seed_ambiental_salud
from adapters.legacy.mailbox import Mailbox, start_mailbox
from adapters.legacy.server import free_port, wait_for_port
from adapters.sdk.assembly import AssembledAdapter, assemble
from adapters.sdk.config import load_adapter_config
from broker.gelxml.registry import SchemaRegistry
from broker.settings import PROJECT_ROOT, Settings
from broker.transport.abc import Transport

__all__ = ["AMBIENTAL", "HOUSING", "SALUD", "LegacyWorld", "legacy_world", "running_adapters"]

HOUSING = ("registraduria", "sisben", "snr", "fonvivienda", "fiduprevisora", "colsubsidio", "compensar", "oferente")
AMBIENTAL = ("anla", "recaudo", "mininterior", "parques", "notificaciones")
SALUD = ("adres", "eps")


@dataclass
class LegacyWorld:
    folder: Path
    environment: dict[str, str]
    housing: housing_seed.SeededLegacy | None = None
    others: seed_ambiental_salud.SeededAmbientalSalud | None = None
    services: dict[str, str] = field(default_factory=dict)
    mailbox: Mailbox | None = None
    """The in-process mail relay the notification channel sends to, when the world started one."""


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def legacy_world(folder: Path, adapters: Sequence[str]) -> Iterator[LegacyWorld]:
    """Seed what `adapters` need under `folder`, start their stand-in services, and point the adapters'
    variables (GEL_<ADAPTER>_DB_URL, _DIR, _URL, _STORE) at them for the duration.

    The notification channel sends to the SMTP server GEL_SMTP_HOST / GEL_SMTP_PORT name; when neither is set,
    an in-process relay (aiosmtpd, a development dependency) receives its mail under `folder`/correo."""
    names = set(adapters)
    world = LegacyWorld(folder=folder, environment={})
    env = world.environment
    with ExitStack() as stack:
        if names & set(HOUSING):
            seeded = world.housing = housing_seed.seed(folder / "vivienda")
            env.update({
                "GEL_SISBEN_DB_URL": f"sqlite:///{seeded.sisben_db}", "GEL_SNR_DB_URL": f"sqlite:///{seeded.snr_db}",
                "GEL_FONVIVIENDA_DB_URL": f"sqlite:///{seeded.fonvivienda_db}",
                "GEL_FIDUPREVISORA_DB_URL": f"sqlite:///{seeded.fiduprevisora_db}",
                "GEL_COLSUBSIDIO_DIR": str(seeded.colsubsidio_dir), "GEL_COMPENSAR_DIR": str(seeded.compensar_dir),
                "GEL_OFERENTE_DIR": str(seeded.oferente_dir),
            })
            if "registraduria" in names:
                port = free_port()
                identity = subprocess.Popen(
                    [sys.executable, "-m", "adapters.legacy.identity_app", str(port), "--datos",
                     str(seeded.identity_json)], cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                stack.callback(_terminate, identity)
                wait_for_port(port, identity, what="el servicio heredado de identidad")
                env["GEL_REGISTRADURIA_URL"] = world.services["registraduria"] = f"http://127.0.0.1:{port}"
        if names & (set(AMBIENTAL) | set(SALUD)):
            others = world.others = seed_ambiental_salud.seed(folder / "ambiental-salud")
            env.update({
                "GEL_ANLA_DB_URL": f"sqlite:///{others.anla_db}",
                "GEL_MININTERIOR_DB_URL": f"sqlite:///{others.mininterior_db}",
                "GEL_PARQUES_DB_URL": f"sqlite:///{others.parques_db}",
                "GEL_ADRES_DB_URL": f"sqlite:///{others.adres_db}", "GEL_EPS_DB_URL": f"sqlite:///{others.eps_db}",
            })
            if "recaudo" in names:
                from adapters.recaudo.pse_app import start_background

                pse = start_background(json.loads(others.recaudo_json.read_text(encoding="utf-8")))
                stack.callback(pse.stop)
                env["GEL_RECAUDO_URL"] = world.services["recaudo"] = pse.url
        if "notificaciones" in names and not {"GEL_SMTP_HOST", "GEL_SMTP_PORT"} & set(os.environ):
            try:
                mailbox = world.mailbox = start_mailbox(folder / "correo")
            except ModuleNotFoundError:
                mailbox = None  # no aiosmtpd: the channel keeps its defaults (an SMTP server on 127.0.0.1:25)
            if mailbox is not None:
                stack.callback(mailbox.stop)
                env.update({"GEL_SMTP_HOST": mailbox.host, "GEL_SMTP_PORT": str(mailbox.port)})
                world.services["notificaciones"] = f"smtp://{mailbox.host}:{mailbox.port}"
        for name in names:
            env[f"GEL_{name.upper()}_STORE"] = f"sqlite:///{folder / 'almacenes' / (name + '.db')}"
        stack.enter_context(_environment(env))
        yield world


def _terminate(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=10)


@contextmanager
def running_adapters(settings: Settings, transport_for: object, adapters: Sequence[str], *,
                     registry: SchemaRegistry | None = None) -> Iterator[dict[str, AssembledAdapter]]:
    """Start the named entity adapters (adapters/<name>/adapter.yaml) on `transport_for(entity)`; stop them
    after, letting each publish what its outbox still holds."""
    connect = transport_for if callable(transport_for) else None
    assert connect is not None
    running: dict[str, AssembledAdapter] = {}
    try:
        for name in adapters:
            config = load_adapter_config(PROJECT_ROOT / "adapters" / name / "adapter.yaml")
            transport: Transport = connect(config.entity)
            assembled = assemble(config, settings, transport, registry=registry)
            assembled.adapter.start()
            running[name] = assembled
        yield running
    finally:
        for assembled in running.values():
            assembled.adapter.wait_idle(timeout=5)
            assembled.close()
