"""The tables: one row per conversation, one per stored item, one per usage recording.

The abstract bases let a project (or ``create_tables=True`` with custom table
names) build the conversation and message tables under other names. They hold
only the columns tables created by 0.1/0.2 have, so such tables keep working;
owner, title, metadata and fork details live on the migrated ``AgentSession``.
"""

from __future__ import annotations

from typing import Any, Self

from django.conf import settings
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Q
from django.db.models.functions import Coalesce, Lower
from django.utils.translation import gettext_lazy as _

from . import _conf as conf
from . import deletion, usage
from .items import ItemEncoder

__all__ = [
    "AbstractAgentMessage",
    "AbstractAgentSession",
    "AgentMessage",
    "AgentSession",
    "AgentSessionQuerySet",
    "AgentUsage",
    "SessionIdField",
]


class SessionIdField(models.CharField):
    """A ``CharField`` whose values compare exactly (byte for byte) on every database.

    SQLite and PostgreSQL (with a deterministic collation, the default) already
    compare exactly. MySQL/MariaDB compare with the column's collation, which
    for a database created ``CHARACTER SET utf8mb4`` ignores case, accents and
    trailing spaces: two users' ids would share one conversation. This field
    gives its column a binary collation without pad space:
    ``utf8mb4_nopad_bin`` on MariaDB, ``utf8mb4_0900_bin`` on MySQL 8.
    """

    def db_parameters(self, connection: BaseDatabaseWrapper) -> dict[str, Any]:
        params = super().db_parameters(connection)
        if connection.vendor == "mysql" and not self.db_collation:
            mariadb = getattr(connection, "mysql_is_mariadb", False)
            params["collation"] = "utf8mb4_nopad_bin" if mariadb else "utf8mb4_0900_bin"
        return params


# ``session_id__lower__contains``: the search of the admin and of ``agent_sessions
# list``, the same on every database (``icontains`` follows the column's
# collation on MySQL/MariaDB, which is now binary).
SessionIdField.register_lookup(Lower)


def session_id_contains(text: str) -> Q:
    """Sessions whose id contains ``text``, ignoring letter case only.

    Accents and spaces count. Letter case is folded by the database's
    ``LOWER()``: every letter on PostgreSQL and MySQL/MariaDB, ASCII letters
    on SQLite.
    """
    return Q(session_id__lower__contains=text.lower())


class AbstractAgentSession(models.Model):
    session_id = SessionIdField(_("session id"), max_length=255, unique=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.session_id


class AbstractAgentMessage(models.Model):
    data = models.JSONField(_("data"), encoder=ItemEncoder)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.data.get('role') or self.data.get('type') or 'item'} #{self.pk}"


class AgentSessionQuerySet(models.QuerySet["AgentSession"]):
    """What a view needs to list conversations: ``AgentSession.objects.conversations(user)``."""

    def owned_by(self, owner: Any) -> Self:
        """The sessions of ``owner`` (a user instance or primary key).

        Raises ``ValueError`` for an anonymous user or a key the user model cannot
        hold, ``TypeError`` for a value that is no key (see ``owners.owner_key``).
        """
        from ._owners import owner_key

        return self.filter(owner_id=owner_key(owner))

    def owned_by_username(self, username: str) -> Self:
        """The sessions of the user whose ``USERNAME_FIELD`` is ``username``: how
        ``agent_sessions`` names owners.

        The user is read from ``owners.users_database``: where the sessions
        are on that database, in the same query (a join); elsewhere (a shard),
        by a query there first, the sessions then filtered by ``owner_id``.
        """
        from ._owners import keys_of, username_field, users_database

        users = users_database(self.db)
        if self.db == users:
            return self.filter(**{f"owner__{username_field()}": username})
        return self.filter(owner_id__in=list(keys_of([username], users).values()))

    def with_counts(self) -> Self:
        """Annotate each session with ``message_count`` and its usage totals
        (``usage_total_tokens``, ``usage_input_tokens``...: see ``usage``).

        Correlated subqueries per row (on the ``(session_id, id)`` indexes)
        rather than a join and ``GROUP BY``, so that the totals stand beside
        each other without multiplying rows.
        """
        messages = (
            AgentMessage.objects.filter(session=models.OuterRef("pk"))
            .order_by()
            .values("session")
            .annotate(count=models.Count("pk"))
            .values("count")
        )
        return self.annotate(
            message_count=Coalesce(models.Subquery(messages), 0), **usage.session_annotations()
        )

    def conversations(self, owner: Any) -> Self:
        """``owner``'s sessions, newest activity first, counted: one query.

        Each row has ``message_count``; order is ``-updated_at`` then ``-pk``,
        read from the ``(owner, -updated_at)`` index.
        """
        return self.owned_by(owner).with_counts().order_by("-updated_at", "-pk")

    def search(self, owner: Any, query: str, *, limit: int = 20) -> list[AgentSession]:
        """``owner``'s conversations on this queryset's database whose user or assistant
        messages match every word of ``query``, best first, at most ``limit``: one query.

        Best first: the rank of each conversation's best-matching message, then
        the newest activity. Each result has ``search_rank`` (a float, higher is
        better) and ``search_snippet`` (about 160 characters of that message
        around the first word found, ``…`` where cut). Expired conversations are
        not returned. A query without words (empty, whitespace, punctuation)
        returns ``[]``; its characters are never SQL or search syntax. Raises
        as ``owned_by`` does for ``owner``, ``TypeError`` for a query that is
        not a str, ``ValueError`` for one longer than ``search.MAX_QUERY_LENGTH``.
        See ``search`` for every database sessions live on.
        """
        from . import _fulltext as fulltext

        return fulltext.search(self.owned_by(owner), query, limit)

    def search_all(self, query: str, *, limit: int = 20) -> list[AgentSession]:
        """``search`` without owner scoping: every conversation, for staff tools."""
        from . import _fulltext as fulltext

        return fulltext.search(self.all(), query, limit)

    def matching(self, query: str) -> Self:
        """These sessions that have a user or assistant message matching every word of
        ``query``, unranked: a filter to combine (the admin's search ORs it in).

        Raises as ``search`` does for ``query``.
        """
        from django.db.models.expressions import RawSQL

        from . import _fulltext as fulltext

        found = fulltext.matching_sessions(self.db, query)
        if found is None:
            return self.none()
        return self.filter(pk__in=RawSQL(*found))


class AgentSession(AbstractAgentSession):
    # No index of its own: the (owner, -updated_at) index below serves the
    # foreign key too, and a second one could tempt a planner into sorting.
    # The database constraint exists only where the users are (migration 0007),
    # and deleting a user deletes their sessions on every database: see deletion.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        null=True,
        blank=True,
        on_delete=deletion.cascade,
        related_name="agent_sessions",
        db_index=False,
        db_constraint=False,
    )
    title = models.CharField(_("title"), max_length=255, blank=True, default="")
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    # A plain value, not a foreign key: it survives the source's deletion and
    # names a source stored on another database just as well.
    forked_from = models.CharField(_("forked from"), max_length=255, blank=True, default="")
    # How many of the source's items the fork copied, counted from its first: the
    # fork continues the source after item number N. A position, not a message id,
    # so it means the same after export/import into another database. 0: an empty
    # fork; None: not a fork.
    forked_from_position = models.PositiveBigIntegerField(
        _("forked from position"), null=True, blank=True
    )
    # How long this conversation lives after its last activity; None: the
    # EXPIRE_AFTER setting decides (see ``retention``).
    expires_after = models.DurationField(_("expires after"), null=True, blank=True)

    objects = AgentSessionQuerySet.as_manager()

    class Meta:
        db_table = conf.table_setting("SESSIONS_TABLE")
        verbose_name = _("agent session")
        verbose_name_plural = _("agent sessions")
        # "This owner's conversations, most recent first" reads this index in order.
        indexes = [models.Index(fields=["owner", "-updated_at"], name="agent_session_owner_idx")]


class AgentMessage(AbstractAgentMessage):
    # No index of its own: the (session, id) index below serves the foreign
    # key too, and a second one tempts PostgreSQL into sorting whole sessions.
    session = models.ForeignKey(
        AgentSession,
        verbose_name=_("session"),
        on_delete=models.CASCADE,
        related_name="messages",
        db_index=False,
    )
    # The item's searchable text (search.message_text), indexed for full-text
    # search by migration 0009. NULL: not extracted yet (agent_sessions
    # index-text fills it); "": nothing to search. Not on AbstractAgentMessage:
    # tables created by 0.1/0.2 under other names have no such column.
    text = models.TextField(_("text"), null=True, blank=True)

    class Meta:
        db_table = conf.table_setting("MESSAGES_TABLE")
        verbose_name = _("agent message")
        verbose_name_plural = _("agent messages")
        # get_items(limit=N) reads the newest N rows of one session through this.
        indexes = [models.Index(fields=["session", "id"], name="agent_msg_session_id_idx")]


class AgentUsage(models.Model):
    """One recording of token usage: a run's delta, stored with the items it produced."""

    id = models.BigAutoField(primary_key=True)
    session = models.ForeignKey(
        AgentSession,
        verbose_name=_("session"),
        on_delete=models.CASCADE,
        related_name="usage",
        db_index=False,
    )
    requests = models.BigIntegerField(_("requests"), default=0)
    input_tokens = models.BigIntegerField(_("input tokens"), default=0)
    output_tokens = models.BigIntegerField(_("output tokens"), default=0)
    total_tokens = models.BigIntegerField(_("total tokens"), default=0)
    cached_tokens = models.BigIntegerField(_("cached tokens"), default=0)
    reasoning_tokens = models.BigIntegerField(_("reasoning tokens"), default=0)
    # Whatever else the SDK reported that has no column, so nothing reported is lost.
    details = models.JSONField(_("details"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        db_table = conf.table_setting("USAGE_TABLE")
        verbose_name = _("agent usage")
        verbose_name_plural = _("agent usage")
        # As for messages: one (session, id) index serves the foreign key and
        # reading a session's recordings in order.
        indexes = [models.Index(fields=["session", "id"], name="agent_usage_session_idx")]

    def __str__(self) -> str:
        return f"usage #{self.pk}: {self.total_tokens} tokens"


class AgentSessionLease(models.Model):
    """Who may run a conversation now: one row per leased conversation (see ``leases``).

    Keyed by the conversation table's name and the session id, so that the
    conversations of custom tables (``sessions_table=``) on the same database
    are leased here too. A row whose ``expires_at`` has passed is free.
    """

    id = models.BigAutoField(primary_key=True)
    sessions_table = SessionIdField(max_length=50)
    session_id = SessionIdField(max_length=255)
    # The holder's random token: only the holder renews or releases the lease.
    token = models.CharField(max_length=32)
    expires_at = models.DateTimeField()

    class Meta:
        db_table = conf.table_setting("LEASES_TABLE")
        verbose_name = "agent session lease"
        constraints = [
            models.UniqueConstraint(
                fields=["sessions_table", "session_id"], name="agent_lease_session_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"lease on {self.session_id} until {self.expires_at}"
