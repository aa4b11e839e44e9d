# A conversation's owner may live on another database than the conversation
# (ShardRouter's shards, DATABASE naming another alias): the owner's foreign key
# keeps its database constraint only on the database the users are written to
# (deletion.keeps_owner_constraint), and loses it elsewhere, where it pointed at
# an empty or unrelated user table and refused every owner. On a single
# database nothing changes in the database. Deleting a user deletes their
# conversations on every database (see deletion).
#
# Migrating backwards puts the constraint back where this dropped it; that fails
# if a conversation there names a user that database's user table lacks.
from typing import Any

from django.conf import settings
from django.db import migrations, models

import openai_django_sessions.deletion


class OwnerConstraintWhereUsersAre(migrations.AlterField):
    """``AlterField`` that changes the database only where the constraint goes."""

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        # database_backwards calls this too, with the states swapped.
        alias = schema_editor.connection.alias
        if not openai_django_sessions.deletion.keeps_owner_constraint(alias):
            super().database_forwards(app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    dependencies = [
        ("openai_django_sessions", "0006_verbose_names"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        OwnerConstraintWhereUsersAre(
            model_name="agentsession",
            name="owner",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=openai_django_sessions.deletion.cascade,
                related_name="agent_sessions",
                to=settings.AUTH_USER_MODEL,
                verbose_name="owner",
            ),
        ),
    ]
