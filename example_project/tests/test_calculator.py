import pytest

from chat.calculator import CalculationError, evaluate, format_number


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("12 * (3 + 4)", 84),
        ("2 + 3 * 4", 14),
        ("-(2 - 5)", 3),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("7 % 4", 3),
        ("2^10", 1024),
        ("2**10", 1024),
        ("6 \u00d7 7", 42),
        ("9 \u00f7 3", 3),
        ("1.5 * 4", 6.0),
    ],
)
def test_arithmetic_is_evaluated_with_usual_precedence(expression: str, value: float) -> None:
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    "expression",
    ["__import__('os')", "x + 1", "abs(-1)", "(1).real", "[1, 2]", "'a' * 3", "1 if 1 else 2"],
)
def test_anything_but_arithmetic_is_refused(expression: str) -> None:
    with pytest.raises(CalculationError):
        evaluate(expression)


def test_division_by_zero_is_reported_not_raised_as_is() -> None:
    with pytest.raises(CalculationError, match="division by zero"):
        evaluate("1 / 0")


def test_huge_powers_are_not_computed() -> None:
    with pytest.raises(CalculationError, match="exponents"):
        evaluate("9 ** 9 ** 9")
    with pytest.raises(CalculationError, match="too large"):
        evaluate("10 ** 200")


def test_syntax_errors_and_empty_or_long_input_are_refused() -> None:
    for expression in ["1 +", "", "1+" * 200 + "1"]:
        with pytest.raises(CalculationError):
            evaluate(expression)


def test_integral_results_print_without_decimals() -> None:
    assert format_number(6.0) == "6"
    assert format_number(3.5) == "3.5"
    assert format_number(1 / 3) == "0.333333333333"
