# Conversations get an owner (the project's user model, swappable), a title,
# metadata and where they were forked from; token usage gets a table of its own.
# Rows that exist already get no owner, an empty title and empty metadata.
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from openai_django_sessions import _conf as conf


class Migration(migrations.Migration):
    dependencies = [
        ("openai_django_sessions", "0002_agentmessage_session_id_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="agentsession",
            name="owner",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="agent_sessions",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="agentsession",
            name="title",
            field=models.CharField(blank=True, default="", max_length=255),
        ),
        migrations.AddField(
            model_name="agentsession",
            name="metadata",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name="agentsession",
            name="forked_from",
            field=models.CharField(blank=True, default="", max_length=255),
        ),
        migrations.AddField(
            model_name="agentsession",
            name="forked_from_item",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name="agentsession",
            index=models.Index(fields=["owner", "-updated_at"], name="agent_session_owner_idx"),
        ),
        migrations.CreateModel(
            name="AgentUsage",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                (
                    "session",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="usage",
                        to="openai_django_sessions.agentsession",
                    ),
                ),
                ("requests", models.BigIntegerField(default=0)),
                ("input_tokens", models.BigIntegerField(default=0)),
                ("output_tokens", models.BigIntegerField(default=0)),
                ("total_tokens", models.BigIntegerField(default=0)),
                ("cached_tokens", models.BigIntegerField(default=0)),
                ("reasoning_tokens", models.BigIntegerField(default=0)),
                ("details", models.JSONField(blank=True, default=dict)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={
                "verbose_name": "agent usage",
                "verbose_name_plural": "agent usage",
                # The table name follows the setting, so makemigrations stays clean.
                "db_table": conf.table_setting("USAGE_TABLE"),
                "indexes": [
                    models.Index(fields=["session", "id"], name="agent_usage_session_idx")
                ],
            },
        ),
    ]
