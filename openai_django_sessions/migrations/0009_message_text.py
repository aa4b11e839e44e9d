# Full-text search: each message's searchable text (search.message_text) in a
# column of its own, written by every write from now on; rows stored before
# are NULL until `manage.py agent_sessions index-text` fills them. Then each
# database's full-text index on it: on PostgreSQL a stored generated column
# search_vector = to_tsvector(SEARCH_CONFIG, text) (not on the model: the
# database keeps it) and a GIN index on it, a FULLTEXT index on MariaDB/MySQL,
# an FTS5 table kept in step by triggers on SQLite (see
# openai_django_sessions._fulltext). Adding the generated column rewrites the
# messages table on PostgreSQL, under an ACCESS EXCLUSIVE lock.
from typing import Any

from django.db import migrations, models

from openai_django_sessions import _fulltext as fulltext


def _table(apps: Any) -> str:
    return str(apps.get_model("openai_django_sessions", "AgentMessage")._meta.db_table)


def create_index(apps: Any, schema_editor: Any) -> None:
    fulltext.create_index(schema_editor.connection, _table(apps))


def drop_index(apps: Any, schema_editor: Any) -> None:
    fulltext.drop_index(schema_editor.connection, _table(apps))


class Migration(migrations.Migration):
    dependencies = [("openai_django_sessions", "0008_conversation_life")]

    operations = [
        migrations.AddField(
            model_name="agentmessage",
            name="text",
            field=models.TextField(blank=True, null=True, verbose_name="text"),
        ),
        # Where the messages table is migrated (on shards: every shard), and only there.
        migrations.RunPython(create_index, drop_index, hints={"model_name": "agentmessage"}),
    ]
