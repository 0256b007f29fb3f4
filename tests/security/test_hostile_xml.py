"""The hostile-input corpus of the foundation: every document is refused with its own code, in well
under a second, by the library and by `gel validate` alike, with no traceback."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from broker.gelxml import FaultCode, GelFault, ParseLimits, parse_untrusted
from tests.security.attacks import hostile_documents

CORPUS: dict[str, tuple[bytes, FaultCode]] = hostile_documents()
"""The raw documents of tests/security/corpus/ plus the generated ones; attacks.py sends each through the gateway."""


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_hostile_input_is_refused_with_its_code_quickly(name: str) -> None:
    data, expected = CORPUS[name]
    started = time.perf_counter()
    with pytest.raises(GelFault) as caught:
        parse_untrusted(data)
    elapsed = time.perf_counter() - started
    assert caught.value.falla.code == expected
    assert caught.value.falla.message
    assert elapsed < 1.0, f"{name} took {elapsed:.2f}s"


def test_entities_are_never_expanded_even_below_the_byte_checks() -> None:
    with pytest.raises(GelFault) as caught:
        parse_untrusted(b'<!DOCTYPE m [<!ENTITY x "boom">]><m>&x;</m>', ParseLimits(max_bytes=100))
    assert caught.value.falla.code == FaultCode.PARSE_DTD


def test_fault_points_at_the_offending_line() -> None:
    data = b'<?xml version="1.0"?>\n<m>\n<!DOCTYPE x>\n</m>'
    with pytest.raises(GelFault) as caught:
        parse_untrusted(data)
    assert caught.value.falla.location is not None
    assert caught.value.falla.location.line == 3


def test_gel_validate_answers_every_hostile_file_with_a_coded_line(tmp_path: Path) -> None:
    files = []
    for name, (data, _) in CORPUS.items():
        path = tmp_path / f"{name}.xml"
        path.write_bytes(data)
        files.append(path)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "broker.cli", "validate", *map(str, files)],
        capture_output=True, text=True, timeout=60,
    )
    elapsed = time.perf_counter() - started
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    for name, (_, expected) in CORPUS.items():
        matching = [line for line in lines if line.startswith(str(tmp_path / f"{name}.xml") + ":")]
        assert len(matching) == 1, (name, lines)
        assert f": {expected} " in matching[0]
    assert elapsed < len(CORPUS) + 5
