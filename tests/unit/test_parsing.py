from __future__ import annotations

import pytest

from broker.gelxml import FaultCode, GelFault, ParseLimits, parse_untrusted


def test_well_formed_utf8_document_parses_with_line_numbers() -> None:
    root = parse_untrusted('<?xml version="1.0" encoding="UTF-8"?>\n<m>\n  <n>Peñalosa</n>\n</m>'.encode())
    assert root.tag == "m"
    assert root[0].text == "Peñalosa"
    assert root[0].sourceline == 3


def test_utf8_bom_is_accepted() -> None:
    assert parse_untrusted(b"\xef\xbb\xbf<m/>").tag == "m"


def test_size_limit_is_inclusive() -> None:
    data = b"<m>" + b"x" * 93 + b"</m>"
    assert len(data) == 100
    assert parse_untrusted(data, ParseLimits(max_bytes=100)).tag == "m"
    with pytest.raises(GelFault) as caught:
        parse_untrusted(data + b" ", ParseLimits(max_bytes=100))
    assert caught.value.falla.code == FaultCode.PARSE_TOO_LARGE
    assert "101" in caught.value.falla.message


def test_depth_limit_is_configurable() -> None:
    doc = b"<a>" * 10 + b"</a>" * 10
    assert parse_untrusted(doc, ParseLimits(max_depth=10)).tag == "a"
    with pytest.raises(GelFault) as caught:
        parse_untrusted(doc, ParseLimits(max_depth=9))
    assert caught.value.falla.code == FaultCode.PARSE_TOO_DEEP


def test_malformed_document_reports_line_and_spanish_reason() -> None:
    with pytest.raises(GelFault) as caught:
        parse_untrusted(b"<m>\n<a></b>\n</m>")
    falla = caught.value.falla
    assert falla.code == FaultCode.PARSE_MALFORMED
    assert falla.location is not None and falla.location.line == 2
    assert "etiqueta de cierre" in falla.message


def test_utf8_declared_in_lowercase_is_accepted() -> None:
    assert parse_untrusted(b"<?xml version='1.0' encoding='utf-8'?><m/>").tag == "m"
