"""The chain expression language: Python's meaning for what it allows, and nothing else."""

from __future__ import annotations

import pytest

from broker.orchestrator.expressions import ExpressionError, compile_expression

CONTEXT = {"puntaje": 742.35, "grupo": "C3", "tieneVivienda": False, "miembros": ["a", "b"], "cero": 0}


@pytest.mark.parametrize(("source", "expected"), [
    ("puntaje >= 600 and not tieneVivienda", True),
    ("cero or grupo", "C3"),
    ("cero and grupo", 0),
    ("grupo in ['A1', 'B2', 'C3']", True),
    ("grupo < 'D'", True),
    ("300 < puntaje <= 742.35", True),
    ("len(miembros) * 2 - 1", 3),
    ("'sí' if tieneVivienda else 'no'", "no"),
    ("round(puntaje)", 742),
    ("-cero + 1", 1),
])
def test_allowed_expressions_mean_what_python_means(source: str, expected: object) -> None:
    assert compile_expression(source)(CONTEXT) == expected


@pytest.mark.parametrize("source", [
    "grupo[0]", "grupo.upper()", "__import__('os')", "open('x')", "lambda: 1", "[x for x in miembros]",
    "puntaje if", "f'{grupo}'",
])
def test_anything_else_is_refused_when_the_definition_loads(source: str) -> None:
    with pytest.raises(ExpressionError):
        compile_expression(source)


def test_names_are_known_before_evaluation_and_a_missing_one_is_a_spanish_error() -> None:
    expression = compile_expression("puntaje >= minimo and len(miembros) > 0")
    assert expression.names == {"puntaje", "minimo", "miembros"}
    with pytest.raises(ExpressionError, match="minimo"):
        expression(CONTEXT)
    with pytest.raises(ExpressionError, match="falló"):
        compile_expression("grupo + 1")(CONTEXT)
