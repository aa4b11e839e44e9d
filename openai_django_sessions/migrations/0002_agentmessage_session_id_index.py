# Kept out of 0001 so that projects adopting the tables of 0.1/0.2 with
# `migrate --fake-initial` get this index too. It replaces the foreign key's
# single-column index (0.1's idx_agent_messages_session_id as well), which
# PostgreSQL would otherwise prefer, sorting a whole session to return its tail.
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("openai_django_sessions", "0001_initial")]

    operations = [
        migrations.AddIndex(
            model_name="agentmessage",
            index=models.Index(fields=["session", "id"], name="agent_msg_session_id_idx"),
        ),
        migrations.AlterField(
            model_name="agentmessage",
            name="session",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="messages",
                to="openai_django_sessions.agentsession",
            ),
        ),
    ]
