"""Arithmetic on untrusted text, without ``eval``.

Only numbers, parentheses and ``+ - * / // % **`` are accepted; anything else
in the expression (names, calls, attributes) is refused. Sizes are bounded so a
visitor cannot make the server compute ``9**9**9``.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable

MAX_LENGTH = 200
MAX_EXPONENT = 1000
MAX_MAGNITUDE = 10**100

Number = int | float

BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


class CalculationError(ValueError):
    """The expression is not plain arithmetic, or its result is out of bounds."""


def normalize(expression: str) -> str:
    """Spell the typed variants (multiplication and division signs, ``^``) the Python way."""
    return expression.replace("\u00d7", "*").replace("\u00f7", "/").replace("^", "**").strip()


def evaluate(expression: str) -> Number:
    """The value of ``expression``.

    Raises ``CalculationError`` for anything but arithmetic on numbers, for a
    division by zero, and for expressions or results beyond the bounds above.
    """
    text = normalize(expression)
    if not text or len(text) > MAX_LENGTH:
        raise CalculationError(f"expressions must be 1 to {MAX_LENGTH} characters long")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise CalculationError(f"{expression!r} is not an arithmetic expression") from exc
    return _value(tree.body)


def format_number(value: Number) -> str:
    """``84`` for integral values, else up to 12 significant digits."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.12g}"
    return str(value)


def _value(node: ast.expr) -> Number:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _bounded(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        return UNARY[type(node.op)](_value(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise CalculationError(f"exponents above {MAX_EXPONENT} are not computed")
        try:
            return _bounded(BINARY[type(node.op)](left, right))
        except ZeroDivisionError as exc:
            raise CalculationError("division by zero") from exc
        except OverflowError as exc:
            raise CalculationError("the result is too large") from exc
    raise CalculationError(f"only numbers and + - * / // % ** are allowed, not {_describe(node)}")


def _bounded(value: Number) -> Number:
    if isinstance(value, complex) or abs(value) > MAX_MAGNITUDE:
        raise CalculationError("the result is too large (or not a real number)")
    return value


def _describe(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return f"the name {node.id!r}"
    return type(node).__name__
