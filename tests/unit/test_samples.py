"""Every shipped sample behaves as its name says, with the library and with xmllint alike."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from broker.gelxml import GelFault, MessageType, SchemaRegistry, check_message
from broker.gelxml.faults import FaultCode
from broker.gelxml.validation import HEADER_RULE_CODES
from tests.conftest import SAMPLES

VALID = sorted((SAMPLES / "valid").glob("*.xml"))
INVALID = sorted((SAMPLES / "invalid").glob("*.xml"))


def expected_code(path: Path) -> str:
    return path.name.split("--", 1)[0]


def test_there_are_samples() -> None:
    assert len(VALID) >= 40
    assert len(INVALID) >= 8


def test_every_service_has_a_request_and_a_response_sample(registry: SchemaRegistry) -> None:
    names = {p.name for p in VALID}
    missing = [
        f"{code}-{kind}.xml"
        for (code, _), _ in registry.services.items()
        for kind in ("solicitud", "respuesta")
        if f"{code}-{kind}.xml" not in names
    ]
    assert not missing


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_sample_validates_and_matches_its_name(path: Path, registry: SchemaRegistry) -> None:
    message = check_message(path.read_bytes(), registry)
    code, kind = path.stem.rsplit("-", 1)
    assert message.header.service.code == code
    assert message.header.message_type == MessageType(kind)
    assert message.service is not None and message.service.code == code


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_sample_is_refused_with_the_code_in_its_name(path: Path, registry: SchemaRegistry) -> None:
    assert expected_code(path) in {c.value for c in FaultCode}, "unknown code in file name"
    with pytest.raises(GelFault) as caught:
        check_message(path.read_bytes(), registry)
    assert caught.value.falla.code == expected_code(path), caught.value.falla
    assert caught.value.falla.location is not None


@pytest.fixture(scope="module")
def bundle(registry: SchemaRegistry, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "gel.xsd"
    path.write_bytes(registry.driver_xsd())
    return path


def _xmllint(xmllint: str, schema: Path, sample: Path) -> bool:
    result = subprocess.run(
        [xmllint, "--noout", "--nonet", "--schema", str(schema), str(sample)],
        capture_output=True, text=True, timeout=60,
    )
    return result.returncode == 0


@pytest.mark.tools
@pytest.mark.parametrize("path", VALID + INVALID, ids=lambda p: p.name)
def test_xmllint_agrees_with_gel_validate(path: Path, bundle: Path, xmllint: str, registry: SchemaRegistry) -> None:
    try:
        check_message(path.read_bytes(), registry)
        schema_valid = True
    except GelFault as exc:
        schema_valid = all(p.code in HEADER_RULE_CODES for p in exc.falla.all())
    assert _xmllint(xmllint, bundle, path) == schema_valid


@pytest.mark.tools
def test_every_shipped_schema_compiles_with_xmllint(registry: SchemaRegistry, xmllint: str, tmp_path: Path) -> None:
    empty = tmp_path / "vacio.xml"
    empty.write_text("<x/>")
    for schema_file in registry.files:
        result = subprocess.run(
            [xmllint, "--noout", "--nonet", "--schema", str(schema_file.path), str(empty)],
            capture_output=True, text=True, timeout=60,
        )
        assert "failed to compile" not in result.stderr, (schema_file.path, result.stderr)
        assert "Schemas parser error" not in result.stderr, (schema_file.path, result.stderr)
