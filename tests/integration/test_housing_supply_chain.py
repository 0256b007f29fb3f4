"""The supply side of the housing window (chains/vivienda-oferta.yaml) driven from the command line, as an
operator would: `gel chains start` with the oferente's report, the caja's and Fonvivienda's officials
completing their tasks with `gel tasks complete`, and the fiduciaria's adapter paying from its ledger."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest

from broker.gelxml import SchemaRegistry
from broker.security.pki import DevPKI
from tests.conftest import ROOT
from tests.integration.chain_kit import ChainScene, chain_scene

INPUT = ROOT / "docs" / "ejemplos" / "vivienda-oferta-entrada.yaml"
COLSUBSIDIO, FONVIVIENDA, OFERENTE = "CO/CCF/860007336", "CO/GOB/830121208", "CO/PRIV/900123451"


@pytest.fixture(scope="module", params=["embedded", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def scene(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pki: DevPKI,
          registry: SchemaRegistry) -> Iterator[ChainScene]:
    folder = tmp_path_factory.mktemp(f"oferta-{request.param}")
    credentials = request.getfixturevalue("rabbitmq_platform")[1] if request.param == "rabbitmq" else None
    with chain_scene(request.param, folder, pki=pki, registry=registry, adapters=("fiduprevisora",),
                     credentials=credentials) as running:
        yield running


def gel(scene: ChainScene, *args: str) -> subprocess.CompletedProcess[str]:
    settings = scene.settings
    env = {**os.environ, "GEL_CERTS_DIR": str(settings.certs_dir), "GEL_CHAINS_DIR": str(settings.chains_dir),
           "GEL_ORCHESTRATOR_DATABASE_URL": settings.orchestrator_database_url, "GEL_LOG_LEVEL": "WARNING"}
    return subprocess.run([sys.executable, "-m", "broker.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout)


def test_the_oferente_is_paid_after_the_caja_verifies_and_fonvivienda_authorises(scene: ChainScene) -> None:
    started = as_json(gel(scene, "chains", "start", "vivienda-oferta", "--input", str(INPUT), "--por", OFERENTE,
                          "--json"))
    radicado = started["radicado"]
    assert radicado.startswith("VUO-")
    (task,) = as_json(gel(scene, "tasks", "list", "--entidad", COLSUBSIDIO, "--json"))
    assert task["radicado"] == radicado and task["campos"] == ["solucionVerificada", "observaciones"]
    refused = gel(scene, "tasks", "complete", str(task["tarea"]), "--entidad", FONVIVIENDA, "--funcionario", "x",
                  "--dato", "solucionVerificada=true", "--dato", "observaciones=ok")
    assert refused.returncode == 2 and "GEL-CHAIN-TASK_FORBIDDEN" in refused.stdout + refused.stderr
    done = gel(scene, "tasks", "complete", str(task["tarea"]), "--entidad", COLSUBSIDIO, "--funcionario",
               "Andrea Castro", "--dato", "solucionVerificada=sí", "--dato", "observaciones=Vivienda terminada")
    assert done.returncode == 0, done.stderr + done.stdout
    (authorise,) = as_json(gel(scene, "tasks", "list", "--entidad", FONVIVIENDA, "--json"))
    assert authorise["radicado"] == radicado
    assert gel(scene, "tasks", "complete", str(authorise["tarea"]), "--entidad", FONVIVIENDA, "--funcionario",
               "Jorge Pardo", "--dato", "giroAutorizado=true").returncode == 0
    assert scene.wait_until(lambda: as_json(gel(scene, "chains", "status", radicado, "--json"))["estado"]
                            == "completada", timeout=60)
    status = as_json(gel(scene, "chains", "status", radicado, "--json"))
    assert status["resultado"] == "movilizado" and status["resumen"].startswith("Subsidio girado al oferente: FPV-")
    kinds = [e["kind"] for e in status["historia"]]
    assert kinds.count("tarea_completada") == 2 and "respuesta_recibida" in kinds
    assert scene.world.housing is not None
    with closing(sqlite3.connect(scene.world.housing.fiduprevisora_db)) as connection:
        giros = connection.execute("SELECT referencia, nit_oferente FROM giros WHERE radicado = 'VIV-2026-000123'"
                                   ).fetchall()
    assert len(giros) == 1 and giros[0][1] == "900123451" and status["resumen"].endswith(giros[0][0])
    listed = as_json(gel(scene, "chains", "list", "--cadena", "vivienda-oferta", "--json"))
    assert [r["radicado"] for r in listed] == [radicado]
