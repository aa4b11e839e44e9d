"""Template filters of the chat pages."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.utils import timezone
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
