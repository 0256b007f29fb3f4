"""A chain written in YAML alone (tests/data/chains/constancia-programa-social.yaml), which no Python in the
platform mentions, runs end to end on the real adapters: identity and Sisbén checked in parallel, an
official's review as a human task, and the outcome the seeded legacy data decides."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.legacy.seed import people
from broker.gelxml import SchemaRegistry
from broker.security.pki import DevPKI
from tests.conftest import ROOT
from tests.integration.chain_kit import ChainScene, chain_scene

CHAINS = ROOT / "tests" / "data" / "chains"
CHAIN = "constancia-programa-social"
ORCHESTRATOR = "CO/PLAT/900000002"


def test_no_platform_code_mentions_the_chain() -> None:
    text = CHAINS.joinpath(f"{CHAIN}.yaml").read_text(encoding="utf-8")
    words = {CHAIN, "focalizacion", "constancia", "programa-social"}
    for path in [*ROOT.joinpath("broker").rglob("*.py"), *ROOT.joinpath("adapters").rglob("*.py")]:
        code = path.read_text(encoding="utf-8").lower()
        assert not [w for w in words if w in code], path
    assert "constancia" in text


@pytest.fixture(scope="module", params=["embedded", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def scene(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pki: DevPKI,
          registry: SchemaRegistry) -> Iterator[ChainScene]:
    folder = tmp_path_factory.mktemp(f"yaml-{request.param}")
    credentials = request.getfixturevalue("rabbitmq_platform")[1] if request.param == "rabbitmq" else None
    with chain_scene(request.param, folder, pki=pki, registry=registry, adapters=("registraduria", "sisben"),
                     credentials=credentials, chains_dir=CHAINS) as running:
        yield running


def test_the_yaml_chain_runs_with_its_parallel_checks_and_its_human_task(scene: ChainScene) -> None:
    adults = [p for p in people() if p.doc_type == "CC"]
    low = next(p for p in adults if p.sisben_group < "D")
    high = next(p for p in adults if p.sisben_group >= "D")
    orchestrator = scene.node.orchestrator
    started = {person.number: orchestrator.start(CHAIN, {
        "tipoDocumento": "CC", "numDocumento": person.number, "primerNombre": person.given_names.split()[0],
        "primerApellido": person.first_surname}, started_by=ORCHESTRATOR) for person in (low, high)}
    # The low group waits for the official; the high group is refused by the choice, without one.
    assert scene.wait_until(lambda: len(orchestrator.store.tasks(entity=ORCHESTRATOR)) == 1
                            and orchestrator.store.get(started[high.number].id).status == "completada")
    refused = orchestrator.store.get(started[high.number].id)
    assert refused is not None and refused.outcome == "rechazada"
    assert f"Sisbén {high.sisben_group}" in (refused.summary or "")
    (task,) = orchestrator.store.tasks(entity=ORCHESTRATOR)
    assert task.title == "Revisar y firmar la constancia" and task.instance == started[low.number].id
    orchestrator.complete_task(task.id, {"aprobada": True, "firmante": "Luz Marina Ortiz"}, entity=ORCHESTRATOR,
                               official="lmortiz")
    granted = orchestrator.store.get(started[low.number].id)
    assert granted is not None and granted.outcome == "expedida"
    assert granted.summary == f"Constancia expedida (grupo {low.sisben_group}) firmada por Luz Marina Ortiz"
    kinds = [e["kind"] for e in orchestrator.store.history(granted.id)]
    assert kinds.count("respuesta_recibida") == 2 and "ramas_unidas" in kinds and "tarea_completada" in kinds
