"""Seeded legacy data for the environmental-licence and health-authorisation chains: what each entity's
own system holds before the platform arrives.

Deterministic (fixed records plus a seeded generator), realistic Colombian data, and every system keeps it
its own way — that is what the adapters bridge:

- ANLA (`anla.db`, SQLite): expedientes with their payment reference, the tariff table the evaluation
  charge is liquidated with (see `adapters/anla/tarifas.py` for the formula), the bank reconciliation of
  payments, the administrative acts it issued (autos, technical concepts, resolutions) with their
  obligations, the Gaceta Ambiental publications, and the obligation templates per sector. Sector codes are
  ANLA's own (`ENE`, `MIN`…), dates ISO text.
- ACH Colombia - PSE (`recaudo.json`, served as JSON by `adapters.recaudo.pse_app`): transactions by
  payment reference, money as Colombian text (`187.450.300,00`), dates `dd/mm/yyyy hh:mm:ss`, states
  `OK` / `PENDING` / `FAILED`.
- MinInterior, Dirección de la Autoridad Nacional de Consulta Previa (`mininterior.db`): ethnic communities
  registered with the extent (bounding box, WGS84) of their territory as exported from its GIS, legacy type
  codes (`RI` resguardo indígena, `CC` consejo comunitario…), and the certifications it issued.
- Parques Nacionales, RUNAP (`parques.db`): protected areas with their category code (`PNN`, `RFP`, `DMI`,
  `PNR`) and their boundary as an ordered vertex table (simplified convex outlines, WGS84).
- ADRES, BDUA (`adres.db`): people (entity-B names: all given names in one column, each surname in its
  own), affiliation periods with compact dates (`yyyymmdd`), one-letter codes and the EPS catalogue.
- EPS Sanitas (`eps_sanitas.db`): its affiliates with their income band, the CUPS procedures it covers
  (plan de beneficios, high cost, maximum quantity, reference price), this year's cuotas and copagos, and
  the authorisations it has issued (services packed as `883512x1;890380x1`, as its old system does).

The records of the sample messages (schemas/samples/valid) are always included, so the samples find
them: expediente LAV0045-00-2026 with its acts, payment and certification, and the health chain's patient
79845123 (JUAN CARLOS PÉREZ MORALES in the BDUA, as the verificarDerechos sample shows).

Run `python -m adapters.legacy.seed_ambiental_salud var/legacy` to write them where the adapters' default
configuration looks.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import random
import sqlite3
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from broker.gelxml.validation import nit_check_digit

__all__ = [
    "ADRES_PEOPLE",
    "EXPEDIENTES",
    "SAMPLE_EXPEDIENTE",
    "Expediente",
    "SeededAmbientalSalud",
    "seed",
]

SAMPLE_EXPEDIENTE = "LAV0045-00-2026"


# -- ANLA ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expediente:
    number: str
    radicado: str
    project: str
    applicant: str
    applicant_nit: str
    sector: str
    municipalities: str
    filed: dt.date
    payment_reference: str
    state: str
    project_value: int


EXPEDIENTES: tuple[Expediente, ...] = (
    Expediente(SAMPLE_EXPEDIENTE, "AMB-2026-000045", "Parque Solar Fotovoltaico Alta Guajira 250 MW",
               "ENERGÍA ANDINA DEL CAUCA S.A.S. E.S.P.", "900654328", "ENE", "44847;44430", dt.date(2026, 11, 20),
               "ANLA-LIQ-2026-004512", "EN_EVALUACION", 980_000_000_000),
    Expediente("LAV0061-00-2026", "AMB-2026-000061", "Ampliación de la explotación subterránea de carbón El Recuerdo",
               "CARBONES DE SAMACÁ S.A.S.", "901345672", "MIN", "15646", dt.date(2026, 11, 3),
               "ANLA-LIQ-2026-004538", "PAGADO", 70_000_000_000),
    Expediente("LAV0072-00-2026", "AMB-2026-000072", "Línea de transmisión Guavio - Nueva Esperanza 230 kV",
               "TRANSMISORA DEL ORIENTE S.A. E.S.P.", "900874213", "ENE", "25297;25377", dt.date(2026, 11, 10),
               "ANLA-LIQ-2026-004551", "PENDIENTE_PAGO", 72_000_000_000),
    Expediente("LAV0079-00-2026", "AMB-2026-000079", "Variante vial La Calera - Guasca (segunda calzada)",
               "CONCESIÓN VIAL SABANA NORTE S.A.S.", "901102938", "INF", "25377;25322", dt.date(2026, 11, 12),
               "ANLA-LIQ-2026-004560", "PAGADO", 58_000_000_000),
    Expediente("LAV0018-00-2026", "AMB-2026-000018", "Bloque de perforación exploratoria VMM-47",
               "HIDROCARBUROS DEL MAGDALENA MEDIO S.A.S.", "900512347", "HID", "68081", dt.date(2026, 3, 2),
               "ANLA-LIQ-2026-004101", "LICENCIADO", 460_000_000_000),
    Expediente("LAV0027-00-2026", "AMB-2026-000027", "Planta de formulación de plaguicidas Malambo",
               "AGROINSUMOS DEL CARIBE S.A.", "890114562", "AGQ", "08433", dt.date(2026, 5, 14),
               "ANLA-LIQ-2026-004230", "EN_EVALUACION", 9_500_000_000),
)

# sector code, name, useful life of a licence in years (vigencia of a resolution granting it)
SECTORS = (
    ("HID", "Hidrocarburos", 25),
    ("MIN", "Minería", 20),
    ("ENE", "Energía", 30),
    ("INF", "Infraestructura", 30),
    ("AGQ", "Agroquímicos", 10),
)

TARIFF_NORM = "Resolución ANLA de tarifas vigente"
# per sector: fixed charge of the first two ranges, per-mille rate of range 2 (over 2.000 millones) and of
# range 3 (over 100.000 millones); the fixed charge of range 3 keeps the tariff continuous.
_TARIFF_PARAMETERS = {
    "HID": (10_420_500, Decimal("0.9"), Decimal("0.15")),
    "MIN": (9_675_800, Decimal("0.8"), Decimal("0.14")),
    "ENE": (8_850_300, Decimal("0.7"), Decimal("0.125")),
    "INF": (7_930_100, Decimal("0.6"), Decimal("0.11")),
    "AGQ": (5_214_600, Decimal("0.5"), Decimal("0.09")),
}
_RANGE_2 = 2_000_000_000
_RANGE_3 = 100_000_000_000


def tariff_rows() -> list[tuple[object, ...]]:
    """(cod_sector, rango, valor_desde, valor_hasta, cargo_fijo, tasa_por_mil, norma) for every sector."""
    rows: list[tuple[object, ...]] = []
    for sector, (fixed, rate_2, rate_3) in _TARIFF_PARAMETERS.items():
        fixed_3 = int(fixed + (_RANGE_3 - _RANGE_2) * rate_2 / 1000)
        rows += [
            (sector, 1, 0, _RANGE_2, fixed, "0", TARIFF_NORM),
            (sector, 2, _RANGE_2, _RANGE_3, fixed, str(rate_2), TARIFF_NORM),
            (sector, 3, _RANGE_3, None, fixed_3, str(rate_3), TARIFF_NORM),
        ]
    return rows


# (ref_pago, num_autorizacion (CUS), valor, fecha y hora del pago): payments the bank reconciliation
# confirmed to ANLA. LAV0072's payment is still pending at PSE, so it is not here.
RECONCILED_PAYMENTS = (
    ("ANLA-LIQ-2026-004512", "PSE2026112300483921", "187450300.00", "2026-11-23 09:47:31"),
    ("ANLA-LIQ-2026-004538", "PSE2026110600412877", "64075800.00", "2026-11-06 15:12:09"),
    ("ANLA-LIQ-2026-004560", "PSE2026111800457310", "41530100.00", "2026-11-18 11:03:54"),
    ("ANLA-LIQ-2026-004101", "PSE2026030500110342", "152620500.00", "2026-03-05 10:21:40"),
    ("ANLA-LIQ-2026-004230", "PSE2026052100187765", "8964600.00", "2026-05-21 16:45:02"),
)

_ACT_COLUMNS = ("num_acto", "num_expediente", "tipo_acto", "anio", "consecutivo", "nom_tipo_acto", "fecha_acto",
                "archivo", "formato", "tamano_bytes", "hash_sha256", "uri", "viable", "decision", "vigencia_anios",
                "acto_soporte", "texto")


def _act(number: str, expediente: str, kind: str, name: str, day: str, file: str, size: int, digest: str,
         uri: str, *, viable: int | None = None, decision: str | None = None, years: int | None = None,
         support: str | None = None) -> tuple[object, ...]:
    _prefix, year, consecutive = number.split("-")
    return (number, expediente, kind, int(year), int(consecutive), name, day, file, "application/pdf", size, digest,
            uri, viable, decision, years, support, None)


def _digest(text: str) -> str:
    """A stand-in SHA-256 (base64) for a historical document the seed does not hold."""
    return base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


_VITAL = "https://vital.anla.gov.co/expedientes"
ACTS: tuple[tuple[object, ...], ...] = (
    # The sample chain's acts (schemas/samples/valid), as ANLA recorded them.
    _act("AUTO-2026-08734", SAMPLE_EXPEDIENTE, "AUTO", "Auto de inicio de trámite de licencia ambiental",
         "2026-11-26", "Auto-08734-2026-LAV0045-00-2026.pdf", 286412,
         "DHozrRAi1XdQpuskPwDxRAsYEfbYXoXvpUaL1lW3J/Y=", f"{_VITAL}/{SAMPLE_EXPEDIENTE}/actos/Auto-08734-2026.pdf"),
    _act("CT-2027-01123", SAMPLE_EXPEDIENTE, "CONCEPTO", "Concepto técnico de evaluación", "2027-03-05",
         "Concepto-Tecnico-01123-2027.pdf", 2245890, "+GtK6tIfsKw4QA9MfruxrhGDleWGUO7ega1dz7tXvLU=",
         f"{_VITAL}/{SAMPLE_EXPEDIENTE}/actos/Concepto-Tecnico-01123-2027.pdf", viable=1),
    _act("RES-2027-00512", SAMPLE_EXPEDIENTE, "RESOLUCION", "Resolución de otorgamiento de licencia ambiental",
         "2027-03-19", "Resolucion-00512-2027-LAV0045-00-2026.pdf", 1523877,
         "xWbHUCSIgM0/8fKA8CwwwPye64ZbYBf4CIw/WN7PeVE=",
         f"{_VITAL}/{SAMPLE_EXPEDIENTE}/actos/Resolucion-00512-2027.pdf", decision="OTORGAR", years=30,
         support="CT-2027-01123"),
    # Earlier work of the year: the numbering continues from here.
    _act("AUTO-2026-08733", "LAV0027-00-2026", "AUTO", "Auto de inicio de trámite de licencia ambiental",
         "2026-05-28", "Auto-08733-2026-LAV0027-00-2026.pdf", 251003,
         _digest("AUTO-2026-08733"), f"{_VITAL}/LAV0027-00-2026/actos/Auto-08733-2026.pdf"),
    _act("AUTO-2026-08102", "LAV0018-00-2026", "AUTO", "Auto de inicio de trámite de licencia ambiental",
         "2026-03-09", "Auto-08102-2026-LAV0018-00-2026.pdf", 244871,
         _digest("AUTO-2026-08102"), f"{_VITAL}/LAV0018-00-2026/actos/Auto-08102-2026.pdf"),
    _act("CT-2026-01587", "LAV0018-00-2026", "CONCEPTO", "Concepto técnico de evaluación", "2026-08-14",
         "Concepto-Tecnico-01587-2026.pdf", 1984322, _digest("CT-2026-01587"),
         f"{_VITAL}/LAV0018-00-2026/actos/Concepto-Tecnico-01587-2026.pdf", viable=1),
    _act("RES-2026-00941", "LAV0018-00-2026", "RESOLUCION", "Resolución de otorgamiento de licencia ambiental",
         "2026-09-01", "Resolucion-00941-2026-LAV0018-00-2026.pdf", 1387230,
         _digest("RES-2026-00941"), f"{_VITAL}/LAV0018-00-2026/actos/Resolucion-00941-2026.pdf",
         decision="OTORGAR", years=25, support="CT-2026-01587"),
)

OBLIGATIONS = (
    ("CT-2027-01123", 1, "Protocolizar la consulta previa con las comunidades Wayuu certificadas antes del inicio de "
                         "la etapa de construcción."),
    ("CT-2027-01123", 2, "Ejecutar el plan de compensación del bosque seco tropical en 312 ha y reportar su avance en "
                         "los informes de cumplimiento ambiental semestrales."),
    ("CT-2027-01123", 3, "Implementar el programa de monitoreo de avifauna y quirópteros durante los tres primeros "
                         "años de operación."),
    ("CT-2026-01587", 1, "Presentar el plan de manejo de aguas de producción y su disposición final antes de la "
                         "perforación del primer pozo."),
)

# (cod_sector or '*', condición, orden, texto): the obligations a viable concept proposes.
OBLIGATION_TEMPLATES = (
    ("*", "SIEMPRE", 1, "Presentar informes de cumplimiento ambiental (ICA) semestrales durante la construcción y "
                        "anuales durante la operación."),
    ("*", "CONSULTA_PREVIA", 2, "Protocolizar la consulta previa con las comunidades étnicas certificadas por el "
                                "Ministerio del Interior antes del inicio de la etapa de construcción."),
    ("ENE", "SIEMPRE", 3, "Implementar el programa de monitoreo de avifauna y quirópteros durante los tres primeros "
                          "años de operación."),
    ("MIN", "SIEMPRE", 3, "Ejecutar el programa de manejo de aguas de mina y monitorear trimestralmente la calidad del "
                          "agua en los cuerpos receptores."),
    ("MIN", "SIEMPRE", 4, "Constituir la garantía para el cierre y abandono de la mina conforme al plan aprobado."),
    ("INF", "SIEMPRE", 3, "Ejecutar el plan de compensación por aprovechamiento forestal en una proporción de 1:4 "
                          "dentro de la misma cuenca."),
    ("HID", "SIEMPRE", 3, "Presentar el plan de manejo de aguas de producción y su disposición final antes de la "
                          "perforación del primer pozo."),
    ("AGQ", "SIEMPRE", 3, "Implementar el plan de gestión de residuos peligrosos y de envases vacíos de plaguicidas."),
)

PUBLICATIONS = (
    ("GA-2027-0058", 2027, 58, "RES-2027-00512", SAMPLE_EXPEDIENTE, "2027-03-22",
     "https://www.anla.gov.co/gaceta-ambiental/2027/marzo/GA-2027-0058",
     "Por la cual se otorga licencia ambiental a ENERGÍA ANDINA DEL CAUCA S.A.S. E.S.P., NIT 900654328-1, para el "
     "proyecto Parque Solar Fotovoltaico Alta Guajira 250 MW."),
    ("GA-2026-0412", 2026, 412, "RES-2026-00941", "LAV0018-00-2026", "2026-09-03",
     "https://www.anla.gov.co/gaceta-ambiental/2026/septiembre/GA-2026-0412",
     "Por la cual se otorga licencia ambiental a HIDROCARBUROS DEL MAGDALENA MEDIO S.A.S. para el Bloque de "
     "perforación exploratoria VMM-47."),
)


def _seed_anla(path: Path) -> None:
    with _database(path) as db:
        db.executescript("""
            CREATE TABLE sectores (cod_sector TEXT PRIMARY KEY, nombre TEXT NOT NULL, vida_util_anios INTEGER NOT NULL);
            CREATE TABLE tarifas (cod_sector TEXT NOT NULL REFERENCES sectores, rango INTEGER NOT NULL,
                valor_desde INTEGER NOT NULL, valor_hasta INTEGER, cargo_fijo INTEGER NOT NULL,
                tasa_por_mil TEXT NOT NULL, norma TEXT NOT NULL, PRIMARY KEY (cod_sector, rango));
            CREATE TABLE expedientes (num_expediente TEXT PRIMARY KEY, radicado TEXT NOT NULL UNIQUE,
                nombre_proyecto TEXT NOT NULL, solicitante TEXT NOT NULL, nit_solicitante TEXT NOT NULL,
                cod_sector TEXT NOT NULL REFERENCES sectores, municipios TEXT NOT NULL, fecha_radicacion TEXT NOT NULL,
                ref_pago TEXT NOT NULL UNIQUE, estado TEXT NOT NULL, valor_proyecto INTEGER NOT NULL);
            CREATE TABLE pagos_conciliados (ref_pago TEXT NOT NULL, num_autorizacion TEXT NOT NULL, valor TEXT NOT NULL,
                fecha_pago TEXT NOT NULL, PRIMARY KEY (ref_pago, num_autorizacion));
            CREATE TABLE actos (num_acto TEXT PRIMARY KEY, num_expediente TEXT NOT NULL REFERENCES expedientes,
                tipo_acto TEXT NOT NULL, anio INTEGER NOT NULL, consecutivo INTEGER NOT NULL,
                nom_tipo_acto TEXT NOT NULL, fecha_acto TEXT NOT NULL, archivo TEXT, formato TEXT, tamano_bytes INTEGER,
                hash_sha256 TEXT, uri TEXT, viable INTEGER, decision TEXT, vigencia_anios INTEGER, acto_soporte TEXT,
                texto TEXT, UNIQUE (num_expediente, tipo_acto), UNIQUE (tipo_acto, anio, consecutivo));
            CREATE TABLE obligaciones (num_acto TEXT NOT NULL REFERENCES actos, orden INTEGER NOT NULL,
                texto TEXT NOT NULL, PRIMARY KEY (num_acto, orden));
            CREATE TABLE plantillas_obligacion (cod_sector TEXT NOT NULL, condicion TEXT NOT NULL,
                orden INTEGER NOT NULL, texto TEXT NOT NULL);
            CREATE TABLE publicaciones (num_boletin TEXT PRIMARY KEY, anio INTEGER NOT NULL,
                consecutivo INTEGER NOT NULL, num_acto TEXT NOT NULL UNIQUE, num_expediente TEXT NOT NULL,
                fecha_publicacion TEXT NOT NULL, uri TEXT NOT NULL, extracto TEXT NOT NULL, UNIQUE (anio, consecutivo));
        """)
        db.executemany("INSERT INTO sectores VALUES (?, ?, ?)", SECTORS)
        db.executemany("INSERT INTO tarifas VALUES (?, ?, ?, ?, ?, ?, ?)", tariff_rows())
        db.executemany("INSERT INTO expedientes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       [(e.number, e.radicado, e.project, e.applicant, e.applicant_nit, e.sector, e.municipalities,
                         e.filed.isoformat(), e.payment_reference, e.state, e.project_value) for e in EXPEDIENTES])
        db.executemany("INSERT INTO pagos_conciliados VALUES (?, ?, ?, ?)", RECONCILED_PAYMENTS)
        db.executemany(f"INSERT INTO actos ({', '.join(_ACT_COLUMNS)}) VALUES ({', '.join('?' * len(_ACT_COLUMNS))})",
                       ACTS)
        db.executemany("INSERT INTO obligaciones VALUES (?, ?, ?)", OBLIGATIONS)
        db.executemany("INSERT INTO plantillas_obligacion VALUES (?, ?, ?, ?)", OBLIGATION_TEMPLATES)
        db.executemany("INSERT INTO publicaciones VALUES (?, ?, ?, ?, ?, ?, ?, ?)", PUBLICATIONS)


# -- ACH Colombia - PSE --------------------------------------------------------------------------------------

BANKS = {"1007": "BANCOLOMBIA", "1051": "BANCO DAVIVIENDA", "1001": "BANCO DE BOGOTÁ", "1013": "BBVA COLOMBIA",
         "1019": "SCOTIABANK COLPATRIA", "1052": "BANCO AV VILLAS"}


def _transaction(reference: str, cus: str, state: str, value: str, bank: str, when: str) -> dict[str, str]:
    return {"referencia": reference, "cus": cus, "estado": state, "valor": value, "medio": "PSE",
            "codigoBanco": bank, "nombreBanco": BANKS[bank], "fechaTransaccion": when, "convenio": "ANLA-EVALUACION"}


def pse_transactions() -> list[dict[str, str]]:
    """The gateway's transactions (one reference may have several attempts)."""
    return [
        _transaction("ANLA-LIQ-2026-004512", "PSE2026112300483921", "OK", "187.450.300,00", "1007",
                     "23/11/2026 09:47:31"),
        _transaction("ANLA-LIQ-2026-004538", "PSE2026110600412560", "FAILED", "64.075.800,00", "1051",
                     "06/11/2026 14:58:12"),
        _transaction("ANLA-LIQ-2026-004538", "PSE2026110600412877", "OK", "64.075.800,00", "1051",
                     "06/11/2026 15:12:09"),
        _transaction("ANLA-LIQ-2026-004551", "PSE2026112300489015", "PENDING", "57.850.300,00", "1001",
                     "23/11/2026 08:12:45"),
        _transaction("ANLA-LIQ-2026-004560", "PSE2026111800457310", "OK", "41.530.100,00", "1013",
                     "18/11/2026 11:03:54"),
        _transaction("ANLA-LIQ-2026-004101", "PSE2026030500110342", "OK", "152.620.500,00", "1019",
                     "05/03/2026 10:21:40"),
        _transaction("ANLA-LIQ-2026-004230", "PSE2026052100187765", "OK", "8.964.600,00", "1052",
                     "21/05/2026 16:45:02"),
        _transaction("ANLA-LIQ-2026-004577", "PSE2026112000471102", "FAILED", "12.406.900,00", "1007",
                     "20/11/2026 17:30:08"),
    ]


# -- MinInterior ---------------------------------------------------------------------------------------------

# (nombre, tipo, pueblo, municipios, lat_min, lat_max, lon_min, lon_max, acto de reconocimiento)
COMMUNITIES = (
    ("Resguardo Indígena Wayuu de la Alta y Media Guajira - comunidad Jepira", "RI", "Wayuu", "44847",
     11.470, 11.510, -72.290, -72.250, "Resolución INCORA 015 de 1984"),
    ("Resguardo Indígena Wayuu de la Alta y Media Guajira - comunidad Kasichi", "RI", "Wayuu", "44847;44430",
     11.440, 11.470, -72.230, -72.190, "Resolución INCORA 015 de 1984"),
    ("Resguardo Indígena Wayuu de la Alta y Media Guajira - comunidad Walerpa", "RI", "Wayuu", "44847",
     11.700, 11.750, -72.100, -72.050, "Resolución INCORA 015 de 1984"),
    ("Resguardo Indígena Wayuu de Lomamato", "RI", "Wayuu", "44378", 11.040, 11.080, -72.790, -72.740,
     "Resolución INCORA 089 de 1994"),
    ("Resguardo Indígena Arhuaco de la Sierra Nevada", "RI", "Arhuaco", "20001;47053", 10.450, 10.900, -73.900,
     -73.450, "Resolución INCORA 078 de 1983"),
    ("Consejo Comunitario de Comunidades Negras de Robles", "CC", "Afrocolombiano", "44090", 11.180, 11.230, -73.350,
     -73.290, "Resolución INCODER 1234 de 2012"),
    ("Resguardo Indígena de Kokonuko", "RI", "Kokonuko", "19532", 2.300, 2.380, -76.550, -76.450,
     "Resolución INCORA 047 de 1993"),
    ("Consejo Comunitario del Río Yurumanguí", "CC", "Afrocolombiano", "76109", 3.250, 3.450, -77.200, -76.900,
     "Resolución INCORA 1131 de 2000"),
    ("Consejo Comunitario Mayor de la Asociación Campesina Integral del Atrato (ACIA)", "CC", "Afrocolombiano",
     "27001;27615", 5.700, 6.300, -76.900, -76.500, "Resolución INCORA 04566 de 1997"),
    ("Comunidad Raizal del Archipiélago de San Andrés, Providencia y Santa Catalina", "RZ", "Raizal", "88001;88564",
     12.480, 13.400, -81.750, -81.340, "Constitución Política, artículo 310"),
    ("Consejo Comunitario Ma-Kankamaná de San Basilio de Palenque", "PQ", "Palenquero", "13433", 10.080, 10.120,
     -75.220, -75.180, "Resolución INCODER 0466 de 2012"),
    ("Kumpania Rom de Girón", "KR", "Rom", "68307", 7.050, 7.080, -73.190, -73.150, "Decreto 2957 de 2010"),
    ("Resguardo Indígena Muisca de Cota", "RI", "Muisca", "25214", 4.790, 4.840, -74.120, -74.080,
     "Resolución INCORA 028 de 1916 (reconstituido 2006)"),
)

# (num_certificacion, anio, consecutivo, num_expediente, fecha, procede, archivo, tamano, hash, uri)
CERTIFICATIONS = (
    ("ST-1487-2026", 2026, 1487, SAMPLE_EXPEDIENTE, "2026-12-02", 1, "ST-1487-2026-procedencia-consulta-previa.pdf",
     198544, "6MgNyA+0aIkhz1BEVh0PMMMngz3N8lxxsn1/EfrCe6A=",
     "https://www.mininterior.gov.co/consultaprevia/certificaciones/ST-1487-2026.pdf"),
    ("ST-1486-2026", 2026, 1486, "LAV0018-00-2026", "2026-03-20", 0,
     "ST-1486-2026-no-procedencia-consulta-previa.pdf", 174210, _digest("ST-1486-2026"),
     "https://www.mininterior.gov.co/consultaprevia/certificaciones/ST-1486-2026.pdf"),
)


def _seed_mininterior(path: Path) -> None:
    with _database(path) as db:
        db.executescript("""
            CREATE TABLE comunidades (id_comunidad INTEGER PRIMARY KEY, nombre TEXT NOT NULL, tipo TEXT NOT NULL,
                pueblo TEXT NOT NULL, municipios TEXT NOT NULL, lat_min REAL NOT NULL, lat_max REAL NOT NULL,
                lon_min REAL NOT NULL, lon_max REAL NOT NULL, acto_reconocimiento TEXT NOT NULL,
                vigente INTEGER NOT NULL DEFAULT 1);
            CREATE TABLE certificaciones (num_certificacion TEXT PRIMARY KEY, anio INTEGER NOT NULL,
                consecutivo INTEGER NOT NULL, num_expediente TEXT NOT NULL UNIQUE, fecha TEXT NOT NULL,
                procede_consulta INTEGER NOT NULL, archivo TEXT, tamano_bytes INTEGER, hash_sha256 TEXT, uri TEXT,
                texto TEXT, UNIQUE (anio, consecutivo));
        """)
        db.executemany("INSERT INTO comunidades (nombre, tipo, pueblo, municipios, lat_min, lat_max, lon_min, lon_max, "
                       "acto_reconocimiento) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", COMMUNITIES)
        db.executemany("INSERT INTO certificaciones (num_certificacion, anio, consecutivo, num_expediente, fecha, "
                       "procede_consulta, archivo, tamano_bytes, hash_sha256, uri) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", CERTIFICATIONS)


# -- Parques Nacionales (RUNAP) ------------------------------------------------------------------------------

# (cod_runap, nombre, categoria, acto de declaratoria, hectáreas declaradas, vertices [(lat, lon)…]):
# simplified convex outlines of the real areas.
PROTECTED_AREAS: tuple[tuple[str, str, str, str, float, tuple[tuple[float, float], ...]], ...] = (
    ("7", "Parque Nacional Natural Macuira", "PNN", "Resolución 470 de 1977", 25000.0,
     ((12.240, -71.420), (12.240, -71.300), (12.120, -71.270), (12.080, -71.360), (12.130, -71.430))),
    ("88", "Parque Nacional Natural Bahía Portete - Kaurrele", "PNN", "Resolución 2096 de 2014", 14080.0,
     ((12.280, -71.990), (12.280, -71.880), (12.170, -71.880), (12.170, -71.990))),
    ("4", "Parque Nacional Natural Sierra Nevada de Santa Marta", "PNN", "Acuerdo 25 de 1977", 383000.0,
     ((11.100, -73.900), (11.050, -73.350), (10.600, -73.300), (10.450, -73.700), (10.700, -74.050))),
    ("5", "Parque Nacional Natural Tayrona", "PNN", "Resolución 191 de 1964", 19400.0,
     ((11.350, -74.200), (11.350, -73.900), (11.270, -73.900), (11.250, -74.120))),
    ("25", "Parque Nacional Natural Chingaza", "PNN", "Acuerdo 30 de 1977", 76600.0,
     ((4.780, -73.850), (4.760, -73.620), (4.550, -73.500), (4.330, -73.620), (4.380, -73.900), (4.600, -73.950))),
    ("26", "Parque Nacional Natural Sumapaz", "PNN", "Acuerdo 14 de 1977", 223000.0,
     ((4.300, -74.350), (4.200, -74.050), (3.800, -74.050), (3.700, -74.300), (3.950, -74.500))),
    ("12", "Parque Nacional Natural Los Nevados", "PNN", "Acuerdo 15 de 1973", 61600.0,
     ((5.000, -75.420), (4.950, -75.250), (4.650, -75.300), (4.680, -75.450))),
    ("310", "Reserva Forestal Protectora Bosque Oriental de Bogotá", "RFP", "Resolución 76 de 1977", 13142.0,
     ((4.830, -74.050), (4.830, -74.010), (4.540, -74.040), (4.540, -74.090))),
    ("1162", "Parque Natural Regional Páramo de Rabanal", "PNR", "Acuerdo CAR 36 de 2013", 7730.0,
     ((5.430, -73.580), (5.430, -73.510), (5.340, -73.500), (5.330, -73.570))),
    ("417", "Distrito de Manejo Integrado Cuenca Baja del Río Ranchería", "DMI", "Acuerdo CORPOGUAJIRA 12 de 2012",
     10880.0, ((11.600, -72.950), (11.600, -72.850), (11.520, -72.850), (11.520, -72.950))),
)


def _seed_parques(path: Path) -> None:
    with _database(path) as db:
        db.executescript("""
            CREATE TABLE areas_protegidas (cod_runap TEXT PRIMARY KEY, nombre TEXT NOT NULL, categoria TEXT NOT NULL,
                acto_declaratoria TEXT NOT NULL, hectareas_declaradas REAL NOT NULL);
            CREATE TABLE vertices (cod_runap TEXT NOT NULL REFERENCES areas_protegidas, orden INTEGER NOT NULL,
                latitud REAL NOT NULL, longitud REAL NOT NULL, PRIMARY KEY (cod_runap, orden));
        """)
        db.executemany("INSERT INTO areas_protegidas VALUES (?, ?, ?, ?, ?)",
                       [area[:5] for area in PROTECTED_AREAS])
        db.executemany("INSERT INTO vertices VALUES (?, ?, ?, ?)",
                       [(area[0], order, lat, lon) for area in PROTECTED_AREAS
                        for order, (lat, lon) in enumerate(area[5], start=1)])


# -- ADRES (BDUA) --------------------------------------------------------------------------------------------

# (codigo, nit, nombre, id en la plataforma, régimen principal)
EPS_CATALOGUE = (
    ("EPS005", "800251440", "EPS Sanitas S.A.S."),
    ("EPS010", "800088702", "EPS Suramericana S.A."),
    ("EPS037", "900156264", "Nueva Empresa Promotora de Salud S.A. - Nueva EPS"),
    ("EPS008", "860066942", "Caja de Compensación Familiar Compensar"),
    ("EPS002", "800130907", "Salud Total EPS S.A."),
    ("EPS017", "830003564", "EPS Famisanar S.A.S."),
    ("ESS024", "900226715", "Cooperativa de Salud Comunitaria - Coosalud EPS"),
)


@dataclass(frozen=True, slots=True)
class BduaPerson:
    doc_type: str
    number: str
    given_names: str
    first_surname: str
    second_surname: str | None
    sex: str
    born: dt.date
    eps: str
    regime: str  # C contributivo, S subsidiado, E excepción
    state: str  # AC activo, SU suspendido, RE retirado, PL protección laboral, AF fallecido
    member: str  # C cotizante, B beneficiario, F cabeza de familia
    municipality: str
    since: dt.date
    until: dt.date | None = None


ADRES_PEOPLE: tuple[BduaPerson, ...] = (
    # The health chain's patient (samples verificarDerechos / autorizarServicio).
    BduaPerson("CC", "79845123", "JUAN CARLOS", "PÉREZ", "MORALES", "M", dt.date(1978, 3, 14), "EPS005", "C", "AC", "C",
               "11001", dt.date(2015, 2, 1)),
    # Suspended for late contributions: no right to services.
    BduaPerson("CC", "52987654", "LUZ MARINA", "CASTRO", "OSPINA", "F", dt.date(1971, 8, 2), "EPS005", "C", "SU", "C",
               "11001", dt.date(2012, 6, 1)),
    # Subsidised, in another EPS.
    BduaPerson("CC", "1065432198", "YEISON ANDRÉS", "DE LA HOZ", "BARRIOS", "M", dt.date(1996, 1, 30), "ESS024", "S",
               "AC", "F", "20001", dt.date(2019, 9, 1)),
    # Sanitas beneficiary (for the hospital copago).
    BduaPerson("CC", "1018456789", "DANIELA", "PÉREZ", "RINCÓN", "F", dt.date(2001, 5, 9), "EPS005", "C", "AC", "B",
               "11001", dt.date(2015, 2, 1)),
    # Affiliation ended before 2026: no affiliation on the date of care.
    BduaPerson("CC", "80234567", "HERNÁN DARÍO", "SAN MIGUEL", None, "M", dt.date(1983, 10, 21), "EPS010", "C", "RE",
               "C", "05001", dt.date(2010, 3, 1), dt.date(2025, 12, 31)),
)

_GIVEN_F = ("MARÍA", "ANA", "LUZ", "SANDRA", "DIANA", "PAOLA", "ÁNGELA", "FERNANDA", "VALENTINA", "DANIELA", "MARTHA",
            "CLAUDIA", "YOLANDA", "NATALIA", "ESPERANZA", "LUISA", "CAROLINA", "GLORIA", "ISABEL", "CATALINA")
_GIVEN_M = ("JOSÉ", "LUIS", "CARLOS", "JUAN", "JORGE", "ANDRÉS", "CAMILO", "JULIÁN", "ALEJANDRO", "SANTIAGO", "ÓSCAR",
            "HERNÁN", "EDGAR", "FABIO", "WILSON", "MIGUEL", "DAVID", "ENRIQUE", "SEBASTIÁN", "ÁLVARO")
_SURNAMES = ("GÓMEZ", "RODRÍGUEZ", "MARTÍNEZ", "GARCÍA", "LÓPEZ", "HERNÁNDEZ", "GONZÁLEZ", "PÉREZ", "SÁNCHEZ",
             "RAMÍREZ", "TORRES", "DÍAZ", "MORENO", "ROJAS", "VARGAS", "JIMÉNEZ", "CASTRO", "RUIZ", "ORTIZ", "MORALES",
             "DE LA TORRE", "DEL CASTILLO", "DE LOS RÍOS", "SAN MIGUEL", "DE LA HOZ", "MEJÍA", "OSORIO", "PEÑA",
             "CASTAÑO", "ZÚÑIGA")
_BDUA_MUNICIPALITIES = ("11001", "11001", "11001", "05001", "76001", "08001", "13001", "68001", "66001", "25754",
                        "44001", "47001", "54001", "73001", "17001", "52001")


def bdua_people(count: int = 150, *, random_seed: int = 2027) -> list[BduaPerson]:
    """The fixed people, then `count` generated ones (deterministic for a seed)."""
    rng = random.Random(random_seed)
    result = list(ADRES_PEOPLE)
    taken = {p.number for p in result}
    while len(result) < count + len(ADRES_PEOPLE):
        number = str(rng.randint(10_000_000, 1_099_999_999))
        if number in taken:
            continue
        taken.add(number)
        female = rng.random() < 0.52
        given = " ".join(rng.sample(_GIVEN_F if female else _GIVEN_M, rng.choice((1, 2, 2))))
        regime = rng.choices("CSE", weights=(48, 48, 4))[0]
        eps = rng.choice([e[0] for e in EPS_CATALOGUE if (e[0].startswith("ESS")) == (regime == "S")])
        state = rng.choices(("AC", "SU", "RE", "PL"), weights=(90, 4, 4, 2))[0]
        member = ("C" if rng.random() < 0.6 else "B") if regime != "S" else ("F" if rng.random() < 0.4 else "B")
        since = dt.date(2008, 1, 1) + dt.timedelta(days=rng.randint(0, 365 * 17))
        result.append(BduaPerson(
            "CC", number, given, rng.choice(_SURNAMES), rng.choice(_SURNAMES) if rng.random() > 0.05 else None,
            "F" if female else "M", dt.date(1945, 1, 1) + dt.timedelta(days=rng.randint(0, 365 * 60)), eps, regime,
            state, member, rng.choice(_BDUA_MUNICIPALITIES), since.replace(day=1),
        ))
    return result


def _compact(day: dt.date | None) -> str | None:
    return None if day is None else day.strftime("%Y%m%d")


def _seed_adres(path: Path, people: Sequence[BduaPerson]) -> None:
    with _database(path) as db:
        db.executescript("""
            CREATE TABLE eps (codigo TEXT PRIMARY KEY, nit TEXT NOT NULL, dv TEXT NOT NULL, nombre TEXT NOT NULL,
                id_plataforma TEXT NOT NULL, clase TEXT NOT NULL);
            CREATE TABLE afiliados (tipo_id TEXT NOT NULL, numero_id TEXT NOT NULL, nombres TEXT NOT NULL,
                primer_apellido TEXT NOT NULL, segundo_apellido TEXT, sexo TEXT NOT NULL,
                fecha_nacimiento TEXT NOT NULL, PRIMARY KEY (tipo_id, numero_id));
            CREATE TABLE afiliaciones (tipo_id TEXT NOT NULL, numero_id TEXT NOT NULL, codigo_eps TEXT NOT NULL
                REFERENCES eps, regimen TEXT NOT NULL, estado TEXT NOT NULL, tipo_afiliado TEXT NOT NULL,
                municipio TEXT NOT NULL, fecha_inicio TEXT NOT NULL, fecha_fin TEXT);
            CREATE INDEX afiliaciones_persona ON afiliaciones (tipo_id, numero_id);
        """)
        db.executemany("INSERT INTO eps VALUES (?, ?, ?, ?, ?, 'EPS')",
                       [(code, nit, str(nit_check_digit(nit)), name, f"CO/EPS/{nit}") for code, nit, name in
                        EPS_CATALOGUE])
        db.executemany("INSERT INTO afiliados VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [(p.doc_type, p.number, p.given_names, p.first_surname, p.second_surname, p.sex,
                         _compact(p.born)) for p in people])
        db.executemany("INSERT INTO afiliaciones VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       [(p.doc_type, p.number, p.eps, p.regime, p.state, p.member, p.municipality, _compact(p.since),
                         _compact(p.until)) for p in people])


# -- EPS Sanitas ---------------------------------------------------------------------------------------------

# (cod_cups, descripción, incluido en el PBS, alto costo, cantidad máxima por solicitud, valor de referencia)
CUPS = (
    ("883512", "RESONANCIA MAGNÉTICA DE RODILLA", 1, 0, 1, 680000),
    ("890380", "CONSULTA DE CONTROL O DE SEGUIMIENTO POR ESPECIALISTA EN ORTOPEDIA Y TRAUMATOLOGÍA", 1, 0, 2, 65000),
    ("890280", "CONSULTA DE PRIMERA VEZ POR ESPECIALISTA EN ORTOPEDIA Y TRAUMATOLOGÍA", 1, 0, 1, 78000),
    ("871121", "RADIOGRAFÍA DE TÓRAX (PA O AP Y LATERAL)", 1, 0, 2, 45000),
    ("903841", "GLUCOSA EN SUERO U OTRO FLUIDO DIFERENTE A ORINA", 1, 0, 3, 12000),
    ("815401", "REEMPLAZO TOTAL DE ARTICULACIÓN DE RODILLA", 1, 1, 1, 24500000),
    ("398101", "HEMODIÁLISIS ESTÁNDAR", 1, 1, 12, 520000),
    ("862401", "LIPOSUCCIÓN CON FINES ESTÉTICOS", 0, 0, 1, 9800000),
)

# (concepto, rango de ingreso, valor, vigencia): cuota moderadora per service order, copago percentage and
# copago cap per event, by the contributor's income band (A, B, C).
FEES = (
    ("CUOTA_MODERADORA", "A", "5100", 2026), ("CUOTA_MODERADORA", "B", "20300", 2026),
    ("CUOTA_MODERADORA", "C", "53600", 2026),
    ("COPAGO_PORCENTAJE", "A", "11.5", 2026), ("COPAGO_PORCENTAJE", "B", "17.3", 2026),
    ("COPAGO_PORCENTAJE", "C", "23", 2026),
    ("COPAGO_TOPE_EVENTO", "A", "408545", 2026), ("COPAGO_TOPE_EVENTO", "B", "1637025", 2026),
    ("COPAGO_TOPE_EVENTO", "C", "3274050", 2026),
)


def _seed_eps(path: Path, people: Sequence[BduaPerson]) -> None:
    states = {"AC": "ACTIVO", "PL": "ACTIVO", "SU": "SUSPENDIDO", "RE": "RETIRADO", "AF": "RETIRADO"}
    rng = random.Random(2028)
    users = []
    for p in people:
        if p.eps != "EPS005":
            continue
        band = "A" if p.number in ("79845123", "1018456789") else rng.choice("AABBC")
        name = " ".join(n for n in (p.given_names, p.first_surname, p.second_surname) if n)
        users.append((p.doc_type, p.number, name,
                      "CONTRIBUTIVO" if p.regime == "C" else "SUBSIDIADO",
                      "COTIZANTE" if p.member == "C" else "BENEFICIARIO", band, states[p.state]))
    with _database(path) as db:
        db.executescript("""
            CREATE TABLE usuarios (tipo_doc TEXT NOT NULL, num_doc TEXT NOT NULL, nombre TEXT NOT NULL,
                regimen TEXT NOT NULL, tipo_usuario TEXT NOT NULL, rango_ibc TEXT NOT NULL, estado TEXT NOT NULL,
                PRIMARY KEY (tipo_doc, num_doc));
            CREATE TABLE cups (cod_cups TEXT PRIMARY KEY, descripcion TEXT NOT NULL, incluido_pbs INTEGER NOT NULL,
                alto_costo INTEGER NOT NULL, max_cantidad INTEGER NOT NULL, valor_referencia INTEGER NOT NULL);
            CREATE TABLE cuotas (concepto TEXT NOT NULL, rango TEXT NOT NULL, valor TEXT NOT NULL,
                vigencia INTEGER NOT NULL, PRIMARY KEY (concepto, rango, vigencia));
            CREATE TABLE autorizaciones (num_autorizacion TEXT PRIMARY KEY, consecutivo INTEGER NOT NULL UNIQUE,
                fecha TEXT NOT NULL, id_solicitud TEXT UNIQUE, tipo_doc TEXT NOT NULL, num_doc TEXT NOT NULL,
                ips_nit TEXT, diagnostico TEXT, estado TEXT NOT NULL, vigencia_hasta TEXT, servicios TEXT,
                tipo_cuota TEXT, valor_cuota TEXT, motivo TEXT);
        """)
        db.executemany("INSERT INTO usuarios VALUES (?, ?, ?, ?, ?, ?, ?)", users)
        db.executemany("INSERT INTO cups VALUES (?, ?, ?, ?, ?, ?)", CUPS)
        db.executemany("INSERT INTO cuotas VALUES (?, ?, ?, ?)", FEES)
        history = [
            ("2026111900456786", 456786, "2026-11-19", "CC", "52987654", "860015536", "J189", "N", None, None, None,
             None, "El usuario no registra afiliación activa en EPS Sanitas (estado SUSPENDIDO)."),
            ("2026112000456787", 456787, "2026-11-20", "CC", "1018456789", "860015536", "K359", "A", "2027-02-18",
             "890280x1", "CUOTA_MODERADORA", "5100.00", None),
            ("2026112000456788", 456788, "2026-11-20", "CC", "79845123", "860015536", "M232", "A", "2027-02-18",
             "871121x1", "CUOTA_MODERADORA", "5100.00", None),
        ]
        db.executemany("INSERT INTO autorizaciones (num_autorizacion, consecutivo, fecha, tipo_doc, num_doc, ips_nit, "
                       "diagnostico, estado, vigencia_hasta, servicios, tipo_cuota, valor_cuota, motivo) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", history)


# -- all of it -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeededAmbientalSalud:
    anla_db: Path
    recaudo_json: Path
    mininterior_db: Path
    parques_db: Path
    adres_db: Path
    eps_db: Path
    bdua_people: int


@contextmanager
def _database(path: Path) -> Iterator[sqlite3.Connection]:
    """A fresh SQLite file (any old one is replaced), committed and closed at the end."""
    path.unlink(missing_ok=True)
    connection = sqlite3.connect(path)
    try:
        yield connection
        connection.commit()
    finally:
        connection.close()


def seed(folder: Path, *, bdua_count: int = 150) -> SeededAmbientalSalud:
    """Write every legacy system's data under `folder` (replacing what was there)."""
    folder.mkdir(parents=True, exist_ok=True)
    people = bdua_people(bdua_count)
    seeded = SeededAmbientalSalud(
        anla_db=folder / "anla.db", recaudo_json=folder / "recaudo.json", mininterior_db=folder / "mininterior.db",
        parques_db=folder / "parques.db", adres_db=folder / "adres.db", eps_db=folder / "eps_sanitas.db",
        bdua_people=len(people),
    )
    _seed_anla(seeded.anla_db)
    seeded.recaudo_json.write_text(json.dumps(pse_transactions(), ensure_ascii=False, indent=1), encoding="utf-8")
    _seed_mininterior(seeded.mininterior_db)
    _seed_parques(seeded.parques_db)
    _seed_adres(seeded.adres_db, people)
    _seed_eps(seeded.eps_db, people)
    return seeded


def main(argv: Iterable[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    folder = Path(args[0]) if args else Path("var/legacy")
    seeded = seed(folder)
    print(f"Datos heredados ambientales y de salud escritos en {folder} ({seeded.bdua_people} personas en la BDUA).")


if __name__ == "__main__":
    main()
