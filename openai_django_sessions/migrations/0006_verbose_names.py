# Verbose names, translatable: labels only, no change to any table (no SQL on any database).

import django.db.models.deletion
import openai_django_sessions.items
import openai_django_sessions.models
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('openai_django_sessions', '0005_fork_position'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='agentmessage',
            options={'verbose_name': 'agent message', 'verbose_name_plural': 'agent messages'},
        ),
        migrations.AlterModelOptions(
            name='agentsession',
            options={'verbose_name': 'agent session', 'verbose_name_plural': 'agent sessions'},
        ),
        migrations.AlterField(
            model_name='agentmessage',
            name='created_at',
            field=models.DateTimeField(auto_now_add=True, verbose_name='created at'),
        ),
        migrations.AlterField(
            model_name='agentmessage',
            name='data',
            field=models.JSONField(encoder=openai_django_sessions.items.ItemEncoder, verbose_name='data'),
        ),
        migrations.AlterField(
            model_name='agentmessage',
            name='session',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='messages', to='openai_django_sessions.agentsession', verbose_name='session'),
        ),
        migrations.AlterField(
            model_name='agentsession',
            name='created_at',
            field=models.DateTimeField(auto_now_add=True, verbose_name='created at'),
        ),
        migrations.AlterField(
            model_name='agentsession',
            name='forked_from',
            field=models.CharField(blank=True, default='', max_length=255, verbose_name='forked from'),
        ),
        migrations.AlterField(
            model_name='agentsession',
            name='forked_from_position',
            field=models.PositiveBigIntegerField(blank=True, null=True, verbose_name='forked from position'),
        ),
        migrations.AlterField(
            model_name='agentsession',
            name='metadata',
            field=models.JSONField(blank=True, default=dict, verbose_name='metadata'),
        ),
        migrations.AlterField(
            model_name='agentsession',
            name='owner',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='agent_sessions', to=settings.AUTH_USER_MODEL, verbose_name='owner'),
        ),
        migrations.AlterField(
            model_name='agentsession',
            name='session_id',
            field=openai_django_sessions.models.SessionIdField(max_length=255, unique=True, verbose_name='session id'),
        ),
        migrations.AlterField(
            model_name='agentsession',
            name='title',
            field=models.CharField(blank=True, default='', max_length=255, verbose_name='title'),
        ),
        migrations.AlterField(
            model_name='agentsession',
            name='updated_at',
            field=models.DateTimeField(auto_now=True, verbose_name='updated at'),
        ),
        migrations.AlterField(
            model_name='agentusage',
            name='cached_tokens',
            field=models.BigIntegerField(default=0, verbose_name='cached tokens'),
        ),
        migrations.AlterField(
            model_name='agentusage',
            name='created_at',
            field=models.DateTimeField(auto_now_add=True, verbose_name='created at'),
        ),
        migrations.AlterField(
            model_name='agentusage',
            name='details',
            field=models.JSONField(blank=True, default=dict, verbose_name='details'),
        ),
        migrations.AlterField(
            model_name='agentusage',
            name='input_tokens',
            field=models.BigIntegerField(default=0, verbose_name='input tokens'),
        ),
        migrations.AlterField(
            model_name='agentusage',
            name='output_tokens',
            field=models.BigIntegerField(default=0, verbose_name='output tokens'),
        ),
        migrations.AlterField(
            model_name='agentusage',
            name='reasoning_tokens',
            field=models.BigIntegerField(default=0, verbose_name='reasoning tokens'),
        ),
        migrations.AlterField(
            model_name='agentusage',
            name='requests',
            field=models.BigIntegerField(default=0, verbose_name='requests'),
        ),
        migrations.AlterField(
            model_name='agentusage',
            name='session',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='usage', to='openai_django_sessions.agentsession', verbose_name='session'),
        ),
        migrations.AlterField(
            model_name='agentusage',
            name='total_tokens',
            field=models.BigIntegerField(default=0, verbose_name='total tokens'),
        ),
    ]
