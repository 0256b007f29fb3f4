"""ANLA's liquidation of the evaluation charge (liquidarCobro): the tariff formula and the payment deadline.

Tariff (table `tarifas` of ANLA's database, one row per sector and project-value range):

    valor = cargo_fijo + (valor_proyecto − valor_desde) × tasa_por_mil / 1000

rounded half-up to the nearest 100 pesos, where the row is the one of the declared sector whose range
`valor_desde ≤ valor_proyecto < valor_hasta` holds (the last range has no upper bound). Example, the
sample's solar park (sector ENE, 980.000 millones, third range): 77.450.300 + 880.000.000.000 × 0,125 / 1000
= 187.450.300.

Deadline: the charge must be paid within 10 working days after the filing date of the expediente
(`fecha_radicacion`), skipping Saturdays, Sundays and Colombian public holidays (Ley 51 de 1983: the
"Emiliani" holidays move to the next Monday; Easter-based ones follow the Gregorian computus).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from typing import Any

__all__ = ["DEADLINE_WORKING_DAYS", "colombian_holidays", "liquidar", "tariff_value", "working_days_after"]

DEADLINE_WORKING_DAYS = 10
_HUNDRED = Decimal(100)


def tariff_value(project_value: Decimal, *, fixed: Decimal, rate_per_mille: Decimal, range_start: Decimal) -> Decimal:
    """The charge for `project_value` under one tariff row, rounded half-up to 100 pesos, with 2 decimals."""
    raw = fixed + (project_value - range_start) * rate_per_mille / 1000
    return ((raw / _HUNDRED).quantize(Decimal(1), rounding=ROUND_HALF_UP) * _HUNDRED).quantize(Decimal("0.01"))


def _easter(year: int) -> date:
    """Gregorian Easter Sunday (anonymous algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    leap = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * leap) // 451
    month = (h + leap - 7 * m + 114) // 31
    day = (h + leap - 7 * m + 114) % 31 + 1
    return date(year, month, day)


def _next_monday(day: date) -> date:
    return day + timedelta(days=(7 - day.weekday()) % 7)


@cache
def colombian_holidays(year: int) -> frozenset[date]:
    """The national public holidays of `year`."""
    fixed = {date(year, 1, 1), date(year, 5, 1), date(year, 7, 20), date(year, 8, 7), date(year, 12, 8),
             date(year, 12, 25)}
    moved = {_next_monday(date(year, month, day)) for month, day in
             ((1, 6), (3, 19), (6, 29), (8, 15), (10, 12), (11, 1), (11, 11))}
    easter = _easter(year)
    easter_based = {easter - timedelta(days=3), easter - timedelta(days=2), easter + timedelta(days=43),
                    easter + timedelta(days=64), easter + timedelta(days=71)}
    return frozenset(fixed | moved | easter_based)


def working_days_after(start: date, count: int) -> date:
    """The `count`-th working day after `start`."""
    day = start
    while count > 0:
        day += timedelta(days=1)
        if day.weekday() < 5 and day not in colombian_holidays(day.year):
            count -= 1
    return day


def liquidar(params: Mapping[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """`derive` of liquidarCobro: from the expediente and its tariff row to the charge, deadline and concept."""
    record["valor_liquidado"] = tariff_value(
        Decimal(str(params["valor"])), fixed=Decimal(str(record["cargo_fijo"])),
        rate_per_mille=Decimal(str(record["tasa_por_mil"])), range_start=Decimal(str(record["valor_desde"])),
    )
    filed = date.fromisoformat(str(record["fecha_radicacion"]))
    record["fecha_limite"] = working_days_after(filed, DEADLINE_WORKING_DAYS).isoformat()
    project, norm = record["nombre_proyecto"], record["norma"]
    record["concepto"] = f"Servicio de evaluación de licencia ambiental - {project} ({norm})"
    return record
