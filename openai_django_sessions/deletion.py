"""Deleting a user deletes their conversations, on every database sessions live on.

``AgentSession.owner`` is a foreign key whose database constraint exists only
where the users are (migration ``0007``, see ``keeps_owner_constraint``):
sessions on another database (a shard, ``DATABASE``) name an owner that their
own database cannot check. ``user.delete()`` then works in two parts:

- On the user's own database, ``cascade`` (the field's ``on_delete``) is
  Django's ``CASCADE``: the user's sessions, messages and usage rows are
  collected and deleted in the user's transaction, as before; the admin's
  confirmation page lists them.
- On every other database sessions live on, ``delete_owned_elsewhere`` (a
  ``pre_delete`` receiver of the user model) deletes them before the user's
  row, one committed transaction per batch, database after database in the
  order ``routing.databases`` lists them.

Deleting across databases cannot be atomic. The order makes a failure safe to
repeat: if one database fails, the error is raised from ``user.delete()``, the
user's own transaction rolls back and the user still exists, with the
conversations of the databases done before gone and the others intact; calling
``user.delete()`` again finishes the job. A conversation another request
creates for the user on another database while the user is being deleted is
not seen and stays, owned by a user that no longer exists.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import router
from django.db.models import CASCADE, ForeignKey, Model, QuerySet
from django.db.models.deletion import Collector

from . import _routing as routing
from . import _transactions as transactions

# Public only as the owner's ``on_delete`` that migrations name by this path.
__all__ = ["cascade"]

# Sessions deleted per transaction on a database other than the user's.
BATCH_SIZE = 500


def keeps_owner_constraint(alias: str) -> bool:
    """Whether sessions on ``alias`` get the owner's database constraint.

    Where the users are (the alias the routers write users to, and that holds
    their table): a conversation can then never name a user that does not
    exist, as before. Elsewhere the user table is absent or is not the one
    users are written to, so the constraint would refuse every owner.
    """
    user_model = get_user_model()
    return alias == router.db_for_write(user_model) and router.allow_migrate_model(
        alias, user_model
    )


def _session_aliases() -> list[str]:
    from .models import AgentSession

    return routing.databases(AgentSession)


def cascade(collector: Collector, field: ForeignKey[Any, Any], sub_objs: Any, using: str) -> None:
    """``on_delete`` of ``AgentSession.owner``: ``CASCADE`` where the sessions share
    the user's database, else the admin's confirmation page is told of them.

    ``sub_objs`` is the user's sessions on the user's database, not evaluated
    until needed (``lazy_sub_objs``): where no sessions live the table is absent.
    """
    from django.contrib.admin.utils import NestedObjects  # the admin may not be installed

    if using in _session_aliases():
        CASCADE(collector, field, sub_objs, using)
    if isinstance(collector, NestedObjects):
        _show_elsewhere(collector, field, sub_objs, using)


cascade.lazy_sub_objs = True  # type: ignore[attr-defined]


def _show_elsewhere(
    collector: Any, field: ForeignKey[Any, Any], sub_objs: QuerySet[Any], using: str
) -> None:
    """List the sessions of other databases on the admin's confirmation page.

    Only the sessions: their messages and usage rows go with them, and the
    collector can follow relations on its own database only.
    """
    users = {user.pk: user for user in collector.data.get(field.remote_field.model, ())}
    for alias in _session_aliases():
        if alias == using:
            continue
        # Not joined to the owner (the admin's collector asks for it): that
        # table is not on this database, or holds no one.
        sessions = sub_objs.using(alias).select_related(None)
        for owner_pk, session_id in sessions.values_list(field.attname, "session_id"):
            shown = _Elsewhere(session_id, alias)
            collector.add_edge(users.get(owner_pk), shown)
            collector.model_objs[field.model].add(shown)


class _Elsewhere:
    """A session of another database as the admin's confirmation page lists it.

    Not the model instance: instances of two databases with the same primary
    key are equal, and the page would count them once.
    """

    def __init__(self, session_id: str, alias: str) -> None:
        from .models import AgentSession

        self._meta = AgentSession._meta
        self.text = f"{session_id} ({alias})"

    def __str__(self) -> str:
        return self.text


def delete_owned_elsewhere(sender: type[Model], instance: Model, using: str, **kwargs: Any) -> None:
    """``pre_delete`` of the user model: delete ``instance``'s sessions on every
    database other than ``using`` (where ``cascade`` deletes them)."""
    if instance.pk is None:
        return
    for alias in _session_aliases():
        if alias != using:
            delete_owned(alias, instance.pk)


def delete_owned(alias: str, owner_pk: Any, *, batch_size: int = BATCH_SIZE) -> int:
    """Delete the sessions of ``owner_pk`` on ``alias`` (with their messages and usage).

    ``batch_size`` sessions per transaction; returns how many were deleted.
    """
    from .models import AgentSession

    owned = AgentSession.objects.using(alias).filter(owner_id=owner_pk)
    deleted = 0
    while True:
        pks = list(owned.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not pks:
            return deleted

        def delete(pks: list[int] = pks) -> int:
            _, per_model = owned.filter(pk__in=pks).delete()
            return per_model.get(AgentSession._meta.label, 0)

        deleted += transactions.run(alias, delete)
