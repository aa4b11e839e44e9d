# A fork records where it left its source as a position (how many of the
# source's items it copied) instead of the id of the last message copied: an id
# means nothing in another database, so export/import and a move between shards
# lost the fork point.
#
# Existing forks get the number of their source's messages up to the recorded
# id, when the source is still stored with that message on the same database.
# Otherwise (source deleted, or compacted since) the fork's own messages that
# are older than the fork itself are counted: copies keep their source's
# timestamps, items added to the fork later are newer than its row. Rows that
# are not forks keep None; an empty fork gets 0. Migrating back finds the id of
# the source's message at that position again where the source still has it.
from django.db import migrations, models


def positions(apps, schema_editor):
    sessions = apps.get_model("openai_django_sessions", "AgentSession")
    messages = apps.get_model("openai_django_sessions", "AgentMessage")
    alias = schema_editor.connection.alias
    forks = sessions.objects.using(alias).exclude(forked_from="")
    for fork in forks.only("pk", "forked_from", "forked_from_item", "created_at").iterator():
        through = fork.forked_from_item
        if through is None:
            position = 0
        else:
            source = messages.objects.using(alias).filter(session__session_id=fork.forked_from)
            if source.filter(pk=through).exists():
                position = source.filter(pk__lte=through).count()
            else:
                own = messages.objects.using(alias).filter(session_id=fork.pk)
                position = own.filter(created_at__lte=fork.created_at).count()
        sessions.objects.using(alias).filter(pk=fork.pk).update(forked_from_position=position)


def item_ids(apps, schema_editor):
    sessions = apps.get_model("openai_django_sessions", "AgentSession")
    messages = apps.get_model("openai_django_sessions", "AgentMessage")
    alias = schema_editor.connection.alias
    forks = sessions.objects.using(alias).filter(forked_from_position__gt=0)
    for fork in forks.only("pk", "forked_from", "forked_from_position").iterator():
        source = messages.objects.using(alias).filter(session__session_id=fork.forked_from)
        found = source.order_by("pk").values_list("pk", flat=True)[
            fork.forked_from_position - 1 : fork.forked_from_position
        ]
        sessions.objects.using(alias).filter(pk=fork.pk).update(
            forked_from_item=next(iter(found), None)
        )


class Migration(migrations.Migration):
    dependencies = [("openai_django_sessions", "0004_exact_session_id")]

    operations = [
        migrations.AddField(
            model_name="agentsession",
            name="forked_from_position",
            field=models.PositiveBigIntegerField(blank=True, null=True),
        ),
        migrations.RunPython(positions, item_ids, elidable=False),
        migrations.RemoveField(model_name="agentsession", name="forked_from_item"),
    ]
