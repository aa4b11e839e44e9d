# A conversation's life: a table of leases, so that one run at a time holds a
# conversation (DjangoSession.exclusive), one row per leased conversation keyed by
# the conversation table's name and the session id; and each conversation's own
# retention (DjangoSession(expires_after=...)), empty for existing rows: they
# follow the EXPIRE_AFTER setting, which keeps them forever unless set.
from django.db import migrations, models

import openai_django_sessions.models
from openai_django_sessions import _conf as conf


class Migration(migrations.Migration):
    dependencies = [("openai_django_sessions", "0007_owner_across_databases")]

    operations = [
        migrations.AddField(
            model_name="agentsession",
            name="expires_after",
            field=models.DurationField(blank=True, null=True, verbose_name="expires after"),
        ),
        migrations.CreateModel(
            name="AgentSessionLease",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("sessions_table", openai_django_sessions.models.SessionIdField(max_length=50)),
                ("session_id", openai_django_sessions.models.SessionIdField(max_length=255)),
                ("token", models.CharField(max_length=32)),
                ("expires_at", models.DateTimeField()),
            ],
            options={
                "verbose_name": "agent session lease",
                # The table name follows the setting, so makemigrations stays clean.
                "db_table": conf.table_setting("LEASES_TABLE"),
                "constraints": [
                    models.UniqueConstraint(
                        fields=("sessions_table", "session_id"), name="agent_lease_session_uniq"
                    )
                ],
            },
        ),
    ]
