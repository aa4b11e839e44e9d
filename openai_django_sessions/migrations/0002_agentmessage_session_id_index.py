# Kept out of 0001 so that projects adopting the seed's tables with
# `migrate --fake-initial` get this index too.
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("openai_django_sessions", "0001_initial")]

    operations = [
        migrations.AddIndex(
            model_name="agentmessage",
            index=models.Index(fields=["session", "id"], name="agent_msg_session_id_idx"),
        ),
    ]
