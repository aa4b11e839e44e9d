"""The test settings with both table names changed, for a fresh process."""

import os

from tests.settings import *  # noqa: F403
from tests.settings import DRIVER_CURSOR

DATABASES = {  # a throwaway SQLite file named by the test
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["CUSTOM_TABLES_DB"]}
}
OPENAI_DJANGO_SESSIONS = {
    "DRIVER_CURSOR": DRIVER_CURSOR,
    "SESSIONS_TABLE": os.environ.get("CUSTOM_SESSIONS_TABLE", "chat_threads"),
    "MESSAGES_TABLE": "chat_items",
    "USAGE_TABLE": "chat_usage",
}
