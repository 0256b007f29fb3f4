"""Conditions and computed values in chain definitions: a small, safe subset of Python expressions over
the instance's context.

    puntaje >= 600 and not tienePropiedad
    codGrupoSisben in ["A1", "A2", "B1", "C3"]
    valorSolicitado - ahorroPrevio

Names are context fields; literals, arithmetic, comparisons, `and`/`or`/`not`, `in`, conditional
expressions, list literals and the functions `len`, `min`, `max`, `round`, `abs`, `int`, `float`, `str`,
`bool` are allowed. Nothing else parses: no attributes, no subscripts into objects, no imports, no calls of
anything the definition did not name here.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = ["Expression", "ExpressionError", "compile_expression"]

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Mod: operator.mod, ast.FloorDiv: operator.floordiv,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
    ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_, ast.IsNot: operator.is_not,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len, "min": min, "max": max, "round": round, "abs": abs, "int": int, "float": float, "str": str,
    "bool": bool,
}


class ExpressionError(ValueError):
    """An expression that does not parse, uses something not allowed, or fails on the context's values."""


@dataclass(frozen=True, slots=True)
class Expression:
    source: str
    tree: ast.Expression = field(compare=False, repr=False)
    names: frozenset[str] = frozenset()

    def __call__(self, context: Mapping[str, Any]) -> Any:
        try:
            return _eval(self.tree.body, context)
        except ExpressionError:
            raise
        except (TypeError, ValueError, ZeroDivisionError, ArithmeticError) as exc:
            raise ExpressionError(f"la expresión {self.source!r} falló: {exc}") from None


def compile_expression(source: str | bool | int | float) -> Expression:
    """Parse and check an expression once; evaluate it many times."""
    text = str(source).strip() if not isinstance(source, bool) else str(source)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"la expresión {text!r} no es válida: {exc.msg}") from None
    names: set[str] = set()
    for node in ast.walk(tree):
        _check(node, text)
        if isinstance(node, ast.Name) and node.id not in _FUNCTIONS and node.id not in ("True", "False", "None"):
            names.add(node.id)
    return Expression(text, tree, frozenset(names))


_ALLOWED = (ast.Expression, ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.Compare, ast.IfExp, ast.Constant, ast.Name,
            ast.Load, ast.List, ast.Tuple, ast.Call, ast.And, ast.Or, ast.Not, ast.USub, ast.UAdd,
            *_BINARY, *_COMPARE)


def _check(node: ast.AST, text: str) -> None:
    if not isinstance(node, _ALLOWED):
        raise ExpressionError(f"la expresión {text!r} usa {type(node).__name__}, que no está permitido")
    if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
                                           and not node.keywords):
        raise ExpressionError(f"la expresión {text!r} llama a una función no permitida "
                              f"(se admiten {', '.join(sorted(_FUNCTIONS))})")


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def _eval(node: ast.AST, context: Mapping[str, Any]) -> Any:
    match node:
        case ast.Constant(value=value):
            return value
        case ast.Name(id=name):
            if name in context:
                return _number(context[name])
            if name in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[name]
            raise ExpressionError(f"el campo {name!r} no existe en el contexto de la cadena")
        case ast.BoolOp(op=bool_op, values=operands):
            outcome: Any = isinstance(bool_op, ast.And)
            for operand in operands:
                outcome = _eval(operand, context)
                if bool(outcome) != isinstance(bool_op, ast.And):
                    return outcome
            return outcome
        case ast.UnaryOp(op=unary_op, operand=single):
            value = _eval(single, context)
            if isinstance(unary_op, ast.Not):
                return not value
            return -value if isinstance(unary_op, ast.USub) else +value
        case ast.BinOp(left=left, op=binary_op, right=right):
            return _BINARY[type(binary_op)](_eval(left, context), _eval(right, context))
        case ast.Compare(left=first, ops=comparisons, comparators=comparators):
            current = _eval(first, context)
            for comparison, comparator in zip(comparisons, comparators, strict=True):
                other = _eval(comparator, context)
                if not _COMPARE[type(comparison)](current, other):
                    return False
                current = other
            return True
        case ast.IfExp(test=test, body=body, orelse=orelse):
            return _eval(body if _eval(test, context) else orelse, context)
        case ast.List(elts=items) | ast.Tuple(elts=items):
            return [_eval(item, context) for item in items]
        case ast.Call(func=ast.Name(id=name), args=args):
            return _FUNCTIONS[name](*(_eval(arg, context) for arg in args))
    raise ExpressionError(f"nodo {type(node).__name__} no permitido")
