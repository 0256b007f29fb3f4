"""Fields the gateway's transaction record does not hold but registrarPago answers."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["co_decimal", "pago_efectivo"]

_PAYMENT_FIELDS = {"pagoReferencia": "referencia", "pagoValor": "valor", "pagoMedio": "medio",
                   "pagoBanco": "codigoBanco", "pagoCus": "cus", "pagoFecha": "fechaTransaccion"}


def co_decimal(text: object) -> Decimal | None:
    """`187.450.300,00` (or `$ 187.450.300`) as a Decimal; None when it is not a Colombian amount."""
    cleaned = str(text or "").replace("$", "").strip().replace(".", "").replace(",", ".")
    try:
        return Decimal(cleaned)
    except InvalidOperation:
        return None


def pago_efectivo(params: Mapping[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """`pagado` is true only for an approved (`OK`) transaction of exactly the expected value; the payment's
    details (`fin:pago`) are given only for an approved transaction, whatever its value."""
    approved = record.get("estado") == "OK"
    expected, paid = co_decimal(params.get("valorEsperado")), co_decimal(record.get("valor"))
    record["pagado"] = "true" if approved and expected is not None and paid == expected else "false"
    for target, source in _PAYMENT_FIELDS.items():
        record[target] = record.get(source) if approved else None
    return record
