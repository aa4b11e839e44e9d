"""Template filters of the chat pages."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import timesince

register = template.Library()


@register.filter
def ago(moment: datetime | None) -> str:
    """``"just now"`` within a minute, else ``"5 minutes ago"``; ``""`` for ``None``."""
    if moment is None:
        return ""
    if timezone.now() - moment < timedelta(minutes=1):
        return "just now"
    return f"{timesince(moment)} ago"


@register.filter
def thousands(value: int) -> str:
    """``1234`` as ``"1,234"``, as the page's other figures read."""
    return f"{value:,}"


@register.filter
def tokens(count: int, offline: bool) -> str:
    """``"1,234 tokens"`` (saying the offline model counts words), or that none were recorded."""
    if not count:
        return "no token usage recorded"
    unit = "token" if count == 1 else "tokens"
    return f"{count:,} {unit} (words, offline model)" if offline else f"{count:,} {unit}"


@register.filter
def highlight(snippet: str, query: str) -> SafeString:
    """``snippet`` escaped, each whole word of ``query`` in it wrapped in ``<mark>``.

    Letter case is ignored. Only the words are marked, never markup: the text
    between and inside the marks is escaped like any other text of the page.
    """
    words = sorted(set(re.findall(r"\w+", query.casefold())), key=len, reverse=True)
    if not words:
        return escape(snippet)
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, words)) + r")\b", re.IGNORECASE)
    pieces = pattern.split(snippet)
    # split() with one group alternates: text, match, text, match, ..., text.
    return mark_safe(  # every piece is escaped
        "".join(
            f"<mark>{escape(piece)}</mark>" if index % 2 else escape(piece)
            for index, piece in enumerate(pieces)
        )
    )
