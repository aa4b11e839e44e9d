"""The admin for stored sessions: a changelist with message counts, and each
conversation read-only, a page at a time.

Sessions are written by agents, not people: nothing can be added or edited
here. Deleting a session deletes its messages. Queries go to the alias that
``routing.alias_for`` picks (the ``DATABASE`` setting, else the routers).
On MySQL/MariaDB without time zone tables the date hierarchy is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Page, Paginator
from django.db import connections
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from . import display, routing
from .models import AgentMessage, AgentSession, session_id_contains


@dataclass(frozen=True)
class ConversationRow:
    """One item as the change page shows it."""

    position: int
    created_at: datetime
    view: display.ItemView
    json: str


_local_dates: dict[tuple[str, str], bool] = {}


def local_dates_supported(alias: str) -> bool:
    """Whether ``alias`` can turn stored UTC times into dates of the current time zone.

    MySQL and MariaDB need their time zone tables for that (with ``USE_TZ``);
    without them Django's date hierarchy raises instead of rendering.
    """
    connection = connections[alias]
    zone = timezone.get_current_timezone_name()
    if connection.vendor != "mysql" or not settings.USE_TZ or zone == connection.timezone_name:
        return True
    if (alias, zone) not in _local_dates:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT CONVERT_TZ('2001-01-01 00:00:00', %s, %s)",
                [connection.timezone_name, zone],
            )
            _local_dates[(alias, zone)] = cursor.fetchone()[0] is not None
    return _local_dates[(alias, zone)]


class SessionChangeList(ChangeList):
    """The changelist, without the date hierarchy where the database cannot draw it."""

    def __init__(self, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        super().__init__(request, *args, **kwargs)
        if self.date_hierarchy and not local_dates_supported(self.queryset.db):
            self.date_hierarchy = None


class LastActivityFilter(admin.DateFieldListFilter):
    """Django's date filter on ``updated_at``, under the name the changelist uses for it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.title = "last activity"


@admin.register(AgentSession)
class AgentSessionAdmin(admin.ModelAdmin):
    list_display = ("session_id", "message_count", "created_at", "last_activity")
    search_fields = ("session_id",)
    list_filter = (("updated_at", LastActivityFilter),)
    date_hierarchy = "updated_at"
    ordering = ("-updated_at",)
    list_per_page = 100
    fields = ("session_id", "message_count", "created_at", "last_activity")
    readonly_fields = fields
    change_form_template = "admin/openai_django_sessions/agentsession/change_form.html"
    conversation_per_page = 50

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AgentSession], search_term: str
    ) -> tuple[QuerySet[AgentSession], bool]:
        """Ids containing the search text, ignoring letter case only, on every database."""
        term = search_term.strip()
        return (queryset.filter(session_id_contains(term)) if term else queryset), False

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return SessionChangeList

    def get_queryset(self, request: HttpRequest) -> QuerySet[AgentSession]:
        # One query for the whole changelist page, counts included.
        queryset = super().get_queryset(request).annotate(message_count=Count("messages"))
        return queryset.using(routing.alias_for(AgentSession, write=False))

    @admin.display(description="messages", ordering="message_count")
    def message_count(self, obj: AgentSession) -> int:
        return _message_count(obj)

    @admin.display(description="last activity", ordering="updated_at")
    def last_activity(self, obj: AgentSession) -> datetime:
        return obj.updated_at

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # View-only: saving the form would only bump updated_at.
        return False

    def delete_model(self, request: HttpRequest, obj: AgentSession) -> None:
        obj.delete(using=obj._state.db)

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[str], dict[str, int], set[str], list[str]]:
        """Summarise instead of listing every message, which would be thousands of lines.

        Messages are not registered in the admin, so deleting them with their
        session needs no permission beyond deleting the session.
        """
        sessions = list(objs)
        counts = {session.pk: _message_count(session) for session in sessions}
        summary = [
            f"{str(AgentSession._meta.verbose_name).capitalize()}: {s.session_id} "
            f"({counts[s.pk]} message{'' if counts[s.pk] == 1 else 's'})"
            for s in sessions
        ]
        model_count = {
            str(AgentSession._meta.verbose_name_plural): len(sessions),
            str(AgentMessage._meta.verbose_name_plural): sum(counts.values()),
        }
        return summary, model_count, set(), []

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = dict(extra_context or {})
        if self.has_view_permission(request):
            obj = self.get_object(request, unquote(object_id))
            if obj is not None:
                context.update(self.conversation_context(request, obj))
        return super().change_view(request, object_id, form_url, context)

    def conversation_context(self, request: HttpRequest, obj: AgentSession) -> dict[str, Any]:
        """The page of the conversation named by ``?page=`` (items oldest first)."""
        messages = obj.messages.order_by("pk").only("pk", "session", "data", "created_at")
        paginator = Paginator(messages, self.conversation_per_page)
        count = getattr(obj, "message_count", None)
        if count is not None:
            paginator.count = count  # already counted by get_queryset's annotation
        page: Page = paginator.get_page(request.GET.get("page"))
        rows = [
            ConversationRow(
                position=page.start_index() + index,
                created_at=message.created_at,
                view=display.describe(message.data),
                json=display.pretty_json(message.data),
            )
            for index, message in enumerate(page.object_list)
        ]
        return {
            "conversation_page": page,
            "conversation_rows": rows,
            "conversation_page_range": paginator.get_elided_page_range(page.number),
        }


def _message_count(session: AgentSession) -> int:
    count = getattr(session, "message_count", None)
    return session.messages.count() if count is None else int(count)
