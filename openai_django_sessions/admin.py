"""The admin for stored sessions: a changelist with owners and message counts, and
each conversation read-only, a page at a time.

Conversations are written by agents, not people: sessions cannot be added here,
and their items cannot be edited. Staff with the change permission can edit a
session's title and metadata (saving them leaves its last activity alone).
Deleting a session deletes its messages. Queries go to the alias that
``routing.alias_for`` picks (the ``DATABASE`` setting, else the routers); with
sessions on several databases (``routers.ShardRouter``), the changelist shows
one at a time, names it, and a "database" filter switches between them.
On MySQL/MariaDB without time zone tables the date hierarchy is left out.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from urllib.parse import parse_qsl

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.utils import display_for_value, unquote
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Page, Paginator
from django.db import connections
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from . import _display as display
from . import _owners as owners
from . import _retention as retention
from . import _routing as routing
from . import details, usage
from .models import AgentMessage, AgentSession, AgentSessionQuerySet, session_id_contains
from .search import MAX_QUERY_LENGTH

__all__ = ["AgentSessionAdmin", "AgentSessionForm"]


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

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        if not self.result_list.query.is_sliced:
            # Everything fits on one page, so Django reads it unsliced; the same rows
            # with a LIMIT let PostgreSQL count each session's messages and usage
            # (with_counts) for the rows it returns only, after sorting. Without
            # one, it costs those counts for every row it guesses a search matches
            # (half the table, for an OR of LIKEs and a subquery), and a plan that
            # dear is compiled by JIT first: 0.7 s for a word in 100 conversations
            # of 20,000.
            shown = self.list_max_show_all if self.show_all else self.list_per_page
            self.result_list = self.result_list[: max(shown, self.result_count)]
        # The page's owners in one query on the users' database (see owners.with_names).
        for session, name in owners.with_names(self.result_list):
            setattr(session, OWNER_NAME, name)


class LastActivityFilter(admin.DateFieldListFilter):
    """Django's date filter on ``updated_at``, under the name the changelist uses for it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.title = _("last activity")


DATABASE_PARAMETER = "database"
# The attribute of a listed session holding its owner's name (SessionChangeList).
OWNER_NAME = "_owner_name"


def shown_database(request: HttpRequest) -> str:
    """The database whose sessions the admin shows for ``request``.

    ``?database=`` (or the same kept in ``_changelist_filters`` on the change
    and delete pages) if it is one the sessions live on, else the first of them.
    """
    aliases = routing.databases(AgentSession)
    kept = dict(parse_qsl(request.GET.get("_changelist_filters", "")))
    wanted = request.GET.get(DATABASE_PARAMETER) or kept.get(DATABASE_PARAMETER)
    return wanted if wanted in aliases else aliases[0]


class DatabaseFilter(admin.SimpleListFilter):
    """Which database's sessions the changelist shows; only there when there are several."""

    title = _("database")
    parameter_name = DATABASE_PARAMETER

    def __init__(self, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        super().__init__(request, *args, **kwargs)
        self.shown = shown_database(request)

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        aliases = routing.databases(AgentSession)
        return [(alias, alias) for alias in aliases] if len(aliases) > 1 else []

    def choices(self, changelist: Any) -> Any:
        # No "All": one database is shown at a time, the first by default.
        for alias, title in self.lookup_choices:
            yield {
                "selected": alias == self.shown,
                "query_string": changelist.get_query_string({self.parameter_name: alias}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset  # get_queryset already reads this database


class OwnerFilter(admin.RelatedOnlyFieldListFilter):
    """Owners who have sessions, read as a list: the sessions may be on another alias."""

    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> Any:
        owner_pks = list(
            model_admin.get_queryset(request).order_by().values_list("owner", flat=True).distinct()
        )
        ordering = self.field_admin_ordering(field, request, model_admin)
        return field.get_choices(
            include_blank=False, limit_choices_to={"pk__in": owner_pks}, ordering=ordering
        )


class MetadataField(forms.JSONField):
    """Django's JSON form field, redisplaying a refused value the page can carry.

    A lone surrogate (``"\\ud800"`` typed in the form) is valid JSON but not
    valid UTF-8: shown as is it would break the page; it is shown escaped.
    """

    def prepare_value(self, value: Any) -> Any:
        shown = super().prepare_value(value)
        try:
            shown.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(value, cls=self.encoder)
        return shown


class AgentSessionForm(forms.ModelForm):
    """Title, metadata and retention, the only fields staff edit.

    They pass the checks ``DjangoSession`` applies (``details.check_title``,
    ``details.check_metadata``, ``retention.check_expires_after``), so the
    admin stores nothing the library would refuse, and refuses it the same way
    on every database. The retention of a conversation that has expired cannot
    change: its history is gone for the library, and must not come back.
    """

    class Meta:
        model = AgentSession
        fields = ("title", "metadata", "expires_after")
        field_classes = {"metadata": MetadataField}
        help_texts = {
            "expires_after": _(
                "How long the conversation is kept after its last activity, as "
                "“DD HH:MM:SS” (“30 00:00:00”: 30 days). Empty: the EXPIRE_AFTER setting."
            )
        }

    def clean_expires_after(self) -> Any:
        value = self.cleaned_data["expires_after"]
        if value is not None:
            value = _checked(retention.check_expires_after, value)
        if "expires_after" in self.changed_data and self.instance.pk is not None:
            rows = AgentSession.objects.using(self.instance._state.db).filter(pk=self.instance.pk)
            if retention.expired(rows).exists():
                raise forms.ValidationError(
                    _(
                        "This conversation has expired: its history is gone and will be "
                        "purged, so its retention can no longer change."
                    )
                )
        return value

    def clean_title(self) -> Any:
        return _checked(details.check_title, self.cleaned_data["title"])

    def clean_metadata(self) -> Any:
        value = self.cleaned_data["metadata"]
        if not isinstance(value, dict):
            raise forms.ValidationError(_("Metadata must be a JSON object, such as {}."))
        return _checked(details.check_metadata, value)


def _checked(check: Callable[[Any], Any], value: Any) -> Any:
    """``check(value)``, its ``TypeError``/``ValueError`` as the form's error."""
    try:
        return check(value)
    except (TypeError, ValueError) as exc:
        raise forms.ValidationError(
            _("Cannot store this: %(reason)s"), params={"reason": exc}
        ) from exc


@admin.register(AgentSession)
class AgentSessionAdmin(admin.ModelAdmin):
    form = AgentSessionForm
    # The creation date is on each session's page: the list keeps room for titles.
    list_display = (
        "session_id",
        "title",
        "fork",
        "owner_name",
        "message_count",
        "tokens",
        "last_activity",
    )
    list_filter = (DatabaseFilter, ("owner", OwnerFilter), ("updated_at", LastActivityFilter))
    date_hierarchy = "updated_at"
    ordering = ("-updated_at",)
    list_per_page = 100
    fields = (
        "session_id",
        "owner_name",
        "title",
        "metadata",
        "expires_after",
        "message_count",
        "usage",
        "created_at",
        "last_activity",
    )
    readonly_fields = (
        "session_id",
        "owner_name",
        "message_count",
        "usage",
        "created_at",
        "last_activity",
    )
    change_form_template = "admin/openai_django_sessions/agentsession/change_form.html"
    conversation_per_page = 50

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AgentSession], search_term: str
    ) -> tuple[QuerySet[AgentSession], bool]:
        """Sessions whose id contains the search text, ignoring letter case only
        (the same on every database), whose title or owner match it as Django's
        admin search matches them, or with a user or assistant message holding
        every word of it (full-text search, ``AgentSessionQuerySet.matching``)."""
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term:
            results = results | queryset.filter(session_id_contains(term))
            if len(term) <= MAX_QUERY_LENGTH:  # what was said: full-text search
                results = results | cast(AgentSessionQuerySet, queryset).matching(term)
            if not _users_here(queryset.db):  # no join to the users: their keys, read first
                matching = owners.keys_containing(term, owners.users_database(queryset.db))
                results = results | queryset.filter(owner_id__in=matching)
        return results, may_have_duplicates

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return SessionChangeList

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = dict(extra_context or {})
        if len(routing.databases(AgentSession)) > 1:
            subtitle = gettext("Database: %(alias)s") % {"alias": shown_database(request)}
            context.setdefault("subtitle", subtitle)
        return super().changelist_view(request, context)

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        # The owner by the name users sign in with, whatever the user model. The
        # id is searched by get_search_results: icontains follows the column's
        # collation on MySQL/MariaDB, which is binary.
        if not _users_here(shown_database(request)):
            return ("title",)  # the owner: see get_search_results
        return ("title", f"owner__{owners.username_field()}")

    def get_list_select_related(self, request: HttpRequest) -> tuple[str, ...]:
        return ("owner",) if _users_here(shown_database(request)) else ()

    def get_queryset(self, request: HttpRequest) -> QuerySet[AgentSession]:
        # One query for the whole changelist page: counts, usage totals and owners.
        queryset = super().get_queryset(request).with_counts()  # type: ignore[attr-defined]
        return queryset.using(shown_database(request))

    def save_model(self, request: HttpRequest, obj: AgentSession, form: Any, change: bool) -> None:
        # Only the edited columns: save() would bump updated_at, which is the
        # conversation's last activity, and rewrite columns agents maintain.
        changed = {name: getattr(obj, name) for name in form.changed_data}
        if changed:
            rows = AgentSession.objects.using(obj._state.db).filter(pk=obj.pk)
            rows.update(**changed)

    @admin.display(description=_("owner"), ordering="owner")
    def owner_name(self, obj: AgentSession) -> str | None:
        """The owner's ``USERNAME_FIELD`` value, read from the users' database."""
        if not hasattr(obj, OWNER_NAME):
            [(_, name)] = owners.with_names([obj])
            setattr(obj, OWNER_NAME, name)
        return getattr(obj, OWNER_NAME)  # type: ignore[no-any-return]

    @admin.display(description=_("fork"), boolean=True, ordering="forked_from")
    def fork(self, obj: AgentSession) -> bool:
        """Whether the conversation is a copy of another (``DjangoSession.afork``)."""
        return bool(obj.forked_from)

    @admin.display(description=_("messages"), ordering="message_count")
    def message_count(self, obj: AgentSession) -> int:
        return _message_count(obj)

    @admin.display(description=_("tokens"), ordering="usage_total_tokens")
    def tokens(self, obj: AgentSession) -> int:
        return int(getattr(obj, "usage_total_tokens", 0))

    @admin.display(description=_("usage"))
    def usage(self, obj: AgentSession) -> str:
        return display.usage_line(
            {name: getattr(obj, f"usage_{name}", 0) for name in usage.COUNTERS}
        )

    @admin.display(description=_("last activity"), ordering="updated_at")
    def last_activity(self, obj: AgentSession) -> str:
        # Formatted here: the change form shows a method's value as text, unlike a field's.
        return str(display_for_value(obj.updated_at, self.get_empty_value_display()))

    def has_add_permission(self, request: HttpRequest) -> bool:
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
            ngettext(
                "%(model)s: %(session_id)s (%(count)d message)",
                "%(model)s: %(session_id)s (%(count)d messages)",
                counts[s.pk],
            )
            % {
                "model": str(AgentSession._meta.verbose_name).capitalize(),
                "session_id": s.session_id,
                "count": counts[s.pk],
            }
            for s in sessions
        ]
        model_count = {
            str(AgentSession._meta.verbose_name_plural): len(sessions),
            str(AgentMessage._meta.verbose_name_plural): sum(counts.values()),
        }
        return summary, model_count, set(), []

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> AgentSession | None:
        """The session, read once per request: ``change_view`` needs it for the
        conversation before Django's change form reads it again."""
        read: dict[tuple[str, str | None], AgentSession | None] = request.__dict__.setdefault(
            "_openai_django_sessions_objects", {}
        )
        key = (object_id, from_field)
        if key not in read:
            read[key] = super().get_object(request, object_id, from_field)
        return read[key]

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


def _users_here(alias: str) -> bool:
    """Whether the users are on ``alias``, so that queries there may join them."""
    return alias == owners.users_database(alias)


def _message_count(session: AgentSession) -> int:
    count = getattr(session, "message_count", None)
    return session.messages.count() if count is None else int(count)
