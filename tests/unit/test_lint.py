"""`gel schemas lint`: the shipped language passes, and each rule catches what it is for."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from broker.cli import app
from broker.gelxml.lint import LintCode, Severity, lint_paths
from tests.conftest import SCHEMAS

GOOD_SERVICE = """<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"
  targetNamespace="http://www.gobiernoenlinea.gov.co/GEL-XML/1.0/schemas/Prueba/ConsultarDato/1.0"
  xmlns="http://www.gobiernoenlinea.gov.co/GEL-XML/1.0/schemas/Prueba/ConsultarDato/1.0"
  elementFormDefault="qualified">
  <xs:annotation><xs:documentation xml:lang="es">Servicio de prueba.</xs:documentation></xs:annotation>
  <xs:simpleType name="enumCodResultado">
    <xs:restriction base="xs:string"><xs:enumeration value="SI"/></xs:restriction>
  </xs:simpleType>
  <xs:element name="entradaConsultarDato">
    <xs:annotation><xs:documentation xml:lang="es">Entrada.</xs:documentation></xs:annotation>
    <xs:complexType><xs:sequence>
      <xs:element name="codResultado" type="enumCodResultado">
        <xs:annotation><xs:documentation xml:lang="es">Código.</xs:documentation></xs:annotation>
      </xs:element>
    </xs:sequence></xs:complexType>
  </xs:element>
  <xs:element name="salidaConsultarDato" type="xs:string">
    <xs:annotation><xs:documentation xml:lang="es">Salida.</xs:documentation></xs:annotation>
  </xs:element>
</xs:schema>
"""


def write(tmp_path: Path, text: str, name: str = "s.xsd") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def codes(paths: list[Path]) -> set[LintCode]:
    return {f.code for f in lint_paths(paths, reference=[SCHEMAS]) if f.severity == Severity.ERROR}


def test_every_shipped_schema_passes_without_errors() -> None:
    findings = lint_paths([SCHEMAS])
    errors = [f.format() for f in findings if f.severity == Severity.ERROR]
    assert not errors


def test_a_conforming_service_schema_passes(tmp_path: Path) -> None:
    assert codes([write(tmp_path, GOOD_SERVICE)]) == set()


def test_unversioned_service_namespace(tmp_path: Path) -> None:
    text = GOOD_SERVICE.replace("/Prueba/ConsultarDato/1.0\"", "/Prueba/ConsultarDato\"")
    assert LintCode.NAMESPACE_VERSION in codes([write(tmp_path, text)])


def test_foreign_namespace(tmp_path: Path) -> None:
    text = GOOD_SERVICE.replace("http://www.gobiernoenlinea.gov.co/GEL-XML/1.0/schemas/", "urn:otra:")
    assert LintCode.NAMESPACE in codes([write(tmp_path, text)])


def test_unqualified_elements(tmp_path: Path) -> None:
    text = GOOD_SERVICE.replace('elementFormDefault="qualified"', 'elementFormDefault="unqualified"')
    assert LintCode.QUALIFIED in codes([write(tmp_path, text)])


def test_element_names_must_be_lower_camel_case(tmp_path: Path) -> None:
    text = GOOD_SERVICE.replace('name="codResultado"', 'name="Cod_Resultado"')
    assert LintCode.ELEMENT_NAME in codes([write(tmp_path, text)])


def test_enumerations_must_be_named_enum(tmp_path: Path) -> None:
    text = GOOD_SERVICE.replace("enumCodResultado", "tipoResultado")
    assert LintCode.ENUM_NAME in codes([write(tmp_path, text)])


def test_missing_documentation(tmp_path: Path) -> None:
    text = GOOD_SERVICE.replace('<xs:annotation><xs:documentation xml:lang="es">Código.</xs:documentation>'
                                "</xs:annotation>", "")
    assert LintCode.DOCUMENTATION in codes([write(tmp_path, text)])


def test_wildcards_are_refused_in_payloads(tmp_path: Path) -> None:
    text = GOOD_SERVICE.replace("</xs:sequence></xs:complexType>",
                                '<xs:any processContents="lax"/></xs:sequence></xs:complexType>')
    assert LintCode.WILDCARD in codes([write(tmp_path, text)])


def test_service_roots_must_be_entrada_and_salida(tmp_path: Path) -> None:
    text = GOOD_SERVICE.replace("salidaConsultarDato", "respuestaConsultarDato")
    assert LintCode.ROOTS in codes([write(tmp_path, text)])


def test_data_elements_need_the_standard_metadata(tmp_path: Path) -> None:
    text = """<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"
  xmlns:gel="http://www.gobiernoenlinea.gov.co/GEL-XML/1.0/schemas/Metadatos"
  targetNamespace="http://www.gobiernoenlinea.gov.co/GEL-XML/1.0/schemas/Comun/Prueba"
  elementFormDefault="qualified">
  <xs:annotation><xs:documentation xml:lang="es">Prueba.</xs:documentation></xs:annotation>
  <xs:element name="sinMetadatos" type="xs:string">
    <xs:annotation><xs:documentation xml:lang="es">Sin metadatos.</xs:documentation></xs:annotation>
  </xs:element>
  <xs:element name="conRegexMala" type="xs:string">
    <xs:annotation><xs:documentation xml:lang="es">Regex mala.</xs:documentation>
      <xs:appinfo><gel:metadatos><gel:fuente>DANE</gel:fuente><gel:usos>Pruebas</gel:usos>
        <gel:fechaIncorporacion>30/06/2008</gel:fechaIncorporacion><gel:validacion>[0-9</gel:validacion>
        <gel:requiere/><gel:requeridoPor/></gel:metadatos></xs:appinfo>
    </xs:annotation>
  </xs:element>
</xs:schema>
"""
    found = codes([write(tmp_path, text)])
    assert {LintCode.METADATA, LintCode.METADATA_DATE, LintCode.METADATA_REGEX} <= found


def test_a_schema_that_does_not_compile(tmp_path: Path) -> None:
    text = GOOD_SERVICE.replace('type="enumCodResultado"', 'type="tipoQueNoExiste"')
    assert LintCode.COMPILE in codes([write(tmp_path, text)])


def test_hostile_schema_file_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    path = write(tmp_path, '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>')
    findings = lint_paths([path])
    assert [f.code for f in findings] == [LintCode.PARSE]
    assert "GEL-PARSE-DTD" in findings[0].message


def test_cli_exit_code_and_line_format(tmp_path: Path) -> None:
    bad = write(tmp_path, GOOD_SERVICE.replace('name="codResultado"', 'name="CodResultado"'))
    result = CliRunner().invoke(app, ["schemas", "lint", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:" in result.output and "GEL-LINT-ELEMENT_NAME [error]" in result.output
    good = write(tmp_path, GOOD_SERVICE, "good.xsd")
    assert CliRunner().invoke(app, ["schemas", "lint", str(good)]).exit_code == 0
