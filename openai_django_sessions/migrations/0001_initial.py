# The two tables of 0.1/0.2, exactly: projects that created them with
# create_tables=True adopt them with `migrate --fake-initial`.
import django.db.models.deletion
from django.db import migrations, models

from openai_django_sessions import _conf as conf


class Migration(migrations.Migration):
    initial = True

    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="AgentSession",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("session_id", models.CharField(max_length=255, unique=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "verbose_name": "agent session",
                # The table name follows the setting, so makemigrations stays clean.
                "db_table": conf.table_setting("SESSIONS_TABLE"),
            },
        ),
        migrations.CreateModel(
            name="AgentMessage",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("data", models.JSONField()),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "session",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="messages",
                        to="openai_django_sessions.agentsession",
                    ),
                ),
            ],
            options={
                "verbose_name": "agent message",
                "db_table": conf.table_setting("MESSAGES_TABLE"),
            },
        ),
    ]
