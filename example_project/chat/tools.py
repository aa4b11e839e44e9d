"""The agent's function tools. Each does real work; none needs the network.

- ``current_time(city)``: the time now in a city (``zoneinfo``).
- ``calculate(expression)``: arithmetic, evaluated safely (no ``eval``).
- ``stored_conversations()``: what this project's database holds right now.

Failures come back as text the model can relay, not as exceptions: a wrong
city or a typo in a formula is part of the conversation.
"""

from __future__ import annotations

from agents import FunctionTool, function_tool
from openai_django_sessions.models import AgentMessage, AgentSession

from chat import calculator, clock


@function_tool
def current_time(city: str) -> str:
    """The current local time in a city.

    Args:
        city: a city name in English, such as "Tokyo", "Paris" or "New York".
    """
    try:
        return clock.describe_time(city)
    except clock.UnknownCity:
        return f"I do not know the time zone of {city!r}."


@function_tool
def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression exactly.

    Args:
        expression: numbers, parentheses and + - * / // % ** (or ^), e.g. "12 * (3 + 4)".
    """
    try:
        result = calculator.evaluate(expression)
    except calculator.CalculationError as exc:
        return f"Cannot calculate {expression!r}: {exc}."
    return f"{calculator.normalize(expression)} = {calculator.format_number(result)}"


@function_tool
async def stored_conversations() -> str:
    """How many conversations and messages this chat's database holds, all visitors together."""
    return await describe_stored()


async def describe_stored() -> str:
    """The counts as the page and the admin show them ("stored messages": one per item).

    The turn asking is not counted yet: the SDK stores its tool call, the call's
    output and the reply when the turn ends, and the page's count includes them.
    """
    sessions = await AgentSession.objects.acount()
    messages = await AgentMessage.objects.acount()
    return (
        f"The database holds {plural(sessions, 'conversation')} with "
        f"{plural(messages, 'stored message')} in all, before this turn's tool call "
        "and reply are stored."
    )


def plural(count: int, noun: str) -> str:
    """``"1 conversation"``, ``"3 conversations"``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


TOOLS: list[FunctionTool] = [current_time, calculate, stored_conversations]
