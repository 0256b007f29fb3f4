"""The reference connectors against real backends, no mocks: SQLite files and a PostgreSQL schema, the
identity registry's stand-in served by uvicorn, real folders. Every failure is checked by its falla code and
whether it is retryable."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from adapters.legacy.identity_app import SAMPLE_PEOPLE, BackgroundServer, start_background
from adapters.sdk.connectors import (
    CallableConnector,
    Connector,
    ConnectorError,
    FileDropConnector,
    HttpConnector,
    HttpOperation,
    LegacyGarbage,
    LegacyNotFound,
    LegacyTimeout,
    LegacyUnavailable,
    SoapOperation,
    SqlConnector,
    SqlOperation,
    connector_from_config,
)
from broker.gelxml.faults import FaultCode

pytestmark = pytest.mark.timeout(60)

SISBEN = "CO/GOB/899999011"
REGISTRADURIA = "CO/GOB/899999040"
COLSUBSIDIO = "CO/CCF/860007336"
SLOW = 0.5  # seconds: the timeout given to connectors in the slow-backend tests
DOC = {"TipoDoc": "C.C.", "NumeroDoc": "1020304050"}


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def fails(kind: type[ConnectorError], code: FaultCode, *, retryable: bool) -> Iterator[pytest.ExceptionInfo[Any]]:
    """Like pytest.raises, and also checks the coded falla and whether it is retryable."""
    with pytest.raises(kind) as info:
        yield info
    error = info.value
    assert error.falla.code == code, error.falla
    assert error.retryable is retryable
    assert error.falla.retryable is retryable
    assert error.falla.stage.value == "adaptador"


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    started = time.monotonic()
    yield
    elapsed = time.monotonic() - started
    assert elapsed < seconds, f"took {elapsed:.2f}s, expected under {seconds}s"


# -- SQL ---------------------------------------------------------------------------------------------

SQL_SCHEMA = (
    "CREATE TABLE ciudadanos (tipo_doc VARCHAR(5) NOT NULL, numero_doc VARCHAR(20) NOT NULL, "
    "nombres VARCHAR(80) NOT NULL, municipio VARCHAR(60), PRIMARY KEY (tipo_doc, numero_doc))",
    "CREATE TABLE novedades (numero_doc VARCHAR(20) PRIMARY KEY, novedad VARCHAR(80) NOT NULL)",
)
SQL_ROWS = [
    {"tipo_doc": "C.C.", "numero_doc": "1020304050", "nombres": "MARÍA FERNANDA", "municipio": "Bogotá D.C."},
    {"tipo_doc": "T.I.", "numero_doc": "1001234567", "nombres": "VALENTINA", "municipio": "Bogotá D.C."},
    {"tipo_doc": "C.C.", "numero_doc": "79123456", "nombres": "JOSÉ ANTONIO", "municipio": "Medellín"},
]
COUNT_TO_FOREVER = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000000) "
    "SELECT count(*) AS n FROM c"
)
SQL_OPERATIONS = {
    "buscar": SqlOperation(
        "SELECT tipo_doc, numero_doc, nombres, municipio FROM ciudadanos "
        "WHERE tipo_doc = :TipoDoc AND numero_doc = :NumeroDoc",
        one=True,
    ),
    "por_municipio": SqlOperation(
        "SELECT numero_doc, nombres FROM ciudadanos WHERE municipio = :Municipio ORDER BY numero_doc"
    ),
    "uno_por_municipio": SqlOperation("SELECT numero_doc FROM ciudadanos WHERE municipio = :Municipio", one=True),
    "con_nombre_como": SqlOperation("SELECT numero_doc FROM ciudadanos WHERE nombres LIKE 'MAR%' AND 1 = :Uno"),
    "registrar_novedad": SqlOperation(
        "INSERT INTO novedades (numero_doc, novedad) VALUES (:NumeroDoc, :Novedad)", write=True
    ),
    "mudar": SqlOperation("UPDATE ciudadanos SET municipio = :Nuevo WHERE municipio = :Anterior", write=True),
    "lectura_con_efecto": SqlOperation(
        "UPDATE ciudadanos SET nombres = 'BORRADO' WHERE numero_doc = :NumeroDoc RETURNING numero_doc"
    ),
    "lento": SqlOperation(COUNT_TO_FOREVER),
    "columna_rota": SqlOperation("SELECT apellidos FROM ciudadanos WHERE numero_doc = :NumeroDoc"),
    "tabla_rota": SqlOperation("SELECT * FROM personas_2009 WHERE numero_doc = :NumeroDoc"),
}


def _fill(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in SQL_SCHEMA:
            connection.execute(text(statement))
        connection.execute(
            text("INSERT INTO ciudadanos VALUES (:tipo_doc, :numero_doc, :nombres, :municipio)"), SQL_ROWS
        )
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a filled legacy database: a fresh SQLite file, or a fresh PostgreSQL schema (put first
    in the search_path by the URL itself) dropped afterwards."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'sisben.db'}"
        _fill(url)
        yield url
        return
    base: str = request.getfixturevalue("postgres_url")
    schema = f"conn_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        in_schema = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        rendered = in_schema.render_as_string(hide_password=False)
        _fill(rendered)
        yield rendered
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def sql(database: str) -> Iterator[SqlConnector]:
    with SqlConnector(SISBEN, database, SQL_OPERATIONS, timeout=SLOW) as connector:
        yield connector


def test_sql_connector_satisfies_the_contract(sql: SqlConnector) -> None:
    assert isinstance(sql, Connector)
    sql.check()


def test_sql_lookup_one_returns_a_plain_dict_keyed_by_column(sql: SqlConnector) -> None:
    records = sql.call("buscar", DOC)
    assert records == [
        {"tipo_doc": "C.C.", "numero_doc": "1020304050", "nombres": "MARÍA FERNANDA", "municipio": "Bogotá D.C."}
    ]
    assert type(records[0]) is dict


def test_sql_lookup_many_and_none(sql: SqlConnector) -> None:
    assert sql.call("por_municipio", {"Municipio": "Bogotá D.C."}) == [
        {"numero_doc": "1001234567", "nombres": "VALENTINA"},
        {"numero_doc": "1020304050", "nombres": "MARÍA FERNANDA"},
    ]
    assert sql.call("por_municipio", {"Municipio": "Leticia"}) == []
    # A literal '%' in configured SQL is fine: only the bound parameter varies.
    assert sql.call("con_nombre_como", {"Uno": 1}) == [{"numero_doc": "1020304050"}]


def test_sql_one_without_a_row_is_not_found_naming_the_request(sql: SqlConnector) -> None:
    with fails(LegacyNotFound, FaultCode.ADAPTER_NOT_FOUND, retryable=False) as info:
        sql.call("buscar", {"TipoDoc": "C.C.", "NumeroDoc": "999"})
    assert SISBEN in info.value.falla.message
    assert "NumeroDoc=999" in info.value.falla.message


def test_sql_one_with_several_rows_is_garbage(sql: SqlConnector) -> None:
    with fails(LegacyGarbage, FaultCode.ADAPTER_LEGACY_GARBAGE, retryable=False) as info:
        sql.call("uno_por_municipio", {"Municipio": "Bogotá D.C."})
    assert "varios" in info.value.falla.message


def test_sql_write_commits_in_a_transaction_and_counts_rows(sql: SqlConnector, database: str) -> None:
    assert sql.call("registrar_novedad", {"NumeroDoc": "1020304050", "Novedad": "CAMBIO DE DOMICILIO"}) == [
        {"filas": 1}
    ]
    assert sql.call("mudar", {"Anterior": "Bogotá D.C.", "Nuevo": "Soacha"}) == [{"filas": 2}]
    # A write the database refuses (duplicate key) changes nothing and is permanent.
    with fails(LegacyGarbage, FaultCode.ADAPTER_LEGACY_GARBAGE, retryable=False):
        sql.call("registrar_novedad", {"NumeroDoc": "1020304050", "Novedad": "OTRA"})
    engine = create_engine(database)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT novedad FROM novedades")).scalars().all() == ["CAMBIO DE DOMICILIO"]
        assert connection.execute(text("SELECT count(*) FROM ciudadanos WHERE municipio = 'Soacha'")).scalar() == 2
    engine.dispose()


def test_sql_reads_are_always_rolled_back(sql: SqlConnector) -> None:
    assert sql.call("lectura_con_efecto", {"NumeroDoc": "1020304050"}) == [{"numero_doc": "1020304050"}]
    assert sql.call("buscar", DOC)[0]["nombres"] == "MARÍA FERNANDA"


@pytest.mark.parametrize("attack", ["1' OR '1'='1", "1020304050' --", "'; DROP TABLE ciudadanos; --"])
def test_sql_parameters_are_bound_never_interpolated(sql: SqlConnector, attack: str) -> None:
    with fails(LegacyNotFound, FaultCode.ADAPTER_NOT_FOUND, retryable=False):
        sql.call("buscar", {"TipoDoc": "C.C.", "NumeroDoc": attack})
    assert sql.call("por_municipio", {"Municipio": attack}) == []
    assert len(sql.call("por_municipio", {"Municipio": "Bogotá D.C."})) == 2  # the table is still there


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM ciudadanos WHERE numero_doc = '{NumeroDoc}'",
        "SELECT * FROM ciudadanos WHERE numero_doc = %s",
        "SELECT * FROM ciudadanos WHERE numero_doc = %(NumeroDoc)s",
        "SELECT * FROM ciudadanos WHERE numero_doc = {}",
    ],
)
def test_sql_with_python_placeholders_is_refused_at_construction(statement: str) -> None:
    with pytest.raises(ValueError, match="parámetros con nombre"):
        SqlOperation(statement)


def test_sql_missing_parameter_and_unknown_operation_are_configuration_errors(sql: SqlConnector) -> None:
    with pytest.raises(ValueError, match="NumeroDoc"):
        sql.call("buscar", {"TipoDoc": "C.C."})
    with pytest.raises(ValueError, match="no_existe"):
        sql.call("no_existe", {})


@pytest.mark.parametrize("operation", ["columna_rota", "tabla_rota"])
def test_sql_broken_query_configuration_is_garbage(sql: SqlConnector, operation: str) -> None:
    with fails(LegacyGarbage, FaultCode.ADAPTER_LEGACY_GARBAGE, retryable=False) as info:
        sql.call(operation, DOC)
    assert operation in info.value.falla.message


def test_sql_slow_query_is_interrupted_at_the_timeout(sql: SqlConnector) -> None:
    with within(SLOW + 1.0), fails(LegacyTimeout, FaultCode.ADAPTER_LEGACY_TIMEOUT, retryable=True) as info:
        sql.call("lento", {})
    assert "0,5 segundos" in info.value.falla.message
    # The interrupted statement left the pooled connection usable, with no deadline left behind.
    time.sleep(SLOW)
    assert sql.call("buscar", DOC)[0]["numero_doc"] == "1020304050"


@pytest.mark.postgres
def test_postgresql_down_is_unavailable(postgres_url: str) -> None:
    url = make_url(postgres_url).set(port=closed_port()).render_as_string(hide_password=False)
    with SqlConnector(SISBEN, url, SQL_OPERATIONS, timeout=SLOW) as connector:
        with within(3.0), fails(LegacyUnavailable, FaultCode.ADAPTER_LEGACY_UNAVAILABLE, retryable=True):
            connector.call("buscar", DOC)
        with fails(LegacyUnavailable, FaultCode.ADAPTER_LEGACY_UNAVAILABLE, retryable=True):
            connector.check()


def test_sqlite_missing_or_deleted_file_is_unavailable_and_never_created(tmp_path: Path) -> None:
    unreachable = tmp_path / "no-montada" / "sisben.db"
    with SqlConnector(SISBEN, f"sqlite:///{unreachable}", SQL_OPERATIONS, timeout=SLOW) as connector:
        with fails(LegacyUnavailable, FaultCode.ADAPTER_LEGACY_UNAVAILABLE, retryable=True):
            connector.call("buscar", DOC)
        with fails(LegacyUnavailable, FaultCode.ADAPTER_LEGACY_UNAVAILABLE, retryable=True):
            connector.check()
    path = tmp_path / "sisben.db"
    _fill(f"sqlite:///{path}")
    with SqlConnector(SISBEN, f"sqlite:///{path}", SQL_OPERATIONS, timeout=SLOW) as connector:
        assert connector.call("buscar", DOC)  # a pooled connection now holds the file open
        path.unlink()
        with fails(LegacyUnavailable, FaultCode.ADAPTER_LEGACY_UNAVAILABLE, retryable=True):
            connector.call("buscar", DOC)
        assert not path.exists()
        # Restored from a backup: read again.
        _fill(f"sqlite:///{path}")
        assert connector.call("buscar", DOC)[0]["nombres"] == "MARÍA FERNANDA"
        # Replaced under our feet (a nightly export renamed over it): read the new file, not the old inode.
        export = tmp_path / "export.db"
        _fill(f"sqlite:///{export}")
        with contextlib.closing(sqlite3.connect(export)) as connection, connection:
            connection.execute("UPDATE ciudadanos SET nombres = 'MARÍA F.' WHERE numero_doc = '1020304050'")
        os.replace(export, path)
        assert connector.call("buscar", DOC)[0]["nombres"] == "MARÍA F."


def test_sqlite_locked_database_is_unavailable_within_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "sisben.db"
    _fill(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with SqlConnector(SISBEN, f"sqlite:///{path}", SQL_OPERATIONS, timeout=SLOW) as connector:
            with within(SLOW + 1.0), fails(LegacyUnavailable, FaultCode.ADAPTER_LEGACY_UNAVAILABLE, retryable=True):
                connector.call("registrar_novedad", {"NumeroDoc": "1", "Novedad": "X"})
            holder.execute("ROLLBACK")
            assert connector.call("registrar_novedad", {"NumeroDoc": "1", "Novedad": "X"}) == [{"filas": 1}]
    finally:
        holder.close()


def test_sqlite_file_that_is_not_a_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "sisben.db"
    path.write_bytes(b"esto no es una base de datos " * 100)
    with SqlConnector(SISBEN, f"sqlite:///{path}", SQL_OPERATIONS, timeout=SLOW) as connector, fails(
        LegacyUnavailable, FaultCode.ADAPTER_LEGACY_UNAVAILABLE, retryable=True
    ):
        connector.call("buscar", DOC)


# -- HTTP --------------------------------------------------------------------------------------------

HTTP_OPERATIONS = {
    "consultar": HttpOperation(path="/ciudadanos/{TipoDoc}/{NumeroDoc}"),
    "buscar_por_municipio": HttpOperation(path="/ciudadanos", query=["municipio"], records="datos.ciudadanos"),
    "contar": HttpOperation(path="/ciudadanos", records="total"),
    "mal_configurada": HttpOperation(path="/ciudadanos", records="datos.personas"),
    "reportar_novedad": HttpOperation(method="POST", path="/novedades", body=["TipoDoc", "NumeroDoc", "Novedad"]),
    "novedad_incompleta": HttpOperation(method="POST", path="/novedades", body=["TipoDoc"]),
}


@pytest.fixture(scope="module")
def identity() -> Iterator[BackgroundServer]:
    server = start_background(SAMPLE_PEOPLE)
    try:
        yield server
    finally:
        server.stop()


def set_mode(server: BackgroundServer, mode: str, seconds: float = 3.0) -> None:
    answer = httpx.post(f"{server.url}/_modo", json={"modo": mode, "segundos": seconds}, timeout=5)
    assert answer.status_code == 200, answer.text


@pytest.fixture
def http(identity: BackgroundServer) -> Iterator[HttpConnector]:
    set_mode(identity, "normal")
    with HttpConnector(REGISTRADURIA, identity.url, HTTP_OPERATIONS, timeout=SLOW, check_path="/salud") as conn:
        yield conn
    set_mode(identity, "normal")


def test_http_found_returns_the_legacy_record(http: HttpConnector) -> None:
    assert isinstance(http, Connector)
    http.check()
    assert http.call("consultar", DOC) == [
        {
            "TipoDoc": "C.C.", "NumeroDoc": "1020304050", "Nombres": "MARÍA FERNANDA", "Apellidos": "GÓMEZ RUIZ",
            "FechaNacimiento": "12/04/1990", "Estado": "V", "Municipio": "Bogotá D.C.",
        }
    ]


def test_http_query_string_records_path_and_json_body(http: HttpConnector) -> None:
    found = http.call("buscar_por_municipio", {"municipio": "Bogotá D.C.", "ignorado": "x"})
    assert sorted(r["NumeroDoc"] for r in found) == ["1001234567", "1020304050"]
    assert http.call("buscar_por_municipio", {"municipio": "Leticia"}) == []
    assert http.call("reportar_novedad", {**DOC, "Novedad": "CAMBIO DE DOMICILIO"})[0]["estado"] == "RECIBIDA"


def test_http_not_found_is_a_coded_not_found(http: HttpConnector) -> None:
    with fails(LegacyNotFound, FaultCode.ADAPTER_NOT_FOUND, retryable=False) as info:
        http.call("consultar", {"TipoDoc": "C.C.", "NumeroDoc": "999"})
    assert "NumeroDoc=999" in info.value.falla.message


@pytest.mark.parametrize("number", ["1020304050/../../salud", "..", "1020304050?x=1", "1020304050#a"])
def test_http_path_parameters_are_quoted_as_one_segment(http: HttpConnector, number: str) -> None:
    with fails(LegacyNotFound, FaultCode.ADAPTER_NOT_FOUND, retryable=False):
        http.call("consultar", {"TipoDoc": "C.C.", "NumeroDoc": number})


def test_http_other_4xx_is_garbage_with_the_status(http: HttpConnector) -> None:
    with fails(LegacyGarbage, FaultCode.ADAPTER_LEGACY_GARBAGE, retryable=False) as info:
        http.call("novedad_incompleta", DOC)
    assert "HTTP 422" in info.value.falla.message


def test_http_unexpected_json_shape_is_garbage(http: HttpConnector) -> None:
    with fails(LegacyGarbage, FaultCode.ADAPTER_LEGACY_GARBAGE, retryable=False):
        http.call("contar", {})
    with fails(LegacyGarbage, FaultCode.ADAPTER_LEGACY_GARBAGE, retryable=False) as info:
        http.call("mal_configurada", {})
    assert "datos.personas" in info.value.falla.message


def test_http_slow_service_times_out(http: HttpConnector, identity: BackgroundServer) -> None:
    set_mode(identity, "lento", seconds=3)
    with within(SLOW + 1.0), fails(LegacyTimeout, FaultCode.ADAPTER_LEGACY_TIMEOUT, retryable=True):
        http.call("consultar", DOC)


def test_http_garbage_answer_is_garbage(http: HttpConnector, identity: BackgroundServer) -> None:
    set_mode(identity, "basura")
    with fails(LegacyGarbage, FaultCode.ADAPTER_LEGACY_GARBAGE, retryable=False) as info:
        http.call("consultar", DOC)
    assert "no es JSON" in info.value.falla.message


def test_http_500_is_unavailable_and_retryable(http: HttpConnector, identity: BackgroundServer) -> None:
    set_mode(identity, "error500")
    with fails(LegacyUnavailable, FaultCode.ADAPTER_LEGACY_UNAVAILABLE, retryable=True) as info:
        http.call("consultar", DOC)
    assert "HTTP 500" in info.value.falla.message
    with fails(LegacyUnavailable, FaultCode.ADAPTER_LEGACY_UNAVAILABLE, retryable=True):
        http.check()


def test_http_service_down_is_unavailable() -> None:
    with HttpConnector(REGISTRADURIA, f"http://127.0.0.1:{closed_port()}", HTTP_OPERATIONS, timeout=SLOW) as conn:
        with within(SLOW + 1.0), fails(LegacyUnavailable, FaultCode.ADAPTER_LEGACY_UNAVAILABLE, retryable=True):
            conn.call("consultar", DOC)
        with fails(LegacyUnavailable, FaultCode.ADAPTER_LEGACY_UNAVAILABLE, retryable=True):
            conn.check()


def test_http_service_stopped_between_calls_is_unavailable() -> None:
    server = start_background(SAMPLE_PEOPLE)
    try:
        with HttpConnector(REGISTRADURIA, server.url, HTTP_OPERATIONS, timeout=SLOW) as conn:
            assert conn.call("consultar", DOC)  # a pooled keep-alive connection is open now
            server.stop()
            with within(SLOW + 1.0), fails(
                LegacyUnavailable, FaultCode.ADAPTER_LEGACY_UNAVAILABLE, retryable=True
            ):
                conn.call("consultar", DOC)
    finally:
        server.stop()


SOAP_CONSULTA = (
    '<r:ConsultarCiudadano xmlns:r="urn:registraduria:identidad">'
    "<r:TipoDoc>{TipoDoc}</r:TipoDoc><r:NumeroDoc>{NumeroDoc}</r:NumeroDoc></r:ConsultarCiudadano>"
)
SOAP_OPERATIONS = {
    "consultar": SoapOperation(
        SOAP_CONSULTA, "Ciudadano", action="urn:registraduria:identidad#ConsultarCiudadano", path="/soap/identidad"
    ),
    "incompleta": SoapOperation(
        '<r:ConsultarCiudadano xmlns:r="urn:registraduria:identidad"/>', "Ciudadano", path="/soap/identidad"
    ),
}


@pytest.fixture
def soap(identity: BackgroundServer) -> Iterator[HttpConnector]:
    set_mode(identity, "normal")
    with HttpConnector(REGISTRADURIA, identity.url, SOAP_OPERATIONS, timeout=SLOW) as conn:
        yield conn
    set_mode(identity, "normal")


def test_soap_found_none_and_escaped_parameters(soap: HttpConnector) -> None:
    (record,) = soap.call("consultar", DOC)
    assert record["Nombres"] == "MARÍA FERNANDA" and record["Municipio"] == "Bogotá D.C."
    assert soap.call("consultar", {"TipoDoc": "C.C.", "NumeroDoc": "999"}) == []
    # Markup in a value is escaped text, not structure: the service sees one odd NumeroDoc and finds nothing.
    assert soap.call("consultar", {"TipoDoc": "C.C.", "NumeroDoc": "1</r:NumeroDoc><r:X>&'\""}) == []


def test_soap_faults_are_mapped(soap: HttpConnector, identity: BackgroundServer) -> None:
    with fails(LegacyGarbage, FaultCode.ADAPTER_LEGACY_GARBAGE, retryable=False) as info:
        soap.call("incompleta", {})
    assert "soap:Client" in info.value.falla.message
    set_mode(identity, "error500")
    with fails(LegacyUnavailable, FaultCode.ADAPTER_LEGACY_UNAVAILABLE, retryable=True) as server:
        soap.call("consultar", DOC)
    assert "soap:Server" in server.value.falla.message
    set_mode(identity, "basura")
    with fails(LegacyGarbage, FaultCode.ADAPTER_LEGACY_GARBAGE, retryable=False):
        soap.call("consultar", DOC)
    set_mode(identity, "lento", seconds=3)
    with within(SLOW + 1.0), fails(LegacyTimeout, FaultCode.ADAPTER_LEGACY_TIMEOUT, retryable=True):
        soap.call("consultar", DOC)


def test_soap_body_must_be_well_formed_xml() -> None:
    with pytest.raises(ValueError, match="XML"):
        SoapOperation("<r:Consultar><r:NumeroDoc>{NumeroDoc}</r:Consultar>", "Ciudadano")


def test_http_operation_configuration_is_validated() -> None:
    with pytest.raises(ValueError, match="marcador"):
        HttpOperation(path="/ciudadanos/{NumeroDoc!r}")
    with pytest.raises(ValueError, match="empezar por '/'"):
        HttpOperation(path="ciudadanos")
    with pytest.raises(ValueError, match="Método"):
        HttpOperation(method="TRACE", path="/x")


# -- File drop ---------------------------------------------------------------------------------------


@pytest.fixture
def drop(tmp_path: Path) -> FileDropConnector:
    return FileDropConnector(COLSUBSIDIO, tmp_path / "colsubsidio", settle_seconds=1.0, create=True)


def put(drop: FileDropConnector, name: str, data: bytes, *, age: float = 60.0) -> Path:
    """A file the legacy system dropped in entrada/, written `age` seconds ago."""
    path = drop.folder("entrada") / name
    path.write_bytes(data)
    past = time.time() - age
    os.utime(path, (past, past))
    return path


def listing(drop: FileDropConnector, folder: str) -> list[str]:
    return sorted(p.name for p in drop.folder(folder).iterdir())


EXCEL_CSV = (
    "\ufeffTipoDoc;NumeroDoc;Nombres;Salario\r\n"
    "C.C.;1020304050;MARÍA FERNANDA;2.350.000\r\n"
    "C.C.;79123456;JOSÉ ANTONIO PEÑA;1.300.000\r\n"
    "\r\n"
).encode()


def test_filedrop_check_verifies_folders(drop: FileDropConnector, tmp_path: Path) -> None:
    assert isinstance(drop, Connector)
    drop.check()
    (drop.root / "errores").rmdir()
    with fails(LegacyUnavailable, FaultCode.ADAPTER_LEGACY_UNAVAILABLE, retryable=True) as info:
        drop.check()
    assert "errores/" in info.value.falla.message
    with fails(LegacyUnavailable, FaultCode.ADAPTER_LEGACY_UNAVAILABLE, retryable=True):
        FileDropConnector(COLSUBSIDIO, tmp_path / "sin-montar").check()


def test_filedrop_write_is_atomic_with_bom_and_semicolons(drop: FileDropConnector) -> None:
    records = [
        {"TipoDoc": "C.C.", "NumeroDoc": "1020304050", "Novedad": "AFILIACIÓN; CÓNYUGE"},
        {"TipoDoc": "C.C.", "NumeroDoc": "79123456", "Novedad": None},
    ]
    answer = drop.call("escribir", {"registros": records, "archivo": "novedades fonvivienda"})
    name = answer[0]["archivo"]
    assert name.startswith("novedades_fonvivienda_") and name.endswith(".csv")
    assert listing(drop, "salida") == [name]  # no temporary leftovers
    data = (drop.folder("salida") / name).read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=";"))
    assert rows == [
        ["TipoDoc", "NumeroDoc", "Novedad"],
        ["C.C.", "1020304050", "AFILIACIÓN; CÓNYUGE"],
        ["C.C.", "79123456", ""],
    ]
    single = drop.call("escribir", DOC)[0]["archivo"]
    assert single.startswith("escribir_") and len(listing(drop, "salida")) == 2


def test_filedrop_reader_never_sees_a_partial_file(drop: FileDropConnector) -> None:
    """A legacy reader polling salida/ while we write big files only ever sees complete ones."""
    rows = [{"NumeroDoc": str(n), "Nombres": "Ñ" * 200} for n in range(3000)]
    stop = threading.Event()
    seen: dict[str, int] = {}
    problems: list[str] = []

    def legacy_reader() -> None:
        while not stop.is_set():
            for path in drop.folder("salida").glob("*.csv"):
                with contextlib.suppress(FileNotFoundError):
                    data = path.read_bytes()
                    count = data.count(b"\r\n") - 1
                    seen[path.name] = count
                    if count != len(rows) or not data.endswith(b"\r\n"):
                        problems.append(f"{path.name}: {count} rows")

    reader = threading.Thread(target=legacy_reader, daemon=True)
    reader.start()
    try:
        for _ in range(8):
            drop.call("escribir", {"registros": rows})
    finally:
        stop.set()
        reader.join(10)
    assert not reader.is_alive()
    assert not problems, problems[:3]
    assert seen, "the reader never saw a file"
    assert len(listing(drop, "salida")) == 8
    assert all(not name.startswith(".") for name in listing(drop, "salida"))


def test_filedrop_write_that_cannot_be_encoded_leaves_nothing(tmp_path: Path) -> None:
    latin = FileDropConnector(COLSUBSIDIO, tmp_path / "c", encoding="cp1252", create=True)
    with fails(LegacyGarbage, FaultCode.ADAPTER_LEGACY_GARBAGE, retryable=False):
        latin.call("escribir", {"Nombres": "ANA 😀"})
    assert listing(latin, "salida") == []
    assert latin.call("escribir", {"Nombres": "PEÑA"})  # Latin-1 letters are fine


def test_filedrop_excel_csv_batch_is_taken_and_done(drop: FileDropConnector) -> None:
    put(drop, "afiliados_202405.csv", EXCEL_CSV)
    batches = list(drop.take())
    assert [b.name for b in batches] == ["afiliados_202405.csv"]
    assert batches[0].records == (
        {"TipoDoc": "C.C.", "NumeroDoc": "1020304050", "Nombres": "MARÍA FERNANDA", "Salario": "2.350.000"},
        {"TipoDoc": "C.C.", "NumeroDoc": "79123456", "Nombres": "JOSÉ ANTONIO PEÑA", "Salario": "1.300.000"},
    )
    moved = batches[0].done()
    assert moved == drop.folder("procesados") / "afiliados_202405.csv"
    assert listing(drop, "entrada") == [] and listing(drop, "procesados") == ["afiliados_202405.csv"]
    assert list(drop.take()) == []
    with pytest.raises(RuntimeError, match="ya fue procesado"):
        batches[0].done()
    # The same name delivered again next month is archived beside the first, never over it.
    put(drop, "afiliados_202405.csv", EXCEL_CSV)
    (again,) = drop.take()
    again.done()
    assert len(listing(drop, "procesados")) == 2


def test_filedrop_xml_batch_fields_by_local_name(drop: FileDropConnector) -> None:
    put(drop, "aportes.xml", (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<c:aportes xmlns:c="urn:colsubsidio:aportes">\n'
        b'  <c:aporte periodo="2024-05"><c:NumeroDoc>1020304050</c:NumeroDoc><c:Valor>94000</c:Valor></c:aporte>\n'
        b"  <!-- comentario del sistema -->\n"
        b'  <c:aporte periodo="2024-05"><c:NumeroDoc>79123456</c:NumeroDoc><c:Valor>52000</c:Valor></c:aporte>\n'
        b"</c:aportes>\n"
    ))
    assert list(drop.take()) == []  # default pattern: CSV only
    (batch,) = drop.take("*.xml")
    assert batch.records == (
        {"periodo": "2024-05", "NumeroDoc": "1020304050", "Valor": "94000"},
        {"periodo": "2024-05", "NumeroDoc": "79123456", "Valor": "52000"},
    )
    batch.done()


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("ragged.csv", b"TipoDoc;NumeroDoc\nC.C.;1;extra\n", "la línea 2 tiene 3 campos"),
        ("ansi.csv", "TipoDoc;Nombres\nC.C.;PEÑA\n".encode("cp1252"), "CSV UTF-8"),
        ("comas.csv", b"TipoDoc,NumeroDoc\nC.C.,1\n", "separador"),
        ("vacio.csv", b"", "vacío"),
        ("comilla.csv", b'TipoDoc;Nombres\nC.C.;"PE\xc3\x91A\n', "comilla"),
        ("nulos.csv", b"TipoDoc;Nombres\nC.C.;\x00\x00\n", "nulos"),
        ("afiliados.xlsx", b"PK\x03\x04 no es CSV", "no está soportado"),
        ("roto.xml", b"<aportes><aporte><Valor>1</aporte></aportes>", "no es XML bien formado"),
        ("xxe.xml", b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>', "DOCTYPE"),
    ],
)
def test_filedrop_unreadable_file_goes_to_errores_with_its_reason(
    drop: FileDropConnector, name: str, data: bytes, reason: str
) -> None:
    put(drop, name, data)
    assert list(drop.take("*")) == []
    assert listing(drop, "entrada") == []
    assert listing(drop, "errores") == [name, f"{name}.motivo.txt"]
    assert (drop.folder("errores") / name).read_bytes() == data  # kept intact for the people who fix it
    motive = (drop.folder("errores") / f"{name}.motivo.txt").read_text(encoding="utf-8-sig")
    assert reason in motive, motive
    assert f"Archivo: {name}" in motive and "Motivo: " in motive


def test_filedrop_batch_refused_by_the_adapter_goes_to_errores(drop: FileDropConnector) -> None:
    put(drop, "afiliados.csv", EXCEL_CSV)
    (batch,) = drop.take()
    moved = batch.failed("el NIT del empleador 900123456 no existe en el registro")
    assert moved.parent == drop.folder("errores")
    motive = (drop.folder("errores") / "afiliados.csv.motivo.txt").read_text(encoding="utf-8-sig")
    assert "el NIT del empleador 900123456 no existe" in motive


def test_filedrop_files_still_being_written_are_not_taken(drop: FileDropConnector) -> None:
    fresh = put(drop, "en_curso.csv", EXCEL_CSV, age=0)
    put(drop, ".oculto.csv", EXCEL_CSV)
    put(drop, "copiando.csv.tmp", EXCEL_CSV)
    put(drop, "~$afiliados.csv", EXCEL_CSV)
    assert list(drop.take("*")) == []
    assert listing(drop, "entrada") == [".oculto.csv", "copiando.csv.tmp", "en_curso.csv", "~$afiliados.csv"]
    past = time.time() - 5
    os.utime(fresh, (past, past))
    assert [b.name for b in drop.take("*")] == ["en_curso.csv"]


def test_filedrop_a_file_growing_while_read_is_left_for_later(tmp_path: Path) -> None:
    drop = FileDropConnector(COLSUBSIDIO, tmp_path / "c", settle_seconds=0, create=True)
    path = put(drop, "grande.csv", EXCEL_CSV)
    taken = drop.take()
    original_read = Path.read_bytes

    def read_then_grow(self: Path) -> bytes:
        data = original_read(self)
        if self == path:
            with open(path, "ab") as handle:
                handle.write(b"C.C.;1;ANA;1\r\n")
        return data

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "read_bytes", read_then_grow)
        assert list(taken) == []  # the legacy system was still appending: not taken, not failed
    assert listing(drop, "entrada") == ["grande.csv"]
    (batch,) = drop.take()
    assert len(batch.records) == 3


# -- Python ------------------------------------------------------------------------------------------


def lookup_person(TipoDoc: str, NumeroDoc: str) -> dict[str, str] | None:
    for person in SAMPLE_PEOPLE:
        if (person["TipoDoc"], person["NumeroDoc"]) == (TipoDoc, NumeroDoc):
            return dict(person)
    return None


def raising(error: BaseException) -> Callable[..., Any]:
    def function(**_: Any) -> Any:
        raise error

    return function


@pytest.fixture
def python() -> CallableConnector:
    return CallableConnector(
        REGISTRADURIA,
        {
            "consultar": "tests.integration.test_connectors:lookup_person",
            "por_apellido": lambda Apellidos: [p for p in SAMPLE_PEOPLE if p["Apellidos"] == Apellidos],
            "caido": raising(ConnectionRefusedError(111, "Connection refused")),
            "lento": raising(TimeoutError("timed out")),
            "roto": raising(KeyError("Nombres")),
            "propio": raising(LegacyNotFound(REGISTRADURIA, what="el NUIP 123")),
            "texto": lambda: "OK",
        },
        timeout=2,
    )


def test_python_record_list_and_none(python: CallableConnector) -> None:
    assert isinstance(python, Connector)
    assert python.call("consultar", DOC)[0]["Nombres"] == "MARÍA FERNANDA"
    assert [p["NumeroDoc"] for p in python.call("por_apellido", {"Apellidos": "GÓMEZ RUIZ"})] == [
        "1020304050", "1001234567",
    ]
    assert python.call("por_apellido", {"Apellidos": "NADIE"}) == []
    with fails(LegacyNotFound, FaultCode.ADAPTER_NOT_FOUND, retryable=False) as info:
        python.call("consultar", {"TipoDoc": "C.C.", "NumeroDoc": "999"})
    assert "NumeroDoc=999" in info.value.falla.message


def test_python_exceptions_are_mapped(python: CallableConnector) -> None:
    with fails(LegacyUnavailable, FaultCode.ADAPTER_LEGACY_UNAVAILABLE, retryable=True):
        python.call("caido", {})
    with fails(LegacyTimeout, FaultCode.ADAPTER_LEGACY_TIMEOUT, retryable=True) as timeout:
        python.call("lento", {})
    assert "2 segundos" in timeout.value.falla.message
    with fails(LegacyGarbage, FaultCode.ADAPTER_LEGACY_GARBAGE, retryable=False) as garbage:
        python.call("roto", {})
    assert "KeyError" in garbage.value.falla.message
    with fails(LegacyNotFound, FaultCode.ADAPTER_NOT_FOUND, retryable=False) as own:
        python.call("propio", {})
    assert "el NUIP 123" in own.value.falla.message
    with fails(LegacyGarbage, FaultCode.ADAPTER_LEGACY_GARBAGE, retryable=False):
        python.call("texto", {})


def test_python_bad_reference_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="no_existe"):
        CallableConnector(REGISTRADURIA, {"x": "tests.integration.test_connectors:no_existe"})
    with pytest.raises(ValueError, match="importar"):
        CallableConnector(REGISTRADURIA, {"x": "modulo_que_no_existe:f"})


# -- connector_from_config ---------------------------------------------------------------------------


def test_config_builds_each_connector(tmp_path: Path, identity: BackgroundServer) -> None:
    _fill(f"sqlite:///{tmp_path / 'sisben.db'}")
    sql = connector_from_config(SISBEN, {
        "type": "sql", "url": f"sqlite:///{tmp_path / 'sisben.db'}", "timeout": 2,
        "operations": {"buscar": {"sql": SQL_OPERATIONS["buscar"].sql, "one": True},
                       "todos": "SELECT numero_doc FROM ciudadanos"},
    }, base_dir=tmp_path)
    assert isinstance(sql, SqlConnector) and sql.call("buscar", DOC)[0]["nombres"] == "MARÍA FERNANDA"
    assert len(sql.call("todos", {})) == 3
    sql.close()

    http = connector_from_config(REGISTRADURIA, {
        "type": "http", "base_url": identity.url, "check_path": "/salud", "headers": {"X-Canal": "gel"},
        "operations": {"consultar": {"path": "/ciudadanos/{TipoDoc}/{NumeroDoc}"},
                       "buscar": {"path": "/ciudadanos", "query": ["municipio"], "records": "datos.ciudadanos"}},
    }, base_dir=tmp_path)
    assert isinstance(http, HttpConnector)
    http.check()
    assert http.call("consultar", DOC)[0]["Estado"] == "V"
    http.close()

    soap = connector_from_config(REGISTRADURIA, {
        "type": "http", "base_url": identity.url,
        "operations": {"consultar": {"path": "/soap/identidad", "soap_body": SOAP_CONSULTA, "records": "Ciudadano",
                                     "soap_action": "urn:registraduria:identidad#ConsultarCiudadano"}},
    }, base_dir=tmp_path)
    assert soap.call("consultar", DOC)[0]["Apellidos"] == "GÓMEZ RUIZ"
    soap.close()

    drop = connector_from_config(COLSUBSIDIO, {
        "type": "filedrop", "root": "var/cajas/colsubsidio", "create": True, "writes": {"novedades": ["NumeroDoc"]},
    }, base_dir=tmp_path)
    assert isinstance(drop, FileDropConnector) and drop.root == tmp_path / "var/cajas/colsubsidio"
    drop.check()
    assert drop.call("novedades", {"NumeroDoc": "1"})[0]["archivo"].startswith("novedades_")

    python = connector_from_config(REGISTRADURIA, {
        "type": "python", "functions": {"consultar": "tests.integration.test_connectors:lookup_person"},
    }, base_dir=tmp_path)
    assert isinstance(python, CallableConnector) and python.call("consultar", DOC)


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"url": "sqlite://"}, "type"),
        ({"type": "ftp"}, "type"),
        ({"type": "sql", "operations": {"a": "SELECT 1"}}, "url"),
        ({"type": "sql", "url": "sqlite://", "timout": 5, "operations": {"a": "SELECT 1"}}, "timout"),
        ({"type": "sql", "url": "sqlite://", "timeout": -1, "operations": {"a": "SELECT 1"}}, "timeout"),
        ({"type": "sql", "url": "sqlite://", "operations": {"a": {"sql": "SELECT 1", "one": "si"}}},
         "operations.a.one"),
        ({"type": "sql", "url": "sqlite://", "operations": {"a": "SELECT %s"}}, "operations.a.sql"),
        ({"type": "sql", "url": "oracle://x", "operations": {"a": "SELECT 1"}}, "url"),
        ({"type": "http", "base_url": "http://x", "operations": {}}, "operations"),
        ({"type": "http", "base_url": "http://x", "operations": {"a": {"path": "/x", "query": "q"}}},
         "operations.a.query"),
        ({"type": "http", "base_url": "ftp://x", "operations": {"a": {"path": "/x"}}}, "base_url"),
        ({"type": "http", "base_url": "http://x", "operations": {"a": {"soap_body": "<a>", "records": "b"}}},
         "operations.a.soap_body"),
        ({"type": "http", "base_url": "http://x", "operations": {"a": {"soap_body": "<a/>"}}}, "operations.a.records"),
        ({"type": "http", "base_url": "http://x", "operations": {"a": {"soap_body": "<a/>", "records": "b",
                                                                       "method": "GET"}}}, "operations.a.method"),
        ({"type": "filedrop"}, "root"),
        ({"type": "filedrop", "root": "x", "delimiter": ";;"}, "delimiter"),
        ({"type": "python", "functions": {"a": 3}}, "functions"),
        ({"type": "python", "functions": {"a": "os:no_existe"}}, "functions"),
    ],
)
def test_bad_config_is_a_spanish_value_error_naming_the_key(
    tmp_path: Path, config: dict[str, Any], key: str
) -> None:
    with pytest.raises(ValueError, match="Configuración del conector") as info:
        connector_from_config(SISBEN, config, base_dir=tmp_path)
    assert f"'{key}'" in str(info.value) or f"{key}:" in str(info.value), str(info.value)


def test_a_write_that_starts_with_with_reports_its_row_count_on_sqlite(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    url = f"sqlite:///{tmp_path / 'cte.db'}"
    with create_engine(url).begin() as connection:
        connection.execute(text("CREATE TABLE t (a INTEGER PRIMARY KEY)"))
    connector = SqlConnector("CO/GOB/899999011", url, {"insertar": SqlOperation(
        "WITH nuevo AS (SELECT :a AS a) INSERT OR IGNORE INTO t SELECT a FROM nuevo", write=True)})
    try:
        assert connector.call("insertar", {"a": 1}) == [{"filas": 1}]
        assert connector.call("insertar", {"a": 1}) == [{"filas": 0}], "a repeated insert changes nothing"
    finally:
        connector.close()
