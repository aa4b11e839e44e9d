"""The two tables: one row per conversation, one row per stored item.

The abstract bases let a project (or ``create_tables=True`` with custom table
names) build the same schema under other table names.
"""

from __future__ import annotations

from django.db import models

from . import conf


class AbstractAgentSession(models.Model):
    session_id = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.session_id


class AbstractAgentMessage(models.Model):
    data = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.data.get('role') or self.data.get('type') or 'item'} #{self.pk}"


class AgentSession(AbstractAgentSession):
    class Meta:
        db_table = conf.table_setting("SESSIONS_TABLE")
        verbose_name = "agent session"


class AgentMessage(AbstractAgentMessage):
    # No index of its own: the (session, id) index below serves the foreign
    # key too, and a second one tempts PostgreSQL into sorting whole sessions.
    session = models.ForeignKey(
        AgentSession, on_delete=models.CASCADE, related_name="messages", db_index=False
    )

    class Meta:
        db_table = conf.table_setting("MESSAGES_TABLE")
        verbose_name = "agent message"
        # get_items(limit=N) reads the newest N rows of one session through this.
        indexes = [models.Index(fields=["session", "id"], name="agent_msg_session_id_idx")]
