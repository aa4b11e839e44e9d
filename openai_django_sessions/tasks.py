"""Purging expired conversations on a schedule (see ``retention``).

``purge_expired()`` is a plain function: call it from anything that runs
code on a schedule (Celery beat, a cron job or systemd timer running
``manage.py agent_sessions prune --expired``). On Django 6.0 and later,
``purge_expired_conversations`` is the same work as a task of Django's tasks
framework, to ``enqueue()`` from whatever schedules your tasks:
``django.tasks`` runs tasks, it does not schedule them.
"""

from __future__ import annotations

import django

from . import _routing as routing
from . import maintenance
from .models import AgentSession

__all__ = ["purge_expired"]


def purge_expired(*, using: str | None = None, batch_size: int = 500) -> dict[str, int]:
    """Delete every expired conversation on ``using``, else on every database
    sessions live on (each shard), ``batch_size`` per transaction.

    Returns the numbers deleted: ``{"sessions": ..., "messages": ...}``. Safe
    to run while conversations are in use (see ``maintenance.prune``).
    """
    total = maintenance.PruneResult(sessions=0, messages=0)
    for alias in routing.databases(AgentSession, using=using):
        total += maintenance.prune(alias, expired=True, batch_size=batch_size)
    return {"sessions": total.sessions, "messages": total.messages}


if django.VERSION >= (6, 0):
    from django.tasks import task

    __all__ += ["purge_expired_conversations"]

    @task
    def purge_expired_conversations(batch_size: int = 500) -> dict[str, int]:
        """``purge_expired()`` as a task: ``purge_expired_conversations.enqueue()``."""
        return purge_expired(batch_size=batch_size)
