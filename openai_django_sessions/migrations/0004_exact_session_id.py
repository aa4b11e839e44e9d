# Session ids compare exactly on every database. On MySQL/MariaDB the column
# gets a binary, NO PAD collation (utf8mb4_nopad_bin on MariaDB, utf8mb4_0900_bin
# on MySQL 8); before, a database created CHARACTER SET utf8mb4 compared ids
# ignoring case, accents and trailing spaces, so "alice" read "Alice"'s history.
# SQLite and PostgreSQL already compared exactly: nothing changes there.
#
# Existing rows cannot collide under the exact rule: two ids equal byte for byte
# were already equal under the looser one, which the unique index enforced. If
# the ALTER failed anyway, MySQL/MariaDB would raise the server's error, leave
# the column as it was and the migration unrecorded.
#
# Items are now encoded compactly, non-ASCII text as is (ItemEncoder): only the
# field's state changes, not the column.
from django.db import migrations, models

import openai_django_sessions.items
import openai_django_sessions.models


class Migration(migrations.Migration):
    dependencies = [("openai_django_sessions", "0003_owner_usage_forks")]

    operations = [
        migrations.AlterField(
            model_name="agentsession",
            name="session_id",
            field=openai_django_sessions.models.SessionIdField(max_length=255, unique=True),
        ),
        migrations.AlterField(
            model_name="agentmessage",
            name="data",
            field=models.JSONField(encoder=openai_django_sessions.items.ItemEncoder),
        ),
    ]
