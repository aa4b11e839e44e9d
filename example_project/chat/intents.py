"""What a user message asks for, read with regular expressions.

This is the offline model's whole "understanding": a handful of patterns,
deliberately simple and predictable, so a demo (and a test) can say exactly
which sentence triggers what.
"""

from __future__ import annotations

import re

NAME_STATEMENT = re.compile(
    r"\b(?:my name is|my name's|call me|i am called|i'm called)\s+"
    # Further words count only when capitalized: "Ada Lovelace", not "Ada and I".
    r"(?P<name>[^\W\d_][\w'-]*(?-i:\s+[A-Z][\w'-]*)*)",
    re.IGNORECASE,
)
NAME_QUESTION = re.compile(
    r"\b(?:what(?: is|'s)\s+my name|who am i|do you (?:know|remember) my name)\b", re.IGNORECASE
)
PREVIOUS_QUESTION = re.compile(
    r"\b(?:what did i (?:just )?(?:say|ask|write|tell you)|"
    r"(?:my )?(?:previous|last|earlier) message)\b",
    re.IGNORECASE,
)
TIME_QUESTION = re.compile(r"\btime\b.*?\bin\s+(?P<city>[^?!.,;:]+)", re.IGNORECASE)
TIME_FILLERS = re.compile(r"\s+(?:right now|now|today|currently|at the moment|please)\s*$", re.I)
STATS_QUESTION = re.compile(
    r"\b(?:how many|count|number of)\b.*\b(?:conversations|chats|sessions)\b|"
    r"\bdatabase (?:stats|statistics)\b",
    re.IGNORECASE,
)
# \u00d7 and \u00f7 are the multiplication and division signs.
ARITHMETIC_CANDIDATE = re.compile("[-+(]*[\\d.][\\d\\s.()+\\-*/%^\u00d7\u00f7]*")
HAS_OPERATOR = re.compile("[\\d.)]\\s*(?:\\*\\*|//|[-+*/%^\u00d7\u00f7])\\s*[-+(]*[\\d.(]")
CALCULATION_WORDS = re.compile(
    r"\b(?:calculate|compute|evaluate|solve|what is|what's|how much is)\b", re.IGNORECASE
)


def stated_name(text: str) -> str | None:
    """The name in "my name is Ada" (or "call me Ada"), else ``None``."""
    match = NAME_STATEMENT.search(text)
    return match.group("name").strip(" '-") if match else None


def asks_name(text: str) -> bool:
    return bool(NAME_QUESTION.search(text))


def asks_previous_message(text: str) -> bool:
    return bool(PREVIOUS_QUESTION.search(text))


def asks_stats(text: str) -> bool:
    return bool(STATS_QUESTION.search(text))


def time_city(text: str) -> str | None:
    """The city in "what time is it in Tokyo?", else ``None``."""
    match = TIME_QUESTION.search(text)
    if not match:
        return None
    city = TIME_FILLERS.sub("", match.group("city").strip()).strip()
    return city or None


def arithmetic(text: str) -> str | None:
    """The arithmetic expression the message asks to work out, else ``None``.

    The longest run of digits and operators counts if the message asks for a
    calculation ("what is", "calculate", ...) or is little but the formula; so
    a date like 2025-11-25 in passing is not taken for a subtraction.
    """
    candidates = [
        match.group().strip().rstrip(".").strip() for match in ARITHMETIC_CANDIDATE.finditer(text)
    ]
    formulas = [candidate for candidate in candidates if HAS_OPERATOR.search(candidate)]
    if not formulas:
        return None
    formula = max(formulas, key=len)
    rest = text.replace(formula, "").strip(" ?=!.")
    if CALCULATION_WORDS.search(text) or len(rest) <= len(formula):
        return formula
    return None
